package postgres

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
)

// A write transaction goes in two round trips:
//
//  1. begin: BEGIN, the locks (the shared write lock, then the
//     conversations' locks in key order), and every read the decisions
//     need: the conversations' heads and read models, the events already
//     stored under the keys of the events to append, the turns of the
//     streams involved.
//  2. commit: the insert of the new events, the read models, the turns,
//     COMMIT.
//
// In between, everything is decided in Go against what begin read: under
// its conversations' locks no other writer can change any of it, so seq
// is head+1 without a table-wide lock, and a key found free stays free.
// Event ids are the exception (unique across conversations, so another
// conversation's writer may take one at the same moment): the unique index
// then refuses the insert and the transaction runs again.

// convKey names a row by conversation and key (request_id, or user
// request id for turns).
type convKey struct{ conv, key string }

// storedEvent is an event found in the log, or staged in the transaction,
// with its fingerprint.
type storedEvent struct {
	ev events.Event
	fp []byte
	// enc and search are a staged event's encoding and search vector
	// (unset for one read from the log).
	enc    *events.Stored
	search string
}

// turn is a row of the turns table.
type turn struct {
	attempt      int
	owner        string
	leaseNS      int64
	leaseExpires int64 // Unix ns
	state        string
	lastChunkAt  *int64
	lastError    string
}

const (
	turnRunning   = "running"
	turnFailed    = "failed"
	turnCompleted = "completed"
)

// plan is what a transaction locks and reads before it decides.
type plan struct {
	convs    []string
	seen     map[string]bool
	keys     []convKey // (conversation, request_id) lookups
	ids      []string  // event id lookups
	pairs    []convKey // turns
	pairSeen map[convKey]bool
	// streams are the chunks to read of user requests' attempts, for
	// finishing them.
	streams []streamKey
	// titles are the bases of the title lineages the transaction may
	// take a title from (repo.TitleLineage): their locks serialise
	// every writer that checks a title of the lineage.
	titles []string
}

// streamKey names the chunks of one attempt at a user request.
type streamKey struct {
	conv, urid string
	attempt    int
}

// merge adds what o plans.
func (p *plan) merge(o *plan) {
	for _, c := range o.convs {
		p.conv(c)
	}
	p.keys = append(p.keys, o.keys...)
	p.ids = append(p.ids, o.ids...)
	for _, k := range o.pairs {
		p.turn(k.conv, k.key)
	}
	p.streams = append(p.streams, o.streams...)
	p.titles = append(p.titles, o.titles...)
}

// title plans a title check: the lock and titles of its lineage.
func (p *plan) title(title string) {
	if title == "" {
		return
	}
	base, _ := repo.TitleLineage(title)
	if !slices.Contains(p.titles, base) {
		p.titles = append(p.titles, base)
	}
}

func (p *plan) conv(c string) {
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	if !p.seen[c] {
		p.seen[c] = true
		p.convs = append(p.convs, c)
	}
}

func (p *plan) turn(conv, urid string) {
	if p.pairSeen == nil {
		p.pairSeen = map[convKey]bool{}
	}
	k := convKey{conv, urid}
	if !p.pairSeen[k] {
		p.pairSeen[k] = true
		p.pairs = append(p.pairs, k)
	}
}

// add plans what appending p needs: its conversation, its keys, and the
// turn a chunk or a final message belongs to.
func (p *plan) add(e *prepared) {
	conv := e.ev.ConversationID
	p.conv(conv)
	if e.ev.RequestID != "" {
		p.keys = append(p.keys, convKey{conv, e.ev.RequestID})
	}
	if e.callerID {
		p.ids = append(p.ids, e.ev.ID)
	}
	if title, ok := repo.TitleSetBy(&e.ev); ok {
		p.title(title)
	}
	switch {
	case e.ev.Type == events.TypeConversationForked:
		// The parent is locked too: its head bounds the fork, and its
		// erasure must not slip between the check and the commit.
		if parent, _ := e.ev.ExtraString("parent_id"); parent != "" {
			p.conv(parent)
		}
	case e.ev.Type == events.TypeAssistantDelta:
		urid, _ := e.ev.ExtraString("user_request_id")
		p.turn(conv, urid)
	case e.ev.Type == events.TypeAssistantMessage && strings.HasPrefix(e.ev.RequestID, "assistant:"):
		p.turn(conv, strings.TrimPrefix(e.ev.RequestID, "assistant:"))
	}
}

