package dedupe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// ErrInFlight is matched by an *InFlightError: another process holds the
// turn under a live lease. HTTP maps it to 409 idempotency_key_in_use.
var ErrInFlight = errors.New("turn in flight elsewhere")

// InFlightError says who holds the turn and until when.
type InFlightError struct {
	Attempt        int
	LeaseExpiresAt time.Time
}

func (e *InFlightError) Error() string {
	return fmt.Sprintf("turn in flight elsewhere: attempt %d holds it until %s", e.Attempt, e.LeaseExpiresAt.Format(time.RFC3339Nano))
}

// Is makes an InFlightError match ErrInFlight.
func (e *InFlightError) Is(target error) bool { return target == ErrInFlight }

// ErrLostTurn is returned by a Stream's Write (and so by Turn) when the
// attempt no longer holds its turn: its lease lapsed and another attempt
// took over. The run should stop; nothing it writes is kept.
var ErrLostTurn = errors.New("turn taken over by another attempt")

// Runner runs the model at most once per user request, across the
// goroutines of a process (singleflight) and across processes (a lease in
// the store), and answers every retry with the recorded reply.
type Runner struct {
	// Store is the event store.
	Store repo.Repo
	// Owner names this process in leases, for operators. Default
	// "hostname:pid".
	Owner string
	// Lease is how long a turn stays held between heartbeats; the runner
	// renews it every Lease/3 while the model runs. Default 30s.
	Lease time.Duration
	// Wait makes Turn wait, while another process holds the turn, until it
	// completes or its lease expires (and this call takes over), bounded
	// by ctx. Without it Turn returns an *InFlightError at once.
	Wait bool
	// PollInterval is how often a waiting Turn looks again. Default 100ms.
	PollInterval time.Duration

	group singleflight.Group
	once  sync.Once
}

// RunFunc runs the model for a turn, writing its output through s as it
// streams, and returns how the reply ended (stop reason, model, usage).
// It must stop when ctx is done: ctx ends when the turn is lost.
type RunFunc func(ctx context.Context, s *Stream) (compact.Options, error)

// Reply is the outcome of a turn.
type Reply struct {
	// Message is the final assistant message.
	Message events.Event
	// Attempt is the attempt that produced it.
	Attempt int
	// Ran reports whether this call (or the singleflight it joined) ran
	// the model, as opposed to finding the reply recorded.
	Ran bool
}

func (r *Runner) defaults() {
	r.once.Do(func() {
		if r.Owner == "" {
			host, _ := os.Hostname()
			r.Owner = host + ":" + strconv.Itoa(os.Getpid())
		}
		if r.Lease <= 0 {
			r.Lease = 30 * time.Second
		}
		if r.PollInterval <= 0 {
			r.PollInterval = 100 * time.Millisecond
		}
	})
}

// Turn answers the user message userMsg (its RequestID is the client's
// key): with the recorded reply when the request was answered before; by
// joining the run in progress in this process; by waiting for, or
// reporting (ErrInFlight), a run in another process; or else by taking the
// turn and calling run, exactly once across all of them.
//
// If run fails, the error is recorded in the log (a turn_failed event) so
// a retry can see it, and the turn is released: the next Turn runs a new
// attempt. An error matching events.ErrInvalid is not recorded. A run
// shared by several callers goes on when the first caller's ctx ends, so
// the others still get the reply.
func (r *Runner) Turn(ctx context.Context, userMsg events.Event, run RunFunc) (Reply, error) {
	r.defaults()
	if reply, ok, err := r.recorded(ctx, userMsg); err != nil || ok {
		return reply, err
	}
	key := userMsg.ConversationID + "\x00" + userMsg.RequestID
	for {
		ch := r.group.DoChan(key, func() (any, error) {
			return r.turn(context.WithoutCancel(ctx), userMsg, run)
		})
		var res singleflight.Result
		select {
		case res = <-ch:
		case <-ctx.Done():
			return Reply{}, ctx.Err()
		}
		var inFlight *InFlightError
		if !errors.As(res.Err, &inFlight) || !r.Wait {
			if res.Err != nil {
				return Reply{}, res.Err
			}
			return res.Val.(Reply), nil
		}
		// Each caller waits for the other process on its own context,
		// then asks again (joining whoever asks first).
		t := time.NewTimer(r.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return Reply{}, fmt.Errorf("%w (stopped waiting: %w)", inFlight, ctx.Err())
		case <-t.C:
		}
	}
}

