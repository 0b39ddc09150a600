package sqlite

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// defaultLease is a turn's lease when BeginTurn gives none.
const defaultLease = 30 * time.Second

// turn is a row of the turns table.
type turn struct {
	attempt      int
	owner        string
	leaseNS      int64
	leaseExpires int64 // Unix ns
	state        string
	lastError    string
}

const (
	turnRunning   = "running"
	turnFailed    = "failed"
	turnCompleted = "completed"
)

// run executes fn inside a write transaction, under a savepoint: fn's
// writes are undone when it fails.
func (r *Repo) run(ctx context.Context, fn func(w *writer) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &request{ctx: ctx, mode: modeFunc, fn: fn}
	if err := r.submit(req); err != nil {
		return err
	}
	return req.err
}

func (w *writer) getTurn(conv, urid string) (turn, bool, error) {
	s, err := w.c.stmt(qTurnGet)
	if err != nil {
		return turn{}, false, err
	}
	defer s.Reset()
	s.BindText(1, conv)
	s.BindText(2, urid)
	if !s.Step() {
		if err := s.Err(); err != nil {
			return turn{}, false, fmt.Errorf("sqlite: read turn: %w", err)
		}
		return turn{}, false, nil
	}
	return turn{
		attempt: s.ColumnInt(0), owner: s.ColumnText(1), leaseNS: s.ColumnInt64(2),
		leaseExpires: s.ColumnInt64(3), state: s.ColumnText(4), lastError: s.ColumnText(5),
	}, true, nil
}

// checkChunk refuses a chunk from an attempt that does not hold its turn.
func (w *writer) checkChunk(p *prepared) error {
	urid, _ := p.ev.ExtraString("user_request_id")
	attempt, _ := p.ev.ExtraInt("attempt")
	t, found, err := w.getTurn(p.ev.ConversationID, urid)
	if err != nil {
		return err
	}
	holder := 0
	if found {
		holder = t.attempt
	}
	// A finished stream takes no more chunks, begun as a turn or not:
	// they would come after the reply and never be folded.
	if int(attempt) != holder || (found && t.state != turnRunning) {
		return &repo.StaleAttemptError{ConversationID: p.ev.ConversationID, UserRequestID: urid, Attempt: int(attempt), Holder: holder, Closed: closed(t)}
	}
	return nil
}

// trackTurn keeps the turns table in step with an event just inserted: a
// final message completes its turn at once (later writes in the same
// transaction must see it). Chunks move their stream on at commit
// (trackChunks), once per stream.
func (w *writer) trackTurn(e *events.Event) error {
	if e.Type == events.TypeAssistantMessage && strings.HasPrefix(e.RequestID, "assistant:") {
		return w.exec(qTurnComplete, e.ConversationID, strings.TrimPrefix(e.RequestID, "assistant:"))
	}
	return nil
}

// trackChunks records, before commit, the chunks the transaction wrote:
// one row update per stream, however many chunks it got.
func (w *writer) trackChunks(evs []events.Event) error {
	type key struct{ conv, urid string }
	type stream struct {
		lastAt  int64
		attempt int64
	}
	var order []key
	streams := map[key]*stream{}
	for i := range evs {
		e := &evs[i]
		if e.Type != events.TypeAssistantDelta {
			continue
		}
		urid, _ := e.ExtraString("user_request_id")
		attempt, _ := e.ExtraInt("attempt")
		k := key{e.ConversationID, urid}
		s := streams[k]
		if s == nil {
			s = &stream{}
			streams[k] = s
			order = append(order, k)
		}
		s.lastAt = max(s.lastAt, e.CreatedAt.UnixNano())
		s.attempt = max(s.attempt, attempt)
	}
	now := w.repo.opts.Now().UnixNano()
	for _, k := range order {
		s := streams[k]
		if err := w.exec(qTurnChunk, k.conv, k.urid, s.attempt, s.lastAt, now); err != nil {
			return fmt.Errorf("sqlite: track stream: %w", err)
		}
	}
	return nil
}

func (w *writer) exec(query string, args ...any) error {
	s, err := w.c.stmt(query)
	if err != nil {
		return err
	}
	if err := bind(s, args...); err != nil {
		s.Reset()
		return err
	}
	return s.Exec()
}