// txn is one write transaction on one connection.
type txn struct {
	r    *Repo
	conn *pgx.Conn

	heads   map[string]int64
	sums    map[string]*repo.Summary // nil: no read model yet
	byKey   map[convKey]*storedEvent
	byID    map[string]*storedEvent
	fetched map[convKey]bool // keys looked up; conv "" for ids
	turns   map[convKey]*turn
	// chunkRows are the stored chunks of the streams begin read.
	chunkRows map[streamKey][]events.Event

	// cache holds the writer's read models across transactions; dirty
	// are those this transaction writes.
	cache *summaryCache
	dirty map[string]*repo.Summary

	staged  []*storedEvent
	queued  []queuedStmt
	journal []func()
	// journaling is set while a request that may be undone (a batch, a
	// turn) stages: single appends and the bulk path never are.
	journaling bool
	touched    map[string]struct{}
	// titles are the titles of the planned lineages, as committed
	// (title -> holder); txnTitles and txnTitleOf are those set in this
	// transaction, both ways: titles are unique, and the read model the
	// check reads is written at commit.
	titles     map[string][]string
	txnTitles  map[string]string
	txnTitleOf map[string]string
	// branches are the forks staged in this transaction (conversation ->
	// its lineage's link); erased the conversations it erases.
	branches map[string]branch
	erased   map[string]bool
	// locked are the conversations begin locked.
	locked map[string]bool
	// broken is a failed read inside the transaction: it cannot commit.
	broken error

	// loading is set while the bulk path (AppendEach) stages.
	loading bool
	began   bool
	ctx     context.Context
	// xid is the transaction's id (xid8, as text).
	xid string
}

// queuedStmt is a statement a caller adds to the commit round trip.
type queuedStmt struct {
	// conv is the conversation the statement changes: erasing it drops
	// the statement.
	conv string
	sql  string
	args []any
}

func (r *Repo) newTxn(conn *pgx.Conn, cache *summaryCache) *txn {
	return &txn{
		r: r, conn: conn, cache: cache,
		heads: map[string]int64{}, sums: map[string]*repo.Summary{},
		byKey: map[convKey]*storedEvent{}, byID: map[string]*storedEvent{},
		fetched: map[convKey]bool{}, turns: map[convKey]*turn{},
		touched: map[string]struct{}{},
		titles:  map[string][]string{}, txnTitles: map[string]string{}, txnTitleOf: map[string]string{},
		branches: map[string]branch{}, erased: map[string]bool{}, locked: map[string]bool{},
	}
}