// recorded answers a retry of an answered request from read connections,
// without a write transaction: the reply exists and the stored user
// message is the same request (else BeginTurn reports the conflict).
func (r *Runner) recorded(ctx context.Context, userMsg events.Event) (Reply, bool, error) {
	reply, err := r.Store.ByRequestID(ctx, userMsg.ConversationID, repo.ReplyRequestID(userMsg.RequestID))
	if errors.Is(err, repo.ErrNotFound) {
		return Reply{}, false, nil
	} else if err != nil {
		return Reply{}, false, err
	}
	stored, err := r.Store.ByRequestID(ctx, userMsg.ConversationID, userMsg.RequestID)
	if err != nil {
		return Reply{}, false, nil // let BeginTurn settle it
	}
	want, err1 := Of(&userMsg)
	have, err2 := Of(&stored)
	if err1 != nil || err2 != nil || want != have {
		return Reply{}, false, nil
	}
	attempt, _ := reply.ExtraInt("attempt")
	return Reply{Message: reply, Attempt: int(attempt)}, true, nil
}

// turn begins the turn once for a singleflight group and runs the model
// when it gets the turn; another process's live lease is an
// *InFlightError, which each caller waits on by itself.
func (r *Runner) turn(ctx context.Context, userMsg events.Event, run RunFunc) (Reply, error) {
	st, err := r.Store.BeginTurn(ctx, repo.BeginTurn{UserMessage: userMsg, Owner: r.Owner, Lease: r.Lease})
	if err != nil {
		return Reply{}, err
	}
	switch st.Status {
	case repo.TurnCompleted:
		return Reply{Message: *st.Reply, Attempt: st.Attempt}, nil
	case repo.TurnStarted:
		return r.runAttempt(ctx, st, run)
	}
	return Reply{}, &InFlightError{Attempt: st.Attempt, LeaseExpiresAt: st.LeaseExpiresAt}
}

func (r *Runner) runAttempt(ctx context.Context, st repo.TurnState, run RunFunc) (Reply, error) {
	conv, urid := st.UserEvent.ConversationID, st.UserEvent.RequestID
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s := &Stream{store: r.Store, conv: conv, urid: urid, attempt: st.Attempt, lost: cancel}

	// Renew the lease while the model runs; losing the turn stops it.
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(r.Lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := r.Store.Heartbeat(ctx, conv, urid, st.Attempt); errors.Is(err, repo.ErrStaleAttempt) {
					cancel(ErrLostTurn)
					return
				}
			}
		}
	}()

	opts, runErr := run(runCtx, s)
	if cause := context.Cause(runCtx); errors.Is(cause, ErrLostTurn) {
		return Reply{}, fmt.Errorf("attempt %d of user request %q: %w", st.Attempt, urid, ErrLostTurn)
	}
	if runErr != nil {
		msg := runErr.Error()
		if errors.Is(runErr, events.ErrInvalid) {
			msg = "" // release without recording
		}
		if err := r.Store.FailTurn(ctx, conv, urid, st.Attempt, msg); err != nil && !errors.Is(err, repo.ErrStaleAttempt) {
			return Reply{}, errors.Join(runErr, fmt.Errorf("record failed turn: %w", err))
		}
		return Reply{}, runErr
	}
	res, err := compact.Finish(ctx, r.Store, conv, urid, st.Attempt, opts)
	if err != nil {
		if errors.Is(err, repo.ErrStaleAttempt) {
			return Reply{}, fmt.Errorf("attempt %d of user request %q: %w", st.Attempt, urid, ErrLostTurn)
		}
		return Reply{}, err
	}
	return Reply{Message: res.Event, Attempt: st.Attempt, Ran: true}, nil
}

// Stream records the chunks of one attempt's reply, numbering them.
type Stream struct {
	store   repo.Repo
	conv    string
	urid    string
	attempt int
	lost    context.CancelCauseFunc

	mu   sync.Mutex
	next int
}

// Attempt is the attempt this stream writes for.
func (s *Stream) Attempt() int { return s.attempt }

// Write records the next chunk of text. It returns ErrLostTurn when the
// attempt no longer holds the turn (and cancels the run's context).
func (s *Stream) Write(ctx context.Context, text string) (events.Event, error) {
	return s.WriteChunk(ctx, events.NewText(text), nil)
}

// WriteChunk records the next chunk: text content and/or tool-call
// fragments (see package compact for how fragments fold).
func (s *Stream) WriteChunk(ctx context.Context, content *events.Content, toolCalls []events.ToolCall) (events.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := compact.Chunk(s.conv, s.urid, s.attempt, s.next, "")
	ev.Content, ev.ToolCalls = content, toolCalls
	res, err := s.store.Append(ctx, ev, repo.AppendOptions{})
	if err != nil {
		if errors.Is(err, repo.ErrStaleAttempt) {
			s.lost(ErrLostTurn)
			return events.Event{}, fmt.Errorf("chunk %d: %w", s.next, ErrLostTurn)
		}
		return events.Event{}, err
	}
	s.next++
	return res.Event, nil
}
