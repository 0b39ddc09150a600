package sqlite

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/ncruces/go-sqlite3"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// pageSize is how many events a read fetches per query: iterators hold a
// connection only while fetching a page, never while the caller works.
const pageSize = 256

// Append implements repo.Repo.
func (r *Repo) Append(ctx context.Context, e events.Event, opts repo.AppendOptions) (repo.Result, error) {
	if err := ctx.Err(); err != nil {
		return repo.Result{}, err
	}
	p := r.prepare(e, opts.KeepSeq)
	if p.err != nil {
		return repo.Result{}, p.err
	}
	// A retry is answered from a read connection without queueing behind
	// the writer: duplicates stay cheap under any write load. A miss (or
	// a race with the first write) is settled inside the write
	// transaction. Streamed chunks skip the check: they come fast and are
	// rarely re-sent, and under writes a reader's cache is cold, so the
	// check would cost each chunk more than the writer settling the few
	// re-sent ones.
	if p.ev.RequestID != "" && p.ev.Type != events.TypeAssistantDelta {
		var (
			stored events.Event
			found  bool
			err    error
		)
		rerr := r.read(ctx, func(c *conn) error {
			var fp []byte
			stored, fp, found, err = lookup(c, qByRequestID, p.ev.ConversationID, p.ev.RequestID)
			err = checkDuplicate(&p, stored, fp, found, err, p.ev.RequestID)
			return nil
		})
		if rerr != nil {
			return repo.Result{}, rerr
		}
		if err != nil {
			if _, isConflict := err.(*repo.ConflictError); isConflict {
				r.stats.conflicts.Add(1)
			}
			return repo.Result{}, err
		}
		if found {
			r.stats.duplicates.Add(1)
			return repo.Result{Event: stored, Outcome: repo.Duplicate}, nil
		}
	}
	req := &request{ctx: ctx, mode: modeSingle, opts: opts, evs: []prepared{p}}
	if err := r.submit(req); err != nil {
		return repo.Result{}, err
	}
	if req.err != nil {
		return repo.Result{}, req.err
	}
	return req.items[0].Result, nil
}

// AppendBatch implements repo.Repo.
func (r *Repo) AppendBatch(ctx context.Context, evs []events.Event, opts repo.AppendOptions) ([]repo.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, nil
	}
	ps := make([]prepared, len(evs))
	for i, e := range evs {
		ps[i] = r.prepare(e, opts.KeepSeq)
		if ps[i].err != nil {
			return nil, &repo.BatchError{Index: i, Err: ps[i].err}
		}
		if _, ok := opts.Expected.Seq(); ok && e.ConversationID != evs[0].ConversationID {
			return nil, &repo.BatchError{Index: i, Err: &events.FieldError{
				Field: "conversation_id", Reason: "a batch with an expected seq must hold one conversation"}}
		}
	}
	req := &request{ctx: ctx, mode: modeAtomic, opts: opts, evs: ps}
	if err := r.submit(req); err != nil {
		return nil, err
	}
	if req.err != nil {
		return nil, req.err
	}
	out := make([]repo.Result, len(req.items))
	for i, it := range req.items {
		out[i] = it.Result
	}
	return out, nil
}