// begin opens the transaction, takes the locks and reads what p names.
func (t *txn) begin(ctx context.Context, p *plan) error {
	t.ctx = ctx
	for _, c := range p.convs {
		t.locked[c] = true
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	// The transaction's id, taken first: if the connection breaks while
	// COMMIT is on its way, the server can still say whether it
	// committed. Then the locks.
	b.Queue(qBegin, t.r.writeLockKey(), t.r.lockKeys(p.convs, p.titles))
	cached := make([]string, len(p.convs))
	for i, c := range p.convs {
		if e, ok := t.cache.get(c); ok {
			cached[i] = e.xmin
		}
	}
	b.Queue(qHeads, p.convs, cached)
	lookups := t.queueLookup(b, p.keys, p.ids)
	if len(p.pairs) > 0 {
		b.Queue(qTurnsGet, column(p.pairs, 0), column(p.pairs, 1))
	}
	if len(p.titles) > 0 {
		b.Queue(qTitleLineages, p.titles)
	}
	var streams []streamKey
	for _, k := range p.streams {
		if _, ok := t.chunkRows[k]; !ok && !slices.Contains(streams, k) {
			streams = append(streams, k)
			prefix, upper := chunkKeyRange(k)
			b.Queue(qChunksByKey, k.conv, prefix, upper)
		}
	}
	t.began = true
	br := t.conn.SendBatch(ctx, b)
	err := func() error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		if err := br.QueryRow().Scan(&t.xid, nil, nil); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				conv    string
				head    int64
				xmin    *string
				summary []byte
			)
			if err := rows.Scan(&conv, &head, &xmin, &summary); err != nil {
				rows.Close()
				return err
			}
			t.heads[conv] = head
			switch {
			case xmin == nil: // no read model yet
				t.cache.drop(conv)
			case summary == nil: // unchanged since this writer cached it
				e, _ := t.cache.get(conv)
				s := e.sum
				t.sums[conv] = &s
			default:
				s := &repo.Summary{}
				if err := json.Unmarshal(summary, s); err != nil {
					rows.Close()
					return fmt.Errorf("decode summary of %q: %w", conv, err)
				}
				t.sums[conv] = s
				t.cache.put(conv, *xmin, *s)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if lookups {
			if err := t.readLookup(br); err != nil {
				return err
			}
		}
		if len(p.pairs) > 0 {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			for _, k := range p.pairs {
				t.turns[k] = nil
			}
			for rows.Next() {
				var k convKey
				tr := &turn{}
				if err := rows.Scan(&k.conv, &k.key, &tr.attempt, &tr.owner, &tr.leaseNS, &tr.leaseExpires, &tr.state, &tr.lastChunkAt, &tr.lastError); err != nil {
					rows.Close()
					return err
				}
				t.turns[k] = tr
			}
			if err := rows.Err(); err != nil {
				return err
			}
		}
		if len(p.titles) > 0 {
			t.titles = map[string][]string{}
			rows, err := br.Query()
			if err != nil {
				return err
			}
			for rows.Next() {
				var holder, title string
				if err := rows.Scan(&holder, &title); err != nil {
					rows.Close()
					return err
				}
				t.titles[title] = append(t.titles[title], holder)
			}
			if err := rows.Err(); err != nil {
				return err
			}
		}
		for _, k := range streams {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			chunks, err := collectEvents(rows)
			if err != nil {
				return err
			}
			if t.chunkRows == nil {
				t.chunkRows = map[streamKey][]events.Event{}
			}
			t.chunkRows[k] = slices.DeleteFunc(chunks, k.other)
		}
		return nil
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return t.fail(err)
	}
	return nil
}

// fail ends the transaction after err, before COMMIT was sent: nothing of
// it is stored. A broken connection makes that a reason to run it again.
func (t *txn) fail(err error) error {
	if t.conn.IsClosed() {
		return &connLostError{err}
	}
	t.rollback()
	return err
}

// connLostError is a transaction that its connection's end stopped before
// it committed: nothing of it is stored, and it may run again on another
// connection.
type connLostError struct{ err error }

func (e *connLostError) Error() string { return e.err.Error() }
func (e *connLostError) Unwrap() error { return e.err }

// chunkKeyRange returns the range of request_ids that holds the chunk
// keys (repo.ChunkRequestID) of k: [prefix, prefix with its last ':'
// raised to ';'), bytewise (the keys are COLLATE "C").
func chunkKeyRange(k streamKey) (string, string) {
	prefix := "delta:" + k.urid + ":"
	if k.attempt > 0 {
		prefix += strconv.Itoa(k.attempt) + ":" // only this attempt's keys
	}
	return prefix, prefix[:len(prefix)-1] + ";"
}

// other reports whether a chunk belongs to another stream than k (a key
// range can hold another request's keys: "u" and "u:1").
func (k streamKey) other(e events.Event) bool {
	u, _ := e.ExtraString("user_request_id")
	a, _ := e.ExtraInt("attempt")
	return u != k.urid || int(a) != k.attempt
}

