package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/internal/prepare"
	"github.com/chatlog/chatlog/repo"
)

// mode says how the writer treats a request's events.
type mode uint8

const (
	modeSingle mode = iota // one event
	modeAtomic             // AppendBatch: all or nothing
	modeEach               // AppendEach: each event on its own
	modeFunc               // a function run in the transaction (turns)
)

// request is one caller's append, queued for the writer goroutine.
type request struct {
	ctx  context.Context
	mode mode
	opts repo.AppendOptions
	evs  []prepared
	// plan and fn are a modeFunc request's reads and work: fn stages
	// and queues what it writes, or returns an error (an answer for the
	// caller when wrapped by answer, else a failure of the transaction).
	plan *plan
	fn   func(t *txn) error
	// pos holds, once the request committed, the positions the insert
	// drew for the events staged in its transaction, by id.
	pos map[string]int64
	// items receives one result per event (modeEach) or is filled with
	// the batch's results; err is the request's error (not modeEach).
	items []repo.Item
	err   error
	done  chan struct{}
}

// prepared is an event validated, completed and encoded by its caller's
// goroutine, so the writer only runs SQL.
type prepared struct {
	ev       events.Event
	callerID bool // the caller supplied ev.ID: deduplicate on it too
	stored   events.Stored
	fp       dedupe.Fingerprint
	// search is the tsvector of a message's words ("" for none).
	search string
	err    error // preparation failed; the event is not written
}

// prepare validates and completes an event for appending
// (prepare.Complete), then computes what only PostgreSQL stores.
func (r *Repo) prepare(e events.Event, keepSeq bool) prepared {
	c, err := prepare.Complete(e, keepSeq, r.opts.Now())
	if err != nil {
		return prepared{ev: e, err: err}
	}
	p := prepared{ev: c.Event, callerID: c.CallerID, stored: c.Stored, fp: c.Fingerprint}
	if err := storable(&p.stored); err != nil {
		p.err = err
		return p
	}
	p.search = eventVector(p.ev.Type, &p.stored)
	return p
}

// eventVector is the search tsvector of an event as encoded for storage:
// the words of a message's text ("" for other events).
func eventVector(t events.Type, s *events.Stored) string {
	if !searchable(t) {
		return ""
	}
	if s.TextSet {
		return searchVector(s.Text)
	}
	return searchVector(s.PartsText)
}

// storable adapts an encoded event to what PostgreSQL text can hold: no
// NUL byte. Plain text holding one moves into body (JSON escapes it), where
// DecodeStored reads content as well; the text search reads a copy with
// the NULs blanked out.
func storable(s *events.Stored) error {
	if strings.IndexByte(s.PartsText, 0) >= 0 {
		s.PartsText = strings.ReplaceAll(s.PartsText, "\x00", " ")
	}
	if !s.TextSet || strings.IndexByte(s.Text, 0) < 0 {
		return nil
	}
	text, err := json.Marshal(s.Text)
	if err != nil {
		return fmt.Errorf("encode content: %w", err)
	}
	body := append([]byte(`{"content":`), text...)
	if len(s.Body) > 1 { // {"...":...}: content goes first, as the body's own encoder puts it
		body = append(append(body, ','), s.Body[1:]...)
	} else {
		body = append(body, '}')
	}
	s.PartsText = strings.ReplaceAll(s.Text, "\x00", " ")
	s.Body, s.Text, s.TextSet = body, "", false
	return nil
}

// submit queues req for the writer and waits for its outcome. Once queued,
// it waits even if ctx ends: the writer either skips the request because
// ctx ended (nothing written) or commits it, and the caller must learn
// which, so an append is never reported failed when it was written.
func (r *Repo) submit(req *request) error {
	if err := r.enqueue(req); err != nil {
		return err
	}
	<-req.done
	return nil
}

// enqueue queues req for the writer of its conversation; req.done is
// closed once it is settled. A writer takes requests in the order they
// were queued.
func (r *Repo) enqueue(req *request) error {
	return r.enqueueTo(r.writerOf(req), req)
}

func (r *Repo) enqueueTo(w *writer, req *request) error {
	req.done = make(chan struct{})
	r.closeMu.RLock()
	defer r.closeMu.RUnlock()
	if r.closed {
		return repo.ErrClosed
	}
	w.queue <- req
	return nil
}

// writerOf returns the writer that takes req: the one of its first
// conversation.
func (r *Repo) writerOf(req *request) *writer {
	var conv string
	switch {
	case req.plan != nil && len(req.plan.convs) > 0:
		conv = req.plan.convs[0]
	case len(req.evs) > 0:
		conv = req.evs[0].ev.ConversationID
	}
	return r.writerFor(conv)
}

