package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// defaultLease is a turn's lease when BeginTurn gives none.
const defaultLease = 30 * time.Second

// run runs fn in the writer's next transaction, which locks and reads
// what p names first, and returns the positions of the events fn staged.
// Turns go through the writer like appends: concurrent begins, chunks and
// finishes of one process share a commit. fn's error, wrapped by answer,
// undoes what fn staged and is returned as it is.
func (r *Repo) run(ctx context.Context, p *plan, fn func(t *txn) error) (map[string]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req := &request{ctx: ctx, mode: modeFunc, plan: p, fn: fn}
	if err := r.submit(req); err != nil {
		return nil, err
	}
	return req.pos, req.err
}

// fnError marks an error returned by a transaction's function that is the
// caller's answer (a stale attempt, a conflict), not a failure of the
// transaction.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }
func (e *fnError) Unwrap() error { return e.err }

// answer wraps a decision of a transaction's function (an error the
// caller gets as it is).
func answer(err error) error {
	if err == nil {
		return nil
	}
	return &fnError{err}
}

// BeginTurn implements repo.Turns.
func (r *Repo) BeginTurn(ctx context.Context, req repo.BeginTurn) (repo.TurnState, error) {
	if err := ctx.Err(); err != nil {
		return repo.TurnState{}, err
	}
	w, st, err := r.beginTurn(ctx, req)
	if err != nil {
		return repo.TurnState{}, err
	}
	if err := r.submit(w); err != nil {
		return repo.TurnState{}, err
	}
	if w.err != nil {
		return repo.TurnState{}, w.err
	}
	if st.UserEvent.Pos == 0 {
		st.UserEvent.Pos = w.pos[st.UserEvent.ID]
	}
	return *st, nil
}

// beginTurn returns the writer's request that begins a turn, and the
// state it fills in when it runs.
func (r *Repo) beginTurn(ctx context.Context, req repo.BeginTurn) (*request, *repo.TurnState, error) {
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
		return nil, nil, &events.ValidationError{Fields: bad}
	}
	p := r.prepare(msg, false)
	if p.err != nil {
		return nil, nil, p.err
	}
	lease := req.Lease
	if lease <= 0 {
		lease = defaultLease
	}
	conv, urid := p.ev.ConversationID, p.ev.RequestID
	var pl plan
	pl.add(&p)
	pl.keys = append(pl.keys, convKey{conv, repo.ReplyRequestID(urid)})
	pl.turn(conv, urid)
	st := &repo.TurnState{}
	fn := func(t *txn) error {
		res, err := t.appendOne(&p, repo.AppendOptions{})
		if err != nil {
			return answer(err)
		}
		*st = repo.TurnState{UserEvent: res.Event}
		tr := t.turns[convKey{conv, urid}]
		var cur turn
		if tr != nil {
			cur = *tr
		}
		st.LastError = cur.lastError
		if reply := t.byKey[convKey{conv, repo.ReplyRequestID(urid)}]; reply != nil {
			ev := reply.ev
			st.Status, st.Reply, st.Attempt = repo.TurnCompleted, &ev, cur.attempt
			return nil
		}
		now := r.opts.Now().UnixNano()
		if tr != nil && cur.state == turnRunning && cur.attempt > 0 && now < cur.leaseExpires {
			st.Status, st.Attempt = repo.TurnInFlight, cur.attempt
			st.LeaseExpiresAt = time.Unix(0, cur.leaseExpires).UTC()
			return nil
		}
		st.Status, st.Attempt = repo.TurnStarted, cur.attempt+1
		expires := now + int64(lease)
		st.LeaseExpiresAt = time.Unix(0, expires).UTC()
		t.queue(conv, qTurnPut, conv, urid, int32(st.Attempt), noNUL(req.Owner), int64(lease), expires, cur.lastError)
		t.setTurn(convKey{conv, urid}, turn{attempt: st.Attempt, owner: req.Owner, leaseNS: int64(lease),
			leaseExpires: expires, state: turnRunning, lastError: cur.lastError})
		return nil
	}
	return &request{ctx: ctx, mode: modeFunc, plan: &pl, fn: fn}, st, nil
}

// holding checks that attempt holds the turn of a user request.
func (t *txn) holding(conv, urid string, attempt int) (*turn, error) {
	tr := t.turns[convKey{conv, urid}]
	switch {
	case tr == nil || tr.attempt == 0: // attempt 0: streamed, never begun as a turn
		return nil, answer(fmt.Errorf("turn of user request %q in conversation %q: %w", urid, conv, repo.ErrNotFound))
	case tr.attempt != attempt || tr.state != turnRunning:
		return nil, answer(&repo.StaleAttemptError{ConversationID: conv, UserRequestID: urid, Attempt: attempt, Holder: tr.attempt, Closed: closed(tr)})
	}
	return tr, nil
}

// turnPlan locks conv and reads the turn of urid.
func turnPlan(conv, urid string) *plan {
	var p plan
	p.conv(conv)
	p.turn(conv, urid)
	return &p
}