// BeginTurn implements repo.Turns.
func (r *Repo) BeginTurn(ctx context.Context, req repo.BeginTurn) (repo.TurnState, error) {
	msg := req.UserMessage
	if msg.Type == "" {
		msg.Type = events.TypeUserMessage
	}
	var bad []*events.FieldError
	if msg.Type != events.TypeUserMessage {
		bad = append(bad, &events.FieldError{Field: "type", Reason: "a turn begins with a user_message"})
	}
	if msg.RequestID == "" {
		bad = append(bad, &events.FieldError{Field: "request_id", Reason: "is required to begin a turn"})
	}
	if bad != nil {
		return repo.TurnState{}, &events.ValidationError{Fields: bad}
	}
	p := r.prepare(msg, false)
	if p.err != nil {
		return repo.TurnState{}, p.err
	}
	lease := req.Lease
	if lease <= 0 {
		lease = defaultLease
	}
	conv, urid := p.ev.ConversationID, p.ev.RequestID
	var st repo.TurnState
	err := r.run(ctx, func(w *writer) error {
		res, err := w.appendOne(&p, repo.AppendOptions{})
		if err != nil {
			return err
		}
		st = repo.TurnState{UserEvent: res.Event}
		t, found, err := w.getTurn(conv, urid)
		if err != nil {
			return err
		}
		st.LastError = t.lastError
		reply, answered, err := w.reply(conv, urid)
		if err != nil {
			return err
		}
		if answered {
			st.Status, st.Reply, st.Attempt = repo.TurnCompleted, &reply, t.attempt
			return nil
		}
		now := r.opts.Now().UnixNano()
		if found && t.state == turnRunning && t.attempt > 0 && now < t.leaseExpires {
			st.Status, st.Attempt = repo.TurnInFlight, t.attempt
			st.LeaseExpiresAt = time.Unix(0, t.leaseExpires).UTC()
			return nil
		}
		st.Status, st.Attempt = repo.TurnStarted, t.attempt+1
		expires := now + int64(lease)
		st.LeaseExpiresAt = time.Unix(0, expires).UTC()
		return w.exec(qTurnPut, conv, urid, int64(st.Attempt), req.Owner, int64(lease), expires, t.lastError)
	})
	return st, err
}

// reply looks up the final message answering a user request.
func (w *writer) reply(conv, urid string) (events.Event, bool, error) {
	ev, _, found, err := lookup(w.c, qByRequestID, conv, repo.ReplyRequestID(urid))
	return ev, found, err
}

// holding checks that attempt holds the turn of a user request.
func (w *writer) holding(conv, urid string, attempt int) (turn, error) {
	t, found, err := w.getTurn(conv, urid)
	switch {
	case err != nil:
		return turn{}, err
	case !found || t.attempt == 0: // attempt 0: streamed, never begun as a turn
		return turn{}, fmt.Errorf("turn of user request %q in conversation %q: %w", urid, conv, repo.ErrNotFound)
	case t.attempt != attempt || t.state != turnRunning:
		return turn{}, &repo.StaleAttemptError{ConversationID: conv, UserRequestID: urid, Attempt: attempt, Holder: t.attempt, Closed: closed(t)}
	}
	return t, nil
}

// closed names the state of a turn that takes no more writes ("" while
// it runs).
func closed(t turn) string {
	if t.state == turnRunning {
		return ""
	}
	return t.state
}

// Heartbeat implements repo.Turns.
func (r *Repo) Heartbeat(ctx context.Context, conversationID, userRequestID string, attempt int) (time.Time, error) {
	var expires time.Time
	err := r.run(ctx, func(w *writer) error {
		if _, err := w.holding(conversationID, userRequestID, attempt); err != nil {
			return err
		}
		s, err := w.c.stmt(qTurnHeartbeat)
		if err != nil {
			return err
		}
		defer s.Reset()
		bind(s, r.opts.Now().UnixNano(), conversationID, userRequestID, int64(attempt))
		if !s.Step() {
			return cmpErr(s.Err(), "extend lease")
		}
		expires = time.Unix(0, s.ColumnInt64(0)).UTC()
		return nil
	})
	return expires, err
}

// FailTurn implements repo.Turns.
func (r *Repo) FailTurn(ctx context.Context, conversationID, userRequestID string, attempt int, message string) error {
	ev := events.Event{
		ConversationID: conversationID,
		Type:           events.TypeTurnFailed,
		RequestID:      repo.FailureRequestID(userRequestID, attempt),
		Extra: map[string]any{
			"user_request_id": userRequestID,
			"attempt":         attempt,
			"error":           message,
		},
	}
	p := r.prepare(ev, false)
	if p.err != nil {
		return p.err
	}
	return r.run(ctx, func(w *writer) error {
		if _, err := w.holding(conversationID, userRequestID, attempt); err != nil {
			return err
		}
		if message != "" {
			if _, err := w.appendOne(&p, repo.AppendOptions{}); err != nil {
				return err
			}
		}
		return w.exec(qTurnFail, message, conversationID, userRequestID)
	})
}