func (r *Repo) writerFor(conv string) *writer {
	if len(r.writers) == 1 {
		return r.writers[0]
	}
	h := fnv.New32a()
	h.Write([]byte(conv))
	return r.writers[h.Sum32()%uint32(len(r.writers))]
}

func (req *request) fail(err error) {
	if req.mode == modeEach {
		for i := range req.items {
			if req.evs[i].err == nil {
				req.items[i] = repo.Item{Err: err}
			}
		}
		return
	}
	req.items = nil
	req.err = err
}

// reset clears what a rolled-back attempt at the request left.
func (req *request) reset() {
	req.err = nil
	if req.mode != modeEach {
		req.items = nil
		return
	}
	for i := range req.items {
		req.items[i] = repo.Item{Err: req.evs[i].err}
	}
}

// writer is the goroutine that group-commits the appends of this
// process: it takes every queued request, up to MaxBatch events, and
// writes them in one transaction, so the commit's round trips and fsync
// are shared by all. Other processes have writers of their own; the
// conversations' locks order them.
type writer struct {
	repo  *Repo
	queue chan *request
	done  chan struct{} // closed when the writer goroutine has exited
	conn  *pgxpool.Conn
	cache summaryCache
}

// maxAttempts bounds how often a group commit is run again after the
// server rolled it back for a reason another run may not meet.
const maxAttempts = 8

func (w *writer) run() {
	defer close(w.done)
	defer func() {
		if w.conn != nil {
			w.conn.Release()
		}
	}()
	batch := make([]*request, 0, 64)
	for req := range w.queue {
		batch = append(batch[:0], req)
		n := len(req.evs)
	drain:
		for n < w.repo.opts.MaxBatch {
			select {
			case more, ok := <-w.queue:
				if !ok {
					break drain
				}
				batch = append(batch, more)
				n += len(more.evs)
			default:
				break drain
			}
		}
		w.commit(batch)
		for _, req := range batch {
			close(req.done)
		}
		clear(batch)
	}
}

// commit writes a batch of requests in one transaction, again if the
// server rolled it back for a passing reason. A request that fails leaves
// no trace and does not affect the others.
func (w *writer) commit(batch []*request) {
	r := w.repo
	live := make([]*request, 0, len(batch))
	var err error
	for attempt := 1; ; attempt++ {
		live = live[:0]
		for _, req := range batch {
			if cerr := req.ctx.Err(); cerr != nil {
				if attempt == 1 {
					req.fail(cerr)
				}
				continue
			}
			req.reset()
			live = append(live, req)
		}
		if len(live) == 0 {
			return
		}
		err = w.try(live)
		if err == nil {
			r.stats.commits.Add(1)
			r.stats.batched.Add(int64(len(live)))
			if n := int64(len(live)); n > r.stats.maxBatch.Load() {
				r.stats.maxBatch.Store(n)
			}
			w.count(live)
			return
		}
		if !retryable(err) || attempt == maxAttempts {
			break
		}
		r.stats.retries.Add(1)
		time.Sleep(time.Duration(attempt) * time.Millisecond)
	}
	// Nothing of this transaction is stored: report it to everyone,
	// including requests answered as duplicates, whose answer may rest
	// on an event of this very transaction.
	err = fmt.Errorf("postgres: group commit: %w", err)
	for _, req := range live {
		req.fail(err)
	}
	r.opts.Logger.Error("group commit failed", "err", err, "requests", len(live))
}

func (w *writer) count(live []*request) {
	st := &w.repo.stats
	for _, req := range live {
		for _, it := range req.items {
			switch {
			case it.Err != nil:
				if errors.Is(it.Err, repo.ErrIdempotencyConflict) {
					st.conflicts.Add(1)
				}
			case it.Outcome == repo.Appended:
				st.appended.Add(1)
			case it.Outcome == repo.Duplicate:
				st.duplicates.Add(1)
			}
		}
		if errors.Is(req.err, repo.ErrIdempotencyConflict) && req.mode != modeEach {
			st.conflicts.Add(1)
		}
	}
}