// Heartbeat implements repo.Turns.
func (r *Repo) Heartbeat(ctx context.Context, conversationID, userRequestID string, attempt int) (time.Time, error) {
	var expires int64
	_, err := r.run(ctx, turnPlan(conversationID, userRequestID), func(t *txn) error {
		tr, err := t.holding(conversationID, userRequestID, attempt)
		if err != nil {
			return err
		}
		expires = r.opts.Now().UnixNano() + tr.leaseNS
		t.queue(conversationID, qTurnHeartbeat, expires, conversationID, userRequestID, int32(attempt))
		next := *tr
		next.leaseExpires = expires
		t.setTurn(convKey{conversationID, userRequestID}, next)
		return nil
	})
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, expires).UTC(), nil
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
	pl := turnPlan(conversationID, userRequestID)
	pl.add(&p)
	_, err := r.run(ctx, pl, func(t *txn) error {
		tr, err := t.holding(conversationID, userRequestID, attempt)
		if err != nil {
			return err
		}
		if message != "" {
			if _, err := t.appendOne(&p, repo.AppendOptions{}); err != nil {
				return answer(err)
			}
		}
		t.queue(conversationID, qTurnFail, noNUL(message), conversationID, userRequestID)
		next := *tr
		next.state, next.lastError, next.leaseExpires = turnFailed, message, 0
		t.setTurn(convKey{conversationID, userRequestID}, next)
		return nil
	})
	return err
}

// Finish implements repo.Turns.
func (r *Repo) Finish(ctx context.Context, conversationID, userRequestID string, attempt int, build repo.FinishFunc) (repo.Result, error) {
	var result repo.Result
	pl := turnPlan(conversationID, userRequestID)
	pl.keys = append(pl.keys, convKey{conversationID, repo.ReplyRequestID(userRequestID)})
	stream := streamKey{conversationID, userRequestID, attempt}
	pl.streams = append(pl.streams, stream)
	pos, err := r.run(ctx, pl, func(t *txn) error {
		result = repo.Result{}
		tr := t.turns[convKey{conversationID, userRequestID}]
		holder := 0
		if tr != nil {
			holder = tr.attempt
		}
		stale := &repo.StaleAttemptError{ConversationID: conversationID, UserRequestID: userRequestID, Attempt: attempt, Holder: holder, Closed: closed(tr)}
		if reply := t.byKey[convKey{conversationID, repo.ReplyRequestID(userRequestID)}]; reply != nil {
			if attempt != holder {
				return answer(stale)
			}
			result = repo.Result{Event: reply.ev, Outcome: repo.Duplicate}
			return nil
		}
		if attempt != holder || (tr != nil && holder > 0 && tr.state != turnRunning) {
			return answer(stale)
		}
		chunks, err := t.chunks(context.Background(), stream)
		if err != nil {
			return err
		}
		if tr == nil && len(chunks) == 0 {
			// Nothing was begun or streamed: most likely a mistyped
			// request id, which must not leave an empty reply forever.
			return answer(fmt.Errorf("no turn and no chunks for user request %q in conversation %q: %w", userRequestID, conversationID, repo.ErrNotFound))
		}
		evs, err := build(chunks)
		if err != nil {
			return answer(err)
		}
		if len(evs) == 0 || evs[0].Type != events.TypeAssistantMessage {
			return answer(errors.New("postgres: finish: build must return the assistant_message first"))
		}
		ps := make([]*prepared, len(evs))
		for i, e := range evs {
			e.ConversationID = conversationID
			if i == 0 {
				e.RequestID = repo.ReplyRequestID(userRequestID)
			}
			p := r.prepare(e, false)
			ps[i] = &p
		}
		if err := t.lookup(context.Background(), ps); err != nil {
			return err
		}
		for i, p := range ps {
			res, err := t.appendOne(p, repo.AppendOptions{})
			if err != nil {
				return answer(fmt.Errorf("finish: event %d: %w", i, err))
			}
			if i == 0 {
				result = res
			}
		}
		return nil
	})
	if err != nil {
		return repo.Result{}, err
	}
	if result.Event.Pos == 0 {
		result.Event.Pos = pos[result.Event.ID]
	}
	return result, nil
}

// Streams implements repo.Turns.
func (r *Repo) Streams(ctx context.Context, idleSince time.Time) ([]repo.Stream, error) {
	var out []repo.Stream
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		out = nil
		rows, err := c.Query(ctx, qOpenStreams, idleSince.UnixNano(), r.opts.Now().UnixNano(), int64(10000))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s repo.Stream
			var attempt int32
			var at int64
			if err := rows.Scan(&s.ConversationID, &s.UserRequestID, &attempt, &at); err != nil {
				return err
			}
			s.Attempt, s.LastChunkAt = int(attempt), time.Unix(0, at).UTC()
			out = append(out, s)
		}
		return rows.Err()
	})
	return out, err
}

// PurgeChunks implements repo.Turns. It takes no conversation lock: it
// changes only chunks of completed turns, which no writer touches again,
// and neither the read models nor the search index count chunks.
func (r *Repo) PurgeChunks(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		tag, err := c.Exec(ctx, qPurgeChunks, before.UnixNano())
		n = tag.RowsAffected()
		return err
	})
	return n, err
}