// Finish implements repo.Turns.
func (r *Repo) Finish(ctx context.Context, conversationID, userRequestID string, attempt int, build repo.FinishFunc) (repo.Result, error) {
	var result repo.Result
	err := r.run(ctx, func(w *writer) error {
		t, found, err := w.getTurn(conversationID, userRequestID)
		if err != nil {
			return err
		}
		holder := 0
		if found {
			holder = t.attempt
		}
		stale := &repo.StaleAttemptError{ConversationID: conversationID, UserRequestID: userRequestID, Attempt: attempt, Holder: holder, Closed: closed(t)}
		if reply, answered, err := w.reply(conversationID, userRequestID); err != nil {
			return err
		} else if answered {
			if attempt != holder {
				return stale
			}
			result = repo.Result{Event: reply, Outcome: repo.Duplicate}
			return nil
		}
		if attempt != holder || (found && holder > 0 && t.state != turnRunning) {
			return stale
		}
		chunks, err := w.chunks(conversationID, userRequestID, attempt)
		if err != nil {
			return err
		}
		if !found && len(chunks) == 0 {
			// Nothing was begun or streamed: most likely a mistyped
			// request id, which must not leave an empty reply forever.
			return fmt.Errorf("no turn and no chunks for user request %q in conversation %q: %w", userRequestID, conversationID, repo.ErrNotFound)
		}
		evs, err := build(chunks)
		if err != nil {
			return err
		}
		if len(evs) == 0 || evs[0].Type != events.TypeAssistantMessage {
			return fmt.Errorf("sqlite: finish: build must return the assistant_message first")
		}
		for i, e := range evs {
			e.ConversationID = conversationID
			if i == 0 {
				e.RequestID = repo.ReplyRequestID(userRequestID)
			}
			p := r.prepare(e, false)
			res, err := w.appendOne(&p, repo.AppendOptions{})
			if err != nil {
				return fmt.Errorf("finish: event %d: %w", i, err)
			}
			if i == 0 {
				result = res
			}
		}
		return nil
	})
	return result, err
}

// chunks reads the chunks of a user request's attempt in seq order.
func (w *writer) chunks(conv, urid string, attempt int) ([]events.Event, error) {
	prefix := "delta:" + urid + ":"
	if attempt > 0 {
		prefix += strconv.Itoa(attempt) + ":" // only this attempt's keys
	}
	// The key range [prefix, prefix with ':' raised to ';') holds every
	// key that starts with prefix.
	upper := prefix[:len(prefix)-1] + ";"
	keep := func(e events.Event) bool {
		u, _ := e.ExtraString("user_request_id")
		a, _ := e.ExtraInt("attempt")
		return u == urid && int(a) == attempt
	}
	out, err := w.scan(qChunksByKey, keep, conv, prefix, upper)
	if err != nil || len(out) > 0 {
		slices.SortFunc(out, func(a, b events.Event) int { return int(a.Seq - b.Seq) })
		return out, err
	}
	return w.scan(qChunksScan, keep, conv)
}

func (w *writer) scan(query string, keep func(events.Event) bool, args ...any) ([]events.Event, error) {
	s, err := w.c.stmt(query)
	if err != nil {
		return nil, err
	}
	defer s.Reset()
	if err := bind(s, args...); err != nil {
		return nil, err
	}
	var out []events.Event
	for s.Step() {
		e, err := scanEvent(s)
		if err != nil {
			return nil, err
		}
		if keep(e) {
			out = append(out, e)
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read chunks: %w", err)
	}
	return out, nil
}

// Streams implements repo.Turns.
func (r *Repo) Streams(ctx context.Context, idleSince time.Time) ([]repo.Stream, error) {
	var out []repo.Stream
	err := r.read(ctx, func(c *conn) error {
		s, err := c.stmt(qOpenStreams)
		if err != nil {
			return err
		}
		defer s.Reset()
		bind(s, idleSince.UnixNano(), r.opts.Now().UnixNano(), int64(10000))
		for s.Step() {
			out = append(out, repo.Stream{
				ConversationID: s.ColumnText(0), UserRequestID: s.ColumnText(1),
				Attempt: s.ColumnInt(2), LastChunkAt: time.Unix(0, s.ColumnInt64(3)).UTC(),
			})
		}
		return s.Err()
	})
	return out, err
}

// PurgeChunks implements repo.Turns.
func (r *Repo) PurgeChunks(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := r.run(ctx, func(w *writer) error {
		if err := w.exec(qPurgeChunks, before.UnixNano()); err != nil {
			return fmt.Errorf("sqlite: purge chunks: %w", err)
		}
		n = w.c.db.Changes()
		return nil
	})
	return n, err
}
