package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"

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
	fn   func(w *writer) error // modeFunc
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
	err      error // preparation failed; the event is not written

	// text and parts are the content and parts_text compressed (see
	// pack), nil when stored plain; stored.Body is packed in place.
	text, parts []byte
}

// prepare validates and completes an event for appending
// (prepare.Complete), then compresses its payload.
func (r *Repo) prepare(e events.Event, keepSeq bool) prepared {
	c, err := prepare.Complete(e, keepSeq, r.opts.Now())
	if err != nil {
		return prepared{ev: e, err: err}
	}
	p := prepared{ev: c.Event, callerID: c.CallerID, stored: c.Stored, fp: c.Fingerprint}
	// After the fingerprint, which hashes the event, not its stored bytes;
	// here, so callers' goroutines compress in parallel, not the writer.
	p.pack()
	return p
}

// pack compresses the payload columns above CompressThreshold.
func (p *prepared) pack() {
	if p.stored.TextSet && len(p.stored.Text) > CompressThreshold {
		if b, ok := pack([]byte(p.stored.Text)); ok {
			p.text = b
		}
	}
	if len(p.stored.PartsText) > CompressThreshold {
		if b, ok := pack([]byte(p.stored.PartsText)); ok {
			p.parts = b
		}
	}
	p.stored.Body, _ = pack(p.stored.Body)
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

// enqueue queues req for the writer; req.done is closed once it is
// settled. The writer takes requests in the order they were queued.
func (r *Repo) enqueue(req *request) error {
	req.done = make(chan struct{})
	r.closeMu.RLock()
	defer r.closeMu.RUnlock()
	if r.closed {
		return repo.ErrClosed
	}
	r.queue <- req
	return nil
}

// writer owns the write connection. One goroutine runs it: it takes every
// queued request, up to MaxBatch events, and writes them in one IMMEDIATE
// transaction (group commit), so a commit's fsync is shared by all.
type writer struct {
	repo *Repo
	c    *conn

	// heads caches conversations' head seqs across transactions. It is
	// valid while no other connection has committed (PRAGMA data_version
	// unchanged) and is dropped when a transaction fails.
	heads       map[string]int64
	dataVersion int64
	// pending holds head changes of the open transaction.
	pending map[string]int64
	touched map[string]struct{}

	// lastPos is the highest pos ever assigned, committed (valid with
	// the head cache); txnPos is the open transaction's. The writer
	// assigns pos itself and records the highest in log_state once per
	// commit (AUTOINCREMENT would write sqlite_sequence at every insert
	// and spend a pos on every row OR IGNORE drops).
	lastPos  int64
	posKnown bool
	txnPos   int64

	// txnEvents are the events the open transaction inserted, in order:
	// the read models take them in at commit, in the same transaction.
	txnEvents []events.Event
	// summaries caches conversations' read models; valid like heads.
	summaries map[string]*repo.Summary

	// txnTitles maps each title set in the open transaction to its
	// conversation, and txnTitleOf the other way: titles are unique, and
	// the read model the check reads is written only at commit.
	txnTitles  map[string]string
	txnTitleOf map[string]string

	// loading is set while the bulk path (AppendEach) writes.
	loading bool

	// broken is set when a write failed after an insert it belongs with:
	// the transaction cannot be committed in part, so commit rolls it all
	// back and fails every request in it.
	broken error
}

// invalidate drops everything cached about the database, after a failed
// transaction or another connection's commit.
func (w *writer) invalidate() {
	w.heads = make(map[string]int64)
	w.summaries = nil
	w.posKnown = false
}

func (w *writer) run() {
	defer close(w.repo.done)
	batch := make([]*request, 0, 64)
	for req := range w.repo.queue {
		batch = append(batch[:0], req)
		n := len(req.evs)
	drain:
		for n < w.repo.opts.MaxBatch {
			select {
			case more, ok := <-w.repo.queue:
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

// commit writes a batch of requests in one transaction. A request that
// fails leaves no trace and does not affect the others.
func (w *writer) commit(batch []*request) {
	w.pending = make(map[string]int64)
	w.touched = make(map[string]struct{})
	w.txnTitles = make(map[string]string)
	w.txnTitleOf = make(map[string]string)
	w.broken = nil
	w.txnEvents = w.txnEvents[:0]
	defer clear(w.c.packed) // texts of this transaction only
	err := w.begin()
	if err != nil {
		err = fmt.Errorf("sqlite: begin write transaction: %w", err)
		for _, req := range batch {
			req.fail(err)
		}
		w.invalidate()
		return
	}
	live := 0
	for _, req := range batch {
		if cerr := req.ctx.Err(); cerr != nil {
			req.fail(cerr)
			continue
		}
		live++
		w.apply(req)
	}
	err = w.broken
	if err == nil && len(w.txnEvents) > 0 {
		err = w.trackChunks(w.txnEvents)
	}
	if err == nil && len(w.txnEvents) > 0 {
		err = w.applyReadModels(w.txnEvents)
	}
	if err == nil {
		err = w.recordLastPos()
	}
	if err == nil {
		err = w.c.db.Exec(`COMMIT`)
	}
	if err != nil {
		// Nothing of this transaction is stored: report it to everyone,
		// including requests answered as duplicates, whose answer may
		// rest on an event of this very transaction.
		if !w.c.db.GetAutocommit() {
			w.c.db.Exec(`ROLLBACK`)
		}
		err = fmt.Errorf("sqlite: commit: %w", err)
		for _, req := range batch {
			req.fail(err)
		}
		w.invalidate()
		w.repo.opts.Logger.Error("group commit failed", "err", err, "requests", len(batch))
		return
	}
	for id, seq := range w.pending {
		w.heads[id] = seq
	}
	w.lastPos = w.txnPos
	if len(w.heads) > 1<<16 {
		w.heads = make(map[string]int64)
	}
	st := &w.repo.stats
	st.commits.Add(1)
	st.batched.Add(int64(live))
	if int64(live) > st.maxBatch.Load() {
		st.maxBatch.Store(int64(live))
	}
	for _, req := range batch {
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
	if len(w.touched) > 0 {
		w.repo.notify.wake(w.touched)
	}
}

// recordLastPos stores the transaction's highest pos in log_state.
func (w *writer) recordLastPos() error {
	if w.txnPos <= w.lastPos {
		return nil
	}
	s, err := w.c.stmt(qSetLastPos)
	if err != nil {
		return err
	}
	s.BindInt64(1, w.txnPos)
	s.BindInt64(2, w.txnPos)
	return s.Exec()
}

// begin opens the IMMEDIATE transaction and drops the head cache when
// another connection committed since the last transaction.
func (w *writer) begin() error {
	if err := w.c.db.Exec(`BEGIN IMMEDIATE`); err != nil {
		return err
	}
	s, err := w.c.stmt(qDataVersion)
	if err != nil {
		w.c.db.Exec(`ROLLBACK`)
		return err
	}
	if !s.Step() {
		err := cmpErr(s.Err(), "read data_version")
		s.Reset()
		w.c.db.Exec(`ROLLBACK`)
		return err
	}
	v := s.ColumnInt64(0)
	s.Reset()
	if v != w.dataVersion {
		w.invalidate()
		w.dataVersion = v
	}
	if !w.posKnown {
		p, err := w.c.stmt(qLastPos)
		if err == nil && !p.Step() {
			err = cmpErr(p.Err(), "read last pos")
		}
		if err != nil {
			p.Reset()
			w.c.db.Exec(`ROLLBACK`)
			return err
		}
		w.lastPos, w.posKnown = p.ColumnInt64(0), true
		p.Reset()
	}
	w.txnPos = w.lastPos
	return nil
}

func (req *request) fail(err error) {
	if req.mode == modeEach {
		for i := range req.items {
			if req.items[i].Err == nil {
				req.items[i] = repo.Item{Err: err}
			}
		}
		return
	}
	req.items = nil
	req.err = err
}

// apply writes one request inside the open transaction.
func (w *writer) apply(req *request) {
	switch req.mode {
	case modeEach:
		// The bulk path loads history (ingest, import): chunks are
		// recorded as they were written, not checked against the live
		// turn protocol.
		w.loading = true
		for i := range req.evs {
			if req.items[i].Err != nil { // failed preparation
				continue
			}
			res, err := w.appendOne(&req.evs[i], req.opts)
			req.items[i] = repo.Item{Result: res, Err: err}
		}
		w.loading = false
	case modeSingle:
		res, err := w.appendOne(&req.evs[0], req.opts)
		req.items, req.err = []repo.Item{{Result: res}}, err
	case modeAtomic:
		req.err = w.savepoint(func() error {
			results, err := w.appendAtomic(req)
			req.items = results
			return err
		})
	case modeFunc:
		req.err = w.savepoint(func() error { return req.fn(w) })
	}
}

// savepoint runs f so that its writes are undone, and the head cache
// restored, when it fails.
func (w *writer) savepoint(f func() error) error {
	if err := w.c.db.Exec(`SAVEPOINT batch`); err != nil {
		return fmt.Errorf("sqlite: savepoint: %w", err)
	}
	saved := make(map[string]int64, len(w.pending))
	for k, v := range w.pending {
		saved[k] = v
	}
	savedPos, savedEvents := w.txnPos, len(w.txnEvents)
	err := f()
	if err != nil {
		if rerr := w.c.db.Exec(`ROLLBACK TO batch; RELEASE batch`); rerr != nil {
			return fmt.Errorf("sqlite: roll back batch: %w (after %w)", rerr, err)
		}
		w.pending, w.txnPos, w.txnEvents = saved, savedPos, w.txnEvents[:savedEvents]
		return err
	}
	if err := w.c.db.Exec(`RELEASE batch`); err != nil {
		return fmt.Errorf("sqlite: release savepoint: %w", err)
	}
	return nil
}

func (w *writer) appendAtomic(req *request) ([]repo.Item, error) {
	items := make([]repo.Item, len(req.evs))
	if want, ok := req.opts.Expected.Seq(); ok {
		// EventStoreDB's rule: all stored = acknowledged, none = append
		// at the expected head, some = error.
		stored := 0
		for i := range req.evs {
			ev, found, err := w.lookupStored(&req.evs[i])
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
		head, err := w.head(conv)
		if err != nil {
			return nil, err
		}
		if head != want {
			return nil, &repo.SeqConflictError{ConversationID: conv, Expected: want, Actual: head}
		}
	}
	opts := req.opts
	opts.Expected = repo.Expectation{}
	for i := range req.evs {
		res, err := w.appendOne(&req.evs[i], opts)
		if err != nil {
			return nil, &repo.BatchError{Index: i, Err: err}
		}
		items[i].Result = res
	}
	return items, nil
}

// lookupStored finds the event already stored under p's request_id (or
// caller-supplied id). found with a nil error means a duplicate; a stored
// event with another payload is a *repo.ConflictError.
func (w *writer) lookupStored(p *prepared) (events.Event, bool, error) {
	if p.ev.RequestID != "" {
		ev, fp, found, err := lookup(w.c, qByRequestID, p.ev.ConversationID, p.ev.RequestID)
		if err != nil || found {
			return ev, found, checkDuplicate(p, ev, fp, found, err, p.ev.RequestID)
		}
	}
	if p.callerID {
		ev, fp, found, err := lookup(w.c, qByID, p.ev.ID)
		if err == nil && found && (ev.ConversationID != p.ev.ConversationID || ev.RequestID != p.ev.RequestID) {
			// The id names another request: acknowledging it as a
			// duplicate would leave the caller's key unstored.
			return events.Event{}, false, &repo.ConflictError{Key: "id:" + p.ev.ID, Stored: ev}
		}
		if err != nil || found {
			return ev, found, checkDuplicate(p, ev, fp, found, err, "id:"+p.ev.ID)
		}
	}
	return events.Event{}, false, nil
}

func checkDuplicate(p *prepared, stored events.Event, fp []byte, found bool, err error, key string) error {
	if err != nil || !found {
		return err
	}
	if !bytes.Equal(fp, p.fp[:]) {
		return &repo.ConflictError{Key: key, Stored: stored}
	}
	return nil
}

// appendOne writes one event unless it is already stored.
//
// It inserts first and looks up only when the insert is refused or the
// expectation fails: a new key (the common case, retries having been
// answered from a reader) costs one index probe for the head, usually
// cached, and the insert. The unique indexes decide what is stored.
func (w *writer) appendOne(p *prepared, opts repo.AppendOptions) (repo.Result, error) {
	if p.err != nil {
		return repo.Result{}, p.err
	}
	conv := p.ev.ConversationID
	ev := p.ev
	if ev.Type == events.TypeAssistantDelta && !w.loading {
		if err := w.checkChunk(p); err != nil {
			return w.storedOr(p, err)
		}
	}
	title, setsTitle := repo.TitleSetBy(&ev)
	if setsTitle && !w.loading {
		// Titles are unique among live writes; a loaded log keeps the
		// titles it had.
		if err := w.checkTitle(conv, title); err != nil {
			return w.storedOr(p, err)
		}
	}
	for attempt := 0; ; attempt++ {
		head, err := w.head(conv)
		if err != nil {
			return repo.Result{}, err
		}
		want, expecting := opts.Expected.Seq()
		switch {
		case expecting && want != head:
			return w.storedOr(p, &repo.SeqConflictError{ConversationID: conv, Expected: want, Actual: head})
		case ev.Type == events.TypeConversationForked:
			seq, err := w.forkSeq(&ev, opts.KeepSeq, head)
			if err != nil {
				return w.storedOr(p, err)
			}
			ev.Seq = seq
		case opts.KeepSeq && ev.Seq != head+1:
			return w.storedOr(p, &repo.SeqConflictError{ConversationID: conv, Expected: ev.Seq - 1, Actual: head})
		case !opts.KeepSeq:
			ev.Seq = head + 1
		}
		pos, inserted, err := w.insert(p, ev.Seq)
		if err != nil {
			return repo.Result{}, fmt.Errorf("sqlite: insert event: %w", err)
		}
		if inserted {
			ev.Pos = pos
			w.pending[conv] = ev.Seq
			w.touched[conv] = struct{}{}
			w.txnEvents = append(w.txnEvents, ev)
			if err := w.trackTurn(&ev); err != nil {
				w.broken = fmt.Errorf("sqlite: track turn after insert: %w", err)
				return repo.Result{}, w.broken
			}
			if ev.Type == events.TypeConversationForked {
				if err := w.recordBranch(&ev); err != nil {
					w.broken = fmt.Errorf("sqlite: record branch after insert: %w", err)
					return repo.Result{}, w.broken
				}
			}
			if setsTitle {
				w.noteTitle(conv, title)
			}
			return repo.Result{Event: ev, Outcome: repo.Appended}, nil
		}
		// A unique index refused the row: the key is taken (a retry or
		// a conflict), or the seq is, which means the cached head was
		// stale. Reload the head and try once more.
		stored, found, err := w.lookupStored(p)
		if err != nil || found {
			return repo.Result{Event: stored, Outcome: repo.Duplicate}, err
		}
		w.heads = make(map[string]int64)
		delete(w.pending, conv)
		if attempt > 0 || opts.KeepSeq {
			head, err := w.head(conv)
			if err != nil {
				return repo.Result{}, err
			}
			return repo.Result{}, &repo.SeqConflictError{ConversationID: conv, Expected: ev.Seq - 1, Actual: head}
		}
	}
}

// storedOr answers a request whose condition failed: with the stored event
// when it is a retry of one (idempotency wins over a stale expectation),
// else with err.
func (w *writer) storedOr(p *prepared, err error) (repo.Result, error) {
	stored, found, lerr := w.lookupStored(p)
	switch {
	case lerr != nil:
		return repo.Result{}, lerr
	case found:
		return repo.Result{Event: stored, Outcome: repo.Duplicate}, nil
	}
	return repo.Result{}, err
}

// head returns the conversation's head seq as this transaction sees it.
func (w *writer) head(conv string) (int64, error) {
	if seq, ok := w.pending[conv]; ok {
		return seq, nil
	}
	if seq, ok := w.heads[conv]; ok {
		return seq, nil
	}
	s, err := w.c.stmt(qHead)
	if err != nil {
		return 0, err
	}
	defer s.Reset()
	s.BindText(1, conv)
	var seq int64
	if s.Step() {
		seq = s.ColumnInt64(0)
	} else if err := s.Err(); err != nil {
		return 0, fmt.Errorf("sqlite: read head: %w", err)
	}
	w.pending[conv] = seq
	return seq, nil
}

func (w *writer) insert(p *prepared, seq int64) (pos int64, inserted bool, err error) {
	s, err := w.c.stmt(qInsert)
	if err != nil {
		return 0, false, err
	}
	defer s.Reset()
	pos = w.txnPos + 1
	s.BindInt64(1, pos)
	s.BindText(2, p.ev.ID)
	s.BindText(3, p.ev.ConversationID)
	s.BindInt64(4, seq)
	s.BindText(5, string(p.ev.Type))
	s.BindInt64(6, int64(p.ev.SchemaVersion))
	s.BindInt64(7, p.ev.CreatedAt.UnixNano())
	s.BindText(8, string(p.ev.Role))
	switch {
	case p.text != nil:
		s.BindBlob(9, p.text)
	case p.stored.TextSet:
		s.BindText(9, p.stored.Text)
	default:
		s.BindNull(9)
	}
	if p.stored.Body != nil {
		s.BindBlob(10, p.stored.Body)
	} else {
		s.BindNull(10)
	}
	s.BindRawText(11, p.stored.Extra)
	s.BindBlob(12, p.fp[:])
	switch {
	case p.parts != nil:
		s.BindBlob(13, p.parts)
	case p.stored.PartsText != "":
		s.BindText(13, p.stored.PartsText)
	default:
		s.BindNull(13)
	}
	if err := s.Exec(); err != nil {
		return 0, false, err
	}
	if w.c.db.Changes() == 0 {
		return 0, false, nil
	}
	if p.text != nil {
		w.c.packed[string(p.text)] = p.stored.Text
	}
	if p.parts != nil {
		w.c.packed[string(p.parts)] = p.stored.PartsText
	}
	w.txnPos = pos
	return pos, true, nil
}