// chunks returns the chunks of a user request's attempt in seq order:
// those stored (read by begin, or now) and those staged in this
// transaction.
func (t *txn) chunks(ctx context.Context, k streamKey) ([]events.Event, error) {
	stored, ok := t.chunkRows[k]
	if !ok {
		prefix, upper := chunkKeyRange(k)
		evs, err := t.query(ctx, qChunksByKey, k.conv, prefix, upper)
		if err != nil {
			return nil, err
		}
		stored = slices.DeleteFunc(evs, k.other)
		if t.chunkRows == nil {
			t.chunkRows = map[streamKey][]events.Event{}
		}
		t.chunkRows[k] = stored
	}
	out := slices.Clone(stored)
	for _, s := range t.staged {
		if s.ev.Type == events.TypeAssistantDelta && s.ev.ConversationID == k.conv && !k.other(s.ev) {
			out = append(out, s.ev)
		}
	}
	if len(out) == 0 {
		// Chunks stored under other keys (hand-made logs): a scan of
		// the conversation, only when the key range finds none.
		evs, err := t.query(ctx, qChunksScan, k.conv)
		if err != nil {
			return nil, err
		}
		out = slices.DeleteFunc(evs, k.other)
	}
	slices.SortFunc(out, func(a, b events.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// queueLookup queues the look-up of the keys and ids not looked up yet,
// and reports whether it queued one.
func (t *txn) queueLookup(b *pgx.Batch, keys []convKey, ids []string) bool {
	var convs, rids, idList []string
	for _, k := range keys {
		if !t.fetched[k] {
			t.fetched[k] = true
			convs, rids = append(convs, k.conv), append(rids, k.key)
		}
	}
	for _, id := range ids {
		if k := (convKey{"", id}); !t.fetched[k] {
			t.fetched[k] = true
			idList = append(idList, id)
		}
	}
	if len(convs) == 0 && len(idList) == 0 {
		return false
	}
	b.Queue(qByKeys, convs, rids, idList)
	return true
}

func (t *txn) readLookup(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var fp []byte
		e, err := scanEvent(rows, &fp, nil)
		if err != nil {
			return err
		}
		se := &storedEvent{ev: e, fp: fp}
		if e.RequestID != "" {
			t.byKey[convKey{e.ConversationID, e.RequestID}] = se
		}
		t.byID[e.ID] = se
	}
	return rows.Err()
}

// lookup reads, inside the transaction, the events stored under the keys
// of ps that begin did not look up (events a Finish builds).
func (t *txn) lookup(ctx context.Context, ps []*prepared) error {
	var keys []convKey
	var ids []string
	for _, p := range ps {
		if p.err != nil {
			continue
		}
		if p.ev.RequestID != "" {
			keys = append(keys, convKey{p.ev.ConversationID, p.ev.RequestID})
		}
		if p.callerID {
			ids = append(ids, p.ev.ID)
		}
	}
	b := &pgx.Batch{}
	if !t.queueLookup(b, keys, ids) {
		return nil
	}
	br := t.conn.SendBatch(ctx, b)
	err := t.readLookup(br)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil && t.conn.IsClosed() {
		return &connLostError{err}
	}
	return err
}

// query runs a read inside the transaction.
func (t *txn) query(ctx context.Context, sql string, args ...any) ([]events.Event, error) {
	rows, err := t.conn.Query(ctx, sql, args...)
	if err == nil {
		var evs []events.Event
		if evs, err = collectEvents(rows); err == nil {
			return evs, nil
		}
	}
	if t.conn.IsClosed() {
		return nil, &connLostError{err}
	}
	return nil, err
}

// queue adds a statement that changes conv to the commit round trip,
// after the event writes.
func (t *txn) queue(conv, sql string, args ...any) {
	n := len(t.queued)
	t.queued = append(t.queued, queuedStmt{conv: conv, sql: sql, args: args})
	t.record(func() { t.queued = t.queued[:n] })
}

func (t *txn) rollback() {
	if t.began && !t.conn.IsClosed() && t.conn.PgConn().TxStatus() != 'I' {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		t.conn.Exec(ctx, "ROLLBACK")
	}
}

// mark starts journaling and returns the journal position to undo
// staging back to.
func (t *txn) mark() int {
	t.journaling = true
	return len(t.journal)
}

// record journals how to undo a change, while journaling.
func (t *txn) record(undo func()) {
	if t.journaling {
		t.journal = append(t.journal, undo)
	}
}

// undo reverts staging done since mark, newest first.
func (t *txn) undo(mark int) {
	for i := len(t.journal) - 1; i >= mark; i-- {
		t.journal[i]()
	}
	t.journal = t.journal[:mark]
}

// setTurn records a change to a turn's row made in this transaction, so
// that later requests of the same batch see it (the statement that makes
// it runs at commit).
func (t *txn) setTurn(k convKey, tr turn) {
	old, had := t.turns[k]
	t.turns[k] = &tr
	t.record(func() {
		if had {
			t.turns[k] = old
		} else {
			delete(t.turns, k)
		}
	})
}

// Staging: the writer's decisions, made in Go against what begin read.

// checkChunk refuses a chunk from an attempt that does not hold its turn.
func (t *txn) checkChunk(p *prepared) error {
	urid, _ := p.ev.ExtraString("user_request_id")
	attempt, _ := p.ev.ExtraInt("attempt")
	tr := t.turns[convKey{p.ev.ConversationID, urid}]
	holder := 0
	if tr != nil {
		holder = tr.attempt
	}
	// A finished stream takes no more chunks, begun as a turn or not:
	// they would come after the reply and never be folded.
	if int(attempt) != holder || (tr != nil && tr.state != turnRunning) {
		return &repo.StaleAttemptError{ConversationID: p.ev.ConversationID, UserRequestID: urid, Attempt: int(attempt), Holder: holder, Closed: closed(tr)}
	}
	return nil
}

// closed names the state of a turn that takes no more writes ("" while
// it runs or when there is no turn).
func closed(t *turn) string {
	if t == nil || t.state == turnRunning {
		return ""
	}
	return t.state
}

// lookupStored finds the event already stored under p's request_id (or
// caller-supplied id). found with a nil error means a duplicate; a stored
// event with another payload is a *repo.ConflictError.
func (t *txn) lookupStored(p *prepared) (events.Event, bool, error) {
	if p.ev.RequestID != "" {
		if s := t.byKey[convKey{p.ev.ConversationID, p.ev.RequestID}]; s != nil {
			return s.ev, true, checkDuplicate(p, s, p.ev.RequestID)
		}
	}
	if p.callerID {
		if s := t.byID[p.ev.ID]; s != nil {
			if s.ev.ConversationID != p.ev.ConversationID || s.ev.RequestID != p.ev.RequestID {
				// The id names another request: acknowledging it as a
				// duplicate would leave the caller's key unstored.
				return events.Event{}, false, &repo.ConflictError{Key: "id:" + p.ev.ID, Stored: s.ev}
			}
			return s.ev, true, checkDuplicate(p, s, "id:"+p.ev.ID)
		}
	}
	return events.Event{}, false, nil
}

func checkDuplicate(p *prepared, s *storedEvent, key string) error {
	if !bytes.Equal(s.fp, p.fp[:]) {
		return &repo.ConflictError{Key: key, Stored: s.ev}
	}
	return nil
}

// storedOr answers a request whose condition failed: with the stored event
// when it is a retry of one (idempotency wins over a stale expectation),
// else with err.
func (t *txn) storedOr(p *prepared, err error) (repo.Result, error) {
	stored, found, lerr := t.lookupStored(p)
	switch {
	case lerr != nil:
		return repo.Result{}, lerr
	case found:
		return repo.Result{Event: stored, Outcome: repo.Duplicate}, nil
	}
	return repo.Result{}, err
}

// appendOne stages one event unless it is already stored.
func (t *txn) appendOne(p *prepared, opts repo.AppendOptions) (repo.Result, error) {
	if p.err != nil {
		return repo.Result{}, p.err
	}
	conv := p.ev.ConversationID
	if p.ev.Type == events.TypeAssistantDelta && !t.loading {
		if err := t.checkChunk(p); err != nil {
			return t.storedOr(p, err)
		}
	}
	title, setsTitle := repo.TitleSetBy(&p.ev)
	if setsTitle && !t.loading {
		// Titles are unique among live writes; a loaded log keeps the
		// titles it had.
		if err := t.checkTitle(conv, title); err != nil {
			return t.storedOr(p, err)
		}
	}
	ev := p.ev
	head := t.heads[conv]
	want, expecting := opts.Expected.Seq()
	switch {
	case expecting && want != head:
		return t.storedOr(p, &repo.SeqConflictError{ConversationID: conv, Expected: want, Actual: head})
	case ev.Type == events.TypeConversationForked:
		seq, err := t.forkSeq(&ev, opts.KeepSeq, head)
		if err != nil {
			return t.storedOr(p, err)
		}
		ev.Seq = seq
	case opts.KeepSeq && ev.Seq != head+1:
		return t.storedOr(p, &repo.SeqConflictError{ConversationID: conv, Expected: ev.Seq - 1, Actual: head})
	case !opts.KeepSeq:
		ev.Seq = head + 1
	}
	stored, found, err := t.lookupStored(p)
	if err != nil || found {
		return repo.Result{Event: stored, Outcome: repo.Duplicate}, err
	}
	t.stage(p, ev)
	if ev.Type == events.TypeConversationForked {
		t.recordBranch(&ev)
	}
	if setsTitle {
		t.noteTitle(conv, title)
	}
	return repo.Result{Event: ev, Outcome: repo.Appended}, nil
}

// stage records a new event in the transaction: its seq is the head now,
// its keys are taken, and a final message closes its turn at once (later
// chunks in the same transaction must see that).
func (t *txn) stage(p *prepared, ev events.Event) {
	conv := ev.ConversationID
	se := &storedEvent{ev: ev, fp: p.fp[:], enc: &p.stored, search: p.search}
	oldHead := t.heads[conv]
	var k convKey
	var oldKey *storedEvent
	if ev.RequestID != "" {
		k = convKey{conv, ev.RequestID}
		oldKey = t.byKey[k]
		t.byKey[k] = se
	}
	oldID, hadID := t.byID[ev.ID]
	t.heads[conv] = ev.Seq
	t.staged = append(t.staged, se)
	t.byID[ev.ID] = se
	if t.journaling {
		t.journal = append(t.journal, func() {
			t.heads[conv] = oldHead
			t.staged = t.staged[:len(t.staged)-1]
			if ev.RequestID != "" {
				t.byKey[k] = oldKey
			}
			if hadID {
				t.byID[ev.ID] = oldID
			} else {
				delete(t.byID, ev.ID)
			}
		})
	}
	if ev.Type == events.TypeAssistantMessage && strings.HasPrefix(ev.RequestID, "assistant:") {
		k := convKey{conv, strings.TrimPrefix(ev.RequestID, "assistant:")}
		t.queue(k.conv, qTurnComplete, k.conv, k.key)
		if tr := t.turns[k]; tr != nil {
			done := *tr
			done.state, done.leaseExpires = turnCompleted, 0
			t.setTurn(k, done)
		}
	}
}

// commit writes what was staged and what was queued, and commits. It
// returns the positions the insert drew, by event id. A transaction that
// writes nothing (every append a duplicate, every turn answered) ends
// with ROLLBACK: its commit would have nothing to make durable.
//
// When the connection breaks with COMMIT on its way, the outcome is
// unknown to the client. The server knows it: once the broken session's
// backend is gone, pg_xact_status of the transaction's id says whether it
// committed (success, reported as such) or not (a connLostError: nothing
// is stored, the transaction may run again).
func (t *txn) commit(ctx context.Context) (map[string]int64, error) {
	if t.broken != nil {
		t.rollback()
		return nil, t.broken
	}
	inserts := len(t.staged) > 0
	if !inserts && len(t.queued) == 0 && len(t.erased) == 0 {
		t.rollback()
		return nil, nil
	}
	if err := t.foldReadModels(); err != nil {
		t.rollback()
		return nil, err
	}
	// Each statement queued comes with what reads its result.
	b := &pgx.Batch{}
	var reads []func(pgx.BatchResults) error
	exec := func(br pgx.BatchResults) error { _, err := br.Exec(); return err }
	pos := make(map[string]int64, len(t.staged))
	var written map[string]string // conversation -> its read model row's new xmin
	// Erasures first: what the transaction stages for an erased
	// conversation comes after its erasure.
	for _, conv := range slices.Sorted(maps.Keys(t.erased)) {
		for _, q := range []string{qEraseEvents, qEraseTurns, qEraseSummary, qEraseBranch} {
			b.Queue(q, conv)
			reads = append(reads, exec)
		}
	}
	if inserts {
		t.queueInsert(b)
		reads = append(reads, func(br pgx.BatchResults) error {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id string
				var p int64
				if err := rows.Scan(&id, &p); err != nil {
					return err
				}
				pos[id] = p
			}
			return rows.Err()
		})
		if t.queueReadModels(b) {
			reads = append(reads, func(br pgx.BatchResults) error {
				rows, err := br.Query()
				if err != nil {
					return err
				}
				defer rows.Close()
				written = map[string]string{}
				for rows.Next() {
					var conv, xmin string
					if err := rows.Scan(&conv, &xmin); err != nil {
						return err
					}
					written[conv] = xmin
				}
				return rows.Err()
			})
		}
	}
	// The turns' changes in the order the requests made them, then the
	// streams' chunks, as if each statement ran when its request did.
	for _, q := range t.queued {
		b.Queue(q.sql, q.args...)
		reads = append(reads, exec)
	}
	if inserts && t.queueStreams(b) {
		reads = append(reads, exec)
	}
	for _, st := range t.staged {
		t.touched[st.ev.ConversationID] = struct{}{}
	}
	for conv := range t.erased {
		t.touched[conv] = struct{}{}
	}
	notify := t.r.channel != "" && len(t.touched) > 0
	if notify {
		// Delivered to other replicas at commit, and only then.
		b.Queue(qNotify, t.r.channel, t.r.notification(t.touched))
		reads = append(reads, exec)
	}
	b.Queue("COMMIT")
	reads = append(reads, exec)
	pid := t.conn.PgConn().PID()
	br := t.conn.SendBatch(ctx, b)
	err := func() error {
		for _, read := range reads {
			if err := read(br); err != nil {
				return err
			}
		}
		return nil
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil && (t.conn.IsClosed() || fatal(err)) {
		committed, serr := t.r.settle(pid, t.xid)
		switch {
		case serr != nil:
			return nil, fmt.Errorf("%w (and the commit's outcome is unknown: %v)", err, serr)
		case !committed:
			return nil, &connLostError{err}
		}
		if pos, err = t.r.positions(t.staged); err != nil {
			return nil, fmt.Errorf("read the positions of a commit settled after its connection broke: %w", err)
		}
		written = nil // the new rows' versions went with the answer
	} else if err != nil {
		t.rollback()
		return nil, err
	}
	t.cacheSummaries(written)
	if notify {
		t.r.stats.notified.Add(1)
	}
	if len(t.touched) > 0 {
		t.r.notify.wake(t.touched)
	}
	return pos, nil
}

// cacheSummaries keeps the read models the transaction wrote, under the
// row versions the upsert returned; without them (the answer was lost) it
// forgets them.
func (t *txn) cacheSummaries(xmins map[string]string) {
	for conv := range t.erased {
		t.cache.drop(conv)
	}
	for conv, s := range t.dirty {
		if xmin, ok := xmins[conv]; ok {
			t.cache.put(conv, xmin, *s)
		} else {
			t.cache.drop(conv)
		}
	}
}

// summaryCache is the writer's copy of read models it read or wrote,
// each under its row's version (xmin): begin reads a cached one again
// only when another writer (another replica, a rebuild) changed the row.
// Only the writer goroutine uses it.
type summaryCache struct {
	m map[string]cachedSummary
}

type cachedSummary struct {
	xmin string
	sum  repo.Summary
}

// maxCachedSummaries bounds the cache; it starts over when full.
const maxCachedSummaries = 1 << 14

func (c *summaryCache) get(conv string) (cachedSummary, bool) {
	if c == nil {
		return cachedSummary{}, false
	}
	e, ok := c.m[conv]
	return e, ok
}

func (c *summaryCache) put(conv, xmin string, s repo.Summary) {
	if c == nil {
		return
	}
	if c.m == nil || len(c.m) >= maxCachedSummaries {
		c.m = make(map[string]cachedSummary)
	}
	c.m[conv] = cachedSummary{xmin: xmin, sum: s}
}

func (c *summaryCache) drop(conv string) {
	if c != nil {
		delete(c.m, conv)
	}
}

// fatal reports whether err is a server error that ends the session
// (FATAL, PANIC): the server may have committed before it came.
func fatal(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Severity == "FATAL" || pe.Severity == "PANIC")
}

// queueInsert queues the insert of the staged events, in staging order.
func (t *txn) queueInsert(b *pgx.Batch) {
	n := len(t.staged)
	var (
		ids, convs, types, roles, extras = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		seqs, ats                        = make([]int64, n), make([]int64, n)
		versions                         = make([]int32, n)
		contents, parts, searches        = make([]pgtype.Text, n), make([]pgtype.Text, n), make([]pgtype.Text, n)
		bodies, fps                      = make([][]byte, n), make([][]byte, n)
	)
	for i, s := range t.staged {
		e, st := &s.ev, s.enc
		ids[i], convs[i], types[i], roles[i] = e.ID, e.ConversationID, string(e.Type), string(e.Role)
		seqs[i], ats[i], versions[i] = e.Seq, e.CreatedAt.UnixNano(), int32(e.SchemaVersion)
		contents[i] = pgtype.Text{String: st.Text, Valid: st.TextSet}
		parts[i] = pgtype.Text{String: st.PartsText, Valid: st.PartsText != ""}
		bodies[i], extras[i], fps[i] = st.Body, string(st.Extra), s.fp
		searches[i] = pgtype.Text{String: s.search, Valid: s.search != ""}
	}
	b.Queue(qInsert, ids, convs, seqs, types, versions, ats, roles, contents, bodies, extras, fps, parts, searches)
}

// foldReadModels folds the staged events into their conversations' read
// models (t.dirty). A branch's first event brings in the summary of the
// history it inherits, read inside the transaction.
func (t *txn) foldReadModels() error {
	t.dirty = map[string]*repo.Summary{}
	for _, s := range t.staged {
		e := &s.ev
		if e.Type == events.TypeAssistantDelta || !projection.Listed(e.ConversationID) {
			continue // chunks and account streams leave summaries alone (projection.Summarize)
		}
		sum, ok := t.dirty[e.ConversationID]
		if !ok {
			sum = &repo.Summary{}
			if old := t.sums[e.ConversationID]; old != nil {
				*sum = *old
			}
			t.dirty[e.ConversationID] = sum
		}
		if e.Type == events.TypeConversationForked && sum.Events == 0 {
			parent, _ := e.ExtraString("parent_id")
			at, _ := e.ExtraInt("parent_seq")
			h, err := t.history(parent, at)
			if err != nil {
				return fmt.Errorf("summarise the history of branch %q: %w", e.ConversationID, err)
			}
			projection.Inherit(sum, h)
		}
		projection.Summarize(sum, e)
	}
	return nil
}

// queueReadModels queues the upsert of the read models foldReadModels
// changed, reporting whether it queued one.
func (t *txn) queueReadModels(b *pgx.Batch) bool {
	if len(t.dirty) == 0 {
		return false
	}
	order := slices.Sorted(maps.Keys(t.dirty))
	dirty := t.dirty
	n := len(order)
	convs, users, sources, titles, jsons := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	actives, ended := make([]int64, n), make([]bool, n)
	for i, id := range order {
		s := dirty[id]
		j, _ := json.Marshal(s) // a Summary always encodes
		convs[i], users[i], sources[i], titles[i] = id, noNUL(s.User), noNUL(s.Source), noNUL(s.Title)
		actives[i], ended[i], jsons[i] = s.LastActiveAt.UnixNano(), s.Ended, string(j)
	}
	b.Queue(qSummaryPuts, convs, actives, users, sources, titles, ended, jsons)
	return true
}

// queueStreams records, once per stream, the chunks the transaction
// wrote: a new stream's row, a later attempt, or a last chunk at least
// repo.StreamTimeResolution newer than the row says (sweeps wait minutes;
// rewriting the row at every commit would cost more than the chunks).
func (t *txn) queueStreams(b *pgx.Batch) bool {
	type stream struct {
		lastAt  int64
		attempt int64
	}
	var order []convKey
	streams := map[convKey]*stream{}
	for _, s := range t.staged {
		e := &s.ev
		if e.Type != events.TypeAssistantDelta {
			continue
		}
		urid, _ := e.ExtraString("user_request_id")
		attempt, _ := e.ExtraInt("attempt")
		k := convKey{e.ConversationID, urid}
		st := streams[k]
		if st == nil {
			st = &stream{}
			streams[k] = st
			order = append(order, k)
		}
		st.lastAt = max(st.lastAt, e.CreatedAt.UnixNano())
		st.attempt = max(st.attempt, attempt)
	}
	var convs, urids []string
	var attempts []int32
	var ats []int64
	for _, k := range order {
		st := streams[k]
		if tr := t.turns[k]; tr != nil && tr.lastChunkAt != nil &&
			*tr.lastChunkAt > st.lastAt-int64(repo.StreamTimeResolution) && int64(tr.attempt) >= st.attempt {
			continue
		}
		convs, urids = append(convs, k.conv), append(urids, k.key)
		attempts, ats = append(attempts, int32(st.attempt)), append(ats, st.lastAt)
	}
	if len(convs) == 0 {
		return false
	}
	b.Queue(qTurnsChunks, convs, urids, attempts, ats, t.r.opts.Now().UnixNano())
	return true
}

// noNUL replaces NUL bytes, which PostgreSQL text cannot hold, in a value
// kept only for filtering (the summary's JSON keeps the original).
func noNUL(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// column returns one side of a list of key pairs.
func column(ks []convKey, i int) []string {
	out := make([]string, len(ks))
	for j, k := range ks {
		if i == 0 {
			out[j] = k.conv
		} else {
			out[j] = k.key
		}
	}
	return out
}