// AppendEach implements repo.Repo.
func (r *Repo) AppendEach(ctx context.Context, evs []events.Event, opts repo.AppendOptions) []repo.Item {
	items := make([]repo.Item, len(evs))
	fail := func(err error) []repo.Item {
		for i := range items {
			items[i].Err = err
		}
		return items
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if _, ok := opts.Expected.Seq(); ok {
		return fail(&events.FieldError{Field: "expected_seq", Reason: "AppendEach takes no expected seq; use AppendBatch"})
	}
	// Chunks are queued as soon as they are prepared: the writer takes
	// requests in order, so seqs follow the input while the next chunk's
	// encoding overlaps the previous chunk's write.
	ps := make([]prepared, len(evs))
	var queued []*request
	for start := 0; start < len(ps); start += eachChunk {
		end := min(start+eachChunk, len(ps))
		for i := start; i < end; i++ {
			ps[i] = r.prepare(evs[i], opts.KeepSeq)
			items[i].Err = ps[i].err
		}
		req := &request{ctx: ctx, mode: modeEach, opts: opts, evs: ps[start:end], items: items[start:end]}
		if err := r.enqueue(req); err != nil {
			for i := start; i < len(items); i++ {
				if items[i].Err == nil {
					items[i] = repo.Item{Err: err}
				}
			}
			break
		}
		queued = append(queued, req)
	}
	for _, req := range queued {
		<-req.done
	}
	return items
}

// eachChunk is how many events AppendEach prepares before queueing them.
const eachChunk = 128

// ByRequestID implements repo.Repo.
func (r *Repo) ByRequestID(ctx context.Context, conversationID, requestID string) (events.Event, error) {
	var (
		ev    events.Event
		found bool
	)
	err := r.read(ctx, func(c *conn) error {
		var err error
		ev, _, found, err = lookup(c, qByRequestID, conversationID, requestID)
		return err
	})
	if err != nil {
		return events.Event{}, err
	}
	if !found {
		return events.Event{}, fmt.Errorf("request_id %q in conversation %q: %w", requestID, conversationID, repo.ErrNotFound)
	}
	return ev, nil
}

// Head implements repo.Repo.
func (r *Repo) Head(ctx context.Context, conversationID string) (int64, error) {
	var seq int64
	err := r.read(ctx, func(c *conn) error {
		s, err := c.stmt(qHead)
		if err != nil {
			return err
		}
		defer s.Reset()
		s.BindText(1, conversationID)
		if s.Step() {
			seq = s.ColumnInt64(0)
		}
		return s.Err()
	})
	return seq, err
}

// All implements repo.Repo.
func (r *Repo) All(ctx context.Context, afterPos int64) iter.Seq2[events.Event, error] {
	return func(yield func(events.Event, error) bool) {
		for {
			page, err := r.page(ctx, qAfterPos, afterPos, int64(pageSize))
			if err != nil {
				yield(events.Event{}, err)
				return
			}
			for _, e := range page {
				if !yield(e, nil) {
					return
				}
				afterPos = e.Pos
			}
			if len(page) < pageSize {
				return
			}
		}
	}
}

// Follow implements repo.Repo.
func (r *Repo) Follow(ctx context.Context, conversationID string, afterSeq int64) iter.Seq2[events.Event, error] {
	return func(yield func(events.Event, error) bool) {
		poll := time.NewTimer(r.opts.PollInterval)
		defer poll.Stop()
		for {
			// Take the wake-up channel before reading, so a commit
			// landing between the read and the wait is not missed.
			woken := r.notify.wait(conversationID)
			for e, err := range r.Events(ctx, conversationID, repo.Range{AfterSeq: afterSeq}) {
				if err != nil {
					if ctx.Err() == nil {
						yield(events.Event{}, err)
					}
					return
				}
				if !yield(e, nil) {
					return
				}
				afterSeq = e.Seq
			}
			poll.Reset(r.opts.PollInterval)
			select {
			case <-ctx.Done():
				return
			case <-woken:
			case <-poll.C:
			}
		}
	}
}

// page runs a read query and decodes every row into an event.
func (r *Repo) page(ctx context.Context, query string, args ...any) ([]events.Event, error) {
	var out []events.Event
	err := r.read(ctx, func(c *conn) error {
		s, err := c.stmt(query)
		if err != nil {
			return err
		}
		defer s.Reset()
		if err := bind(s, args...); err != nil {
			return err
		}
		for s.Step() {
			e, err := scanEvent(s)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		if err := s.Err(); err != nil {
			return fmt.Errorf("sqlite: read events: %w", err)
		}
		return nil
	})
	return out, err
}

func bind(s *sqlite3.Stmt, args ...any) error {
	for i, a := range args {
		var err error
		switch v := a.(type) {
		case string:
			err = s.BindText(i+1, v)
		case int64:
			err = s.BindInt64(i+1, v)
		default:
			err = fmt.Errorf("sqlite: cannot bind %T", a)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// lookup runs a point query returning the event columns and fingerprint.
func lookup(c *conn, query string, args ...any) (events.Event, []byte, bool, error) {
	s, err := c.stmt(query)
	if err != nil {
		return events.Event{}, nil, false, err
	}
	defer s.Reset()
	if err := bind(s, args...); err != nil {
		return events.Event{}, nil, false, err
	}
	if !s.Step() {
		if err := s.Err(); err != nil {
			return events.Event{}, nil, false, fmt.Errorf("sqlite: look up event: %w", err)
		}
		return events.Event{}, nil, false, nil
	}
	e, err := scanEvent(s)
	if err != nil {
		return events.Event{}, nil, false, err
	}
	fp := s.ColumnBlob(11, nil)
	return e, fp, true, nil
}

// lookupRow runs a query returning at most one row of event columns.
func lookupRow(c *conn, query string, args ...any) (events.Event, bool, error) {
	s, err := c.stmt(query)
	if err != nil {
		return events.Event{}, false, err
	}
	defer s.Reset()
	if err := bind(s, args...); err != nil {
		return events.Event{}, false, err
	}
	if !s.Step() {
		return events.Event{}, false, s.Err()
	}
	e, err := scanEvent(s)
	return e, err == nil, err
}

// scanEvent decodes the event columns (eventColumns order) of the row.
func scanEvent(s *sqlite3.Stmt) (events.Event, error) {
	e := events.Event{
		Pos:            s.ColumnInt64(0),
		ID:             s.ColumnText(1),
		ConversationID: s.ColumnText(2),
		Seq:            s.ColumnInt64(3),
		Type:           events.Type(s.ColumnText(4)),
		SchemaVersion:  s.ColumnInt(5),
		CreatedAt:      time.Unix(0, s.ColumnInt64(6)).UTC(),
		Role:           events.Role(s.ColumnText(7)),
	}
	// Payload columns may be compressed (see pack); extra never is.
	var text string
	typ := s.ColumnType(8)
	textSet := typ != sqlite3.NULL
	var err error
	if textSet {
		text, err = unpackText(typ, s.ColumnRawBlob(8))
	}
	var body []byte
	if err == nil {
		body, err = unpackBody(s.ColumnRawBlob(9))
	}
	if err == nil {
		err = e.DecodeStored(text, textSet, body, s.ColumnRawText(10))
	}
	if err != nil {
		return events.Event{}, fmt.Errorf("sqlite: event pos %d: %w", e.Pos, err)
	}
	return e, nil
}
