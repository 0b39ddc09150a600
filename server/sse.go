package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/chatlog/chatlog/repo"
)

// stream answers GET .../events with Accept: text/event-stream: the
// conversation's events after Last-Event-ID (else after_seq, else from
// the first), then each new one as it is committed, until the client
// goes away or the server shuts down. Each event is one message, "id:"
// its seq and "data:" its JSON, flushed at once; a ": keep-alive" comment
// is sent after Options.KeepAlive without one.
//
// The stream first subscribes to the conversation's shared feed (hub),
// then sends what the store holds after its position, then the feed's
// events, skipping those it has sent. Whenever it falls behind the feed
// it is cut off and catches up from the store by itself. It sends events
// strictly in seq order without gaps: a client resuming with the last id
// it saw gets no repeats and misses nothing.
//
// The server's timeouts leave a reading client alone: net/http clears
// the read deadline once the request is read, and send extends the write
// deadline before each write.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) error {
	after, err := count(r.URL.Query(), "after_seq")
	if err != nil {
		return err
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n < 0 {
			return badRequest("Last-Event-ID", "must be the seq of the last event received, got %q", id)
		}
		after = n
	}
	if s.closing.Err() != nil {
		return &apiError{status: http.StatusServiceUnavailable, Code: codeUnavailable, Message: "the server is shutting down"}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stopOnClose := context.AfterFunc(s.closing, cancel)
	defer stopOnClose()

	st := &sseStream{s: s, ctx: ctx, w: w, rc: http.NewResponseController(w), cid: r.PathValue("cid"), next: after + 1}
	sub, err := s.hub.subscribe(ctx, st.cid)
	if err != nil {
		return err // nothing sent yet: an ordinary error response
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // tell proxies not to buffer
	w.WriteHeader(http.StatusOK)
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()

	// Headers are sent: from here on a failure ends the stream (the
	// client resumes with Last-Event-ID) and is only logged.
	if err := st.run(sub); err != nil && ctx.Err() == nil && !errors.Is(err, errClientGone) {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "event stream ended by an error",
			slog.String("conversation_id", st.cid), slog.Int64("next_seq", st.next), slog.Any("error", err))
	}
	return nil
}

// errClientGone is a failed write: the client left or stopped reading.
var errClientGone = errors.New("client gone")

// sseStream is one client's event stream.
type sseStream struct {
	s   *Server
	ctx context.Context
	w   http.ResponseWriter
	rc  *http.ResponseController
	cid string
	// next is the seq of the next event to send.
	next int64
}

// run sends the stream until ctx is done or a write or read fails. It
// owns sub, the stream's subscription, renews it when cut off, and
// unsubscribes the last one when it returns.
func (st *sseStream) run(sub *subscriber) error {
	defer func() { st.s.hub.unsubscribe(sub) }()
	if err := st.send([]byte(": stream of conversation events\n\n")); err != nil {
		return err
	}
	if err := st.catchUp(0); err != nil {
		return err
	}
	keepAlive := time.NewTimer(st.s.opts.KeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case m, ok := <-sub.ch:
			if !ok {
				// Cut off (it fell behind) or the feed ended:
				// subscribe again, then read what was missed.
				st.s.hub.unsubscribe(sub)
				if err := st.ctx.Err(); err != nil {
					return err
				}
				renewed, err := st.s.hub.subscribe(st.ctx, st.cid)
				if err != nil {
					return err
				}
				sub = renewed
				if err := st.catchUp(0); err != nil {
					return err
				}
				break
			}
			if m.seq < st.next {
				continue // sent already, from the store
			}
			if m.seq > st.next {
				if err := st.catchUp(m.seq - 1); err != nil {
					return err
				}
				if m.seq != st.next {
					return fmt.Errorf("events %d to %d are not in the store", st.next, m.seq-1)
				}
			}
			if err := st.send(m.frame); err != nil {
				return err
			}
			st.next = m.seq + 1
		case <-keepAlive.C:
			if err := st.send([]byte(": keep-alive\n\n")); err != nil {
				return err
			}
		case <-st.ctx.Done():
			return st.ctx.Err()
		}
		keepAlive.Reset(st.s.opts.KeepAlive)
	}
}

// catchUp sends the events from st.next through until (0: all there are)
// read from the store.
func (st *sseStream) catchUp(until int64) error {
	for e, err := range st.s.repo.Events(st.ctx, st.cid, repo.Range{AfterSeq: st.next - 1, UntilSeq: until}) {
		if err != nil {
			return err
		}
		m, err := encodeEvent(e)
		if err != nil {
			return err
		}
		if err := st.send(m.frame); err != nil {
			return err
		}
		st.next = e.Seq + 1
	}
	return nil
}

// send writes one message within the write timeout and flushes it: the
// deadline is extended for each write, so the server's WriteTimeout cuts
// off only a client that stopped reading.
func (st *sseStream) send(b []byte) error {
	if err := st.rc.SetWriteDeadline(time.Now().Add(st.s.opts.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := st.w.Write(b); err != nil {
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	if err := st.rc.Flush(); err != nil {
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	return nil
}