// try runs the batch's transaction once.
func (w *writer) try(live []*request) error {
	r := w.repo
	// The writer's work outlives its callers' contexts: once a request
	// is in a transaction, its outcome is reported whatever happens to
	// its caller.
	ctx := context.Background()
	if w.conn == nil || w.conn.Conn().IsClosed() {
		if w.conn != nil {
			w.conn.Release()
			w.conn = nil
		}
		c, err := r.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		w.conn = c
	}
	var plan plan
	for _, req := range live {
		if req.plan != nil {
			plan.merge(req.plan)
		}
		for i := range req.evs {
			if req.evs[i].err == nil {
				plan.add(&req.evs[i])
			}
		}
	}
	t := r.newTxn(w.conn.Conn(), &w.cache)
	if len(plan.convs) == 0 && !slices.ContainsFunc(live, func(req *request) bool { return req.mode == modeFunc }) {
		// Every event failed its preparation: nothing to write.
		for _, req := range live {
			t.apply(ctx, req)
		}
		return nil
	}
	if err := t.begin(ctx, &plan); err != nil {
		return err
	}
	for _, req := range live {
		if err := t.apply(ctx, req); err != nil {
			t.rollback()
			return err
		}
		if t.broken != nil {
			t.rollback()
			return t.broken
		}
	}
	pos, err := t.commit(ctx)
	if err != nil {
		return err
	}
	for _, req := range live {
		req.pos = pos
		patchPos(req.items, pos)
		patchErrPos(req.err, pos)
	}
	return nil
}

// patchPos fills in the positions the insert drew for events staged in
// the transaction (results and the stored events conflicts carry).
func patchPos(items []repo.Item, pos map[string]int64) {
	for i := range items {
		it := &items[i]
		if it.Event.Pos == 0 && it.Event.ID != "" {
			it.Event.Pos = pos[it.Event.ID]
		}
		patchErrPos(it.Err, pos)
	}
}

func patchErrPos(err error, pos map[string]int64) {
	var ce *repo.ConflictError
	if err != nil && errors.As(err, &ce) && ce.Stored.Pos == 0 {
		ce.Stored.Pos = pos[ce.Stored.ID]
	}
}

// apply stages one request inside the open transaction. An error fails
// the whole transaction (a read inside it failed).
func (t *txn) apply(ctx context.Context, req *request) error {
	switch req.mode {
	case modeEach:
		// The bulk path loads history (ingest, import): chunks are
		// recorded as they were written, not checked against the live
		// turn protocol.
		t.loading = true
		for i := range req.evs {
			if req.evs[i].err != nil {
				continue
			}
			res, err := t.appendOne(&req.evs[i], req.opts)
			req.items[i] = repo.Item{Result: res, Err: err}
		}
		t.loading = false
	case modeSingle:
		res, err := t.appendOne(&req.evs[0], req.opts)
		if err != nil {
			req.err = err
			return nil
		}
		req.items = []repo.Item{{Result: res}}
	case modeAtomic:
		mark := t.mark()
		results, err := t.appendAtomic(req)
		if err != nil {
			t.undo(mark)
			req.err = err
		} else {
			req.items = results
		}
		t.journaling = false
	case modeFunc:
		mark := t.mark()
		err := req.fn(t)
		t.journaling = false
		if err != nil {
			var fe *fnError
			if !errors.As(err, &fe) {
				return err
			}
			t.undo(mark)
			req.err = fe.err
		}
	}
	return nil
}

func (t *txn) appendAtomic(req *request) ([]repo.Item, error) {
	items := make([]repo.Item, len(req.evs))
	if want, ok := req.opts.Expected.Seq(); ok {
		// EventStoreDB's rule: all stored = acknowledged, none = append
		// at the expected head, some = error.
		stored := 0
		for i := range req.evs {
			ev, found, err := t.lookupStored(&req.evs[i])
			if err != nil {
				return nil, &repo.BatchError{Index: i, Err: err}
			}
			if found {
				stored++
				items[i].Result = repo.Result{Event: ev, Outcome: repo.Duplicate}
			}
		}
		switch {
		case stored == len(req.evs):
			return items, nil
		case stored > 0:
			return nil, fmt.Errorf("%w: %d of %d events already stored", repo.ErrPartiallyStored, stored, len(req.evs))
		}
		conv := req.evs[0].ev.ConversationID
		if head := t.heads[conv]; head != want {
			return nil, &repo.SeqConflictError{ConversationID: conv, Expected: want, Actual: head}
		}
	}
	opts := req.opts
	opts.Expected = repo.Expectation{}
	for i := range req.evs {
		res, err := t.appendOne(&req.evs[i], opts)
		if err != nil {
			return nil, &repo.BatchError{Index: i, Err: err}
		}
		items[i].Result = res
	}
	return items, nil
}
