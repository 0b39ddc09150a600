package repotest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// Leases. A test that needs a lease to lapse begins with shortLease and
// sleeps lapse (several times longer); a test that needs the lease to stay
// live whatever the machine's load begins with longLease.
const (
	shortLease = 100 * time.Millisecond
	lapse      = 3 * shortLease
	longLease  = time.Minute
)

var beginCases = []subCase{
	{"Started", testBeginStarted},
	{"InFlight", testBeginInFlight},
	{"TakeOver", testBeginTakeOver},
	{"Conflict", testBeginConflict},
	{"Invalid", testBeginInvalid},
	{"Concurrent", testBeginConcurrent},
}

var chunkCases = []subCase{
	{"Holder", testChunkHolder},
	{"StaleAfterTakeOver", testChunkStale},
	{"NoAttempt", testChunkNoAttempt},
	{"DuplicateWins", testChunkDuplicateWins},
	{"Conflict", testChunkConflict},
	{"WithoutTurn", testChunkWithoutTurn},
	{"Batch", testChunkBatch},
	{"Each", testChunkEach},
	{"Import", testChunkImport},
}

var heartbeatCases = []subCase{
	{"Extends", testHeartbeatExtends},
	{"Stale", testHeartbeatStale},
	{"NotFound", testHeartbeatNotFound},
	{"NotFoundPlainStream", testNotFoundPlainStream},
	{"LapsedHolder", testHeartbeatLapsedHolder},
}

var finishCases = []subCase{
	{"HolderChunksOnly", testFinishHolderOnly},
	{"Twice", testFinishTwice},
	{"Stale", testFinishStale},
	{"BeginAfter", testFinishBeginAfter},
	{"ClosesTurn", testFinishCloses},
	{"BuildError", testFinishBuildError},
	{"WithoutTurn", testFinishWithoutTurn},
	{"NotFound", testFinishNotFound},
}

var failCases = []subCase{
	{"Recorded", testFailRecorded},
	{"EmptyMessage", testFailEmpty},
	{"Stale", testFailStale},
}

var streamCases = []subCase{
	{"Idle", testStreamsIdle},
}

// Turn helpers.

// beginReq is the BeginTurn request for user request urid in conv.
func beginReq(conv, urid, text string, lease time.Duration) repo.BeginTurn {
	return repo.BeginTurn{UserMessage: userMsg(conv, urid, text), Owner: "repotest", Lease: lease}
}

// wantBegin begins (or looks up) the turn of urid and requires status and
// attempt.
func (e *env) wantBegin(what, conv, urid, text string, lease time.Duration, status repo.TurnStatus, attempt int) repo.TurnState {
	e.t.Helper()
	st, err := e.r.BeginTurn(e.ctx, beginReq(conv, urid, text, lease))
	if err != nil {
		e.t.Fatalf("%s: BeginTurn(%q, %q): %v", what, conv, urid, err)
	}
	if st.Status != status || st.Attempt != attempt {
		e.t.Fatalf("%s: BeginTurn(%q, %q) = %s attempt %d, want %s attempt %d", what, conv, urid, st.Status, st.Attempt, status, attempt)
	}
	wantPayload(e.t, what+": TurnState.UserEvent", st.UserEvent, userMsg(conv, urid, text))
	return st
}

// chunk appends the chunk of urid's attempt at index, which must be new.
func (e *env) chunk(conv, urid string, attempt, index int, text string) events.Event {
	e.t.Helper()
	return e.appendNew(compact.Chunk(conv, urid, attempt, index, text))
}

// fold is the FinishFunc of these tests: compact.Fold with stop reason
// "stop".
func fold(chunks []events.Event) ([]events.Event, error) {
	return compact.Fold(chunks, compact.Options{StopReason: "stop"})
}

// finish finishes urid's attempt with fold and requires outcome want.
func (e *env) finish(what, conv, urid string, attempt int, want repo.Outcome) events.Event {
	e.t.Helper()
	res, err := e.r.Finish(e.ctx, conv, urid, attempt, fold)
	if err != nil {
		e.t.Fatalf("%s: Finish(%q, %q, attempt %d): %v", what, conv, urid, attempt, err)
	}
	if res.Outcome != want {
		e.t.Fatalf("%s: Finish(%q, %q, attempt %d): outcome %v, want %v", what, conv, urid, attempt, res.Outcome, want)
	}
	return res.Event
}

// wantReply checks a final message: type, key, conversation and text.
func wantReply(t testing.TB, what string, got events.Event, conv, urid, text string) {
	t.Helper()
	if got.Type != events.TypeAssistantMessage || got.RequestID != repo.ReplyRequestID(urid) || got.ConversationID != conv {
		t.Errorf("%s: %s request_id %q in %q, want an assistant_message with request_id %q in %q",
			what, got.Type, got.RequestID, got.ConversationID, repo.ReplyRequestID(urid), conv)
	}
	if got.Text() != text {
		t.Errorf("%s: text %q, want %q", what, got.Text(), text)
	}
}

// wantStale checks err is a stale attempt (errors.Is ErrStaleAttempt,
// errors.As *repo.StaleAttemptError) with the given details.
func wantStale(t testing.TB, what string, err error, conv, urid string, attempt, holder int, closed string) {
	t.Helper()
	if !errors.Is(err, repo.ErrStaleAttempt) {
		t.Errorf("%s: error %v, want ErrStaleAttempt", what, err)
		return
	}
	var se *repo.StaleAttemptError
	if !errors.As(err, &se) {
		t.Errorf("%s: error %v (%T) is not a *repo.StaleAttemptError", what, err, err)
		return
	}
	if se.ConversationID != conv || se.UserRequestID != urid || se.Attempt != attempt || se.Holder != holder || se.Closed != closed {
		t.Errorf("%s: StaleAttemptError{ConversationID: %q, UserRequestID: %q, Attempt: %d, Holder: %d, Closed: %q}, want {%q, %q, %d, %d, %q}",
			what, se.ConversationID, se.UserRequestID, se.Attempt, se.Holder, se.Closed, conv, urid, attempt, holder, closed)
	}
}

// wantStaleChunk appends a chunk that must be refused as stale and checks
// that nothing was written.
func (e *env) wantStaleChunk(what string, ev events.Event, holder int, closed string) {
	e.t.Helper()
	before := e.head(ev.ConversationID)
	n := len(e.all(0))
	res, err := e.r.Append(e.ctx, ev, repo.AppendOptions{})
	urid, _ := ev.ExtraString("user_request_id")
	attempt, _ := ev.ExtraInt("attempt")
	wantStale(e.t, what, err, ev.ConversationID, urid, int(attempt), holder, closed)
	if err == nil {
		e.t.Errorf("%s: got outcome %v (seq %d), want a stale attempt", what, res.Outcome, res.Event.Seq)
	}
	e.wantHead(ev.ConversationID, before)
	e.wantAllLen(n)
	if _, err := e.r.ByRequestID(e.ctx, ev.ConversationID, ev.RequestID); !errors.Is(err, repo.ErrNotFound) {
		e.t.Errorf("%s: ByRequestID(%q) after the refusal: %v, want ErrNotFound", what, ev.RequestID, err)
	}
}

// takeOver begins urid with a short lease, lets it lapse and takes the
// turn over as attempt 2 (with a long lease).
func (e *env) takeOver(conv, urid, text string, beforeLapse func()) {
	e.t.Helper()
	e.wantBegin("first begin", conv, urid, text, shortLease, repo.TurnStarted, 1)
	if beforeLapse != nil {
		beforeLapse()
	}
	time.Sleep(lapse)
	e.wantBegin("begin after the lease lapsed", conv, urid, text, longLease, repo.TurnStarted, 2)
}

// wantLease checks that a lease of length lease taken by a call made
// between before and after ends when it should.
func wantLease(t testing.TB, what string, got, before, after time.Time, lease time.Duration) {
	t.Helper()
	// A millisecond of slack for stores that keep coarser times.
	if got.Before(before.Add(lease-time.Millisecond)) || got.After(after.Add(lease+time.Millisecond)) {
		t.Errorf("%s: lease expires at %s, want between %s and %s (now + %v)", what,
			got.Format(time.RFC3339Nano), before.Add(lease).Format(time.RFC3339Nano), after.Add(lease).Format(time.RFC3339Nano), lease)
	}
}

// sameTime reports whether two times agree to the millisecond.
func sameTime(a, b time.Time) bool {
	d := a.Sub(b)
	return -time.Millisecond <= d && d <= time.Millisecond
}

// BeginTurn.

// testBeginStarted: the first begin records the user message and holds
// the turn as attempt 1, with a lease from now.
func testBeginStarted(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(userMsg("c", "before", "an earlier message"))
	before := time.Now()
	st, err := e.r.BeginTurn(e.ctx, beginReq("c", "u1", "What is 2+2?", longLease))
	after := time.Now()
	if err != nil {
		t.Fatalf("BeginTurn: %v", err)
	}
	if st.Status != repo.TurnStarted || st.Attempt != 1 {
		t.Fatalf("first BeginTurn = %s attempt %d, want started attempt 1", st.Status, st.Attempt)
	}
	wantLease(t, "first BeginTurn", st.LeaseExpiresAt, before, after, longLease)
	if st.Reply != nil || st.LastError != "" {
		t.Errorf("first BeginTurn: reply %v, last error %q; want neither", st.Reply, st.LastError)
	}
	wantPayload(t, "UserEvent", st.UserEvent, userMsg("c", "u1", "What is 2+2?"))
	if st.UserEvent.Seq != 2 {
		t.Errorf("UserEvent seq %d, want 2", st.UserEvent.Seq)
	}
	stored, err := e.r.ByRequestID(e.ctx, "c", "u1")
	if err != nil {
		t.Fatalf("ByRequestID(u1): %v", err)
	}
	wantStored(t, "UserEvent", st.UserEvent, stored)
	e.wantHead("c", 2)
	e.wantAllLen(2)
}

// testBeginInFlight: while the holder's lease is live, other begins are
// told the turn is in flight, with the holder's attempt and lease, and the
// user message is not stored again.
func testBeginInFlight(t *testing.T, s *suite) {
	e := s.fresh(t)
	first := e.wantBegin("first", "c", "u1", "hello", longLease, repo.TurnStarted, 1)
	for i, lease := range []time.Duration{longLease, shortLease, 0} {
		st := e.wantBegin(fmt.Sprintf("begin %d while the lease is live", i+2), "c", "u1", "hello", lease, repo.TurnInFlight, 1)
		if !sameTime(st.LeaseExpiresAt, first.LeaseExpiresAt) {
			t.Errorf("in flight: lease expires at %s, want the holder's %s", st.LeaseExpiresAt.Format(time.RFC3339Nano), first.LeaseExpiresAt.Format(time.RFC3339Nano))
		}
		wantStored(t, "in flight: UserEvent", st.UserEvent, first.UserEvent)
	}
	e.wantHead("c", 1)
	e.wantAllLen(1)
}

// testBeginTakeOver: once the holder's lease lapsed, the next begin takes
// the turn over as the next attempt, which holds it in turn.
func testBeginTakeOver(t *testing.T, s *suite) {
	e := s.fresh(t)
	first := e.wantBegin("first", "c", "u1", "hello", shortLease, repo.TurnStarted, 1)
	time.Sleep(lapse)
	before := time.Now()
	second := e.wantBegin("after the lease lapsed", "c", "u1", "hello", longLease, repo.TurnStarted, 2)
	wantLease(t, "take-over", second.LeaseExpiresAt, before, time.Now(), longLease)
	wantStored(t, "take-over: UserEvent", second.UserEvent, first.UserEvent)
	third := e.wantBegin("while attempt 2 holds it", "c", "u1", "hello", longLease, repo.TurnInFlight, 2)
	if !sameTime(third.LeaseExpiresAt, second.LeaseExpiresAt) {
		t.Errorf("in flight: lease expires at %s, want attempt 2's %s", third.LeaseExpiresAt.Format(time.RFC3339Nano), second.LeaseExpiresAt.Format(time.RFC3339Nano))
	}
	e.wantHead("c", 1)
}

// testBeginConflict: beginning again with other content is an idempotency
// conflict carrying the stored message; the turn is unaffected.
func testBeginConflict(t *testing.T, s *suite) {
	e := s.fresh(t)
	first := e.wantBegin("first", "c", "u1", "hello", longLease, repo.TurnStarted, 1)
	for _, other := range []events.Event{userMsg("c", "u1", "hello!"), fullUser("c", "u1")} {
		st, err := e.r.BeginTurn(e.ctx, repo.BeginTurn{UserMessage: other, Lease: longLease})
		e.checkConflictErr("BeginTurn with other content", err, "u1", first.UserEvent)
		if err == nil {
			t.Errorf("BeginTurn with other content: %s attempt %d, want a conflict", st.Status, st.Attempt)
		}
	}
	e.wantHead("c", 1)
	e.wantAllLen(1)
	e.wantBegin("original after the conflict", "c", "u1", "hello", longLease, repo.TurnInFlight, 1)
}

// fullUser is a user message with extra metadata.
func fullUser(conv, rid string) events.Event {
	ev := userMsg(conv, rid, "hello")
	ev.Extra = map[string]any{"source": "web"}
	return ev
}

// testBeginInvalid: a begin needs a valid user_message with a request_id;
// otherwise events.ErrInvalid and nothing is written.
func testBeginInvalid(t *testing.T, s *suite) {
	e := s.fresh(t)
	for name, ev := range map[string]events.Event{
		"no request_id":      userMsg("c", "", "hello"),
		"assistant_message":  assistantMsg("c", "u2", "not a user message"),
		"system_update":      {ConversationID: "c", Type: events.TypeSystemUpdate, RequestID: "u3", Content: events.NewText("x")},
		"no content":         invalidMsg("c", "u4"),
		"no conversation_id": userMsg("", "u5", "hello"),
	} {
		st, err := e.r.BeginTurn(e.ctx, repo.BeginTurn{UserMessage: ev, Lease: longLease})
		if !errors.Is(err, events.ErrInvalid) {
			t.Errorf("BeginTurn with %s: %s attempt %d, %v; want events.ErrInvalid", name, st.Status, st.Attempt, err)
		}
	}
	e.wantAllLen(0)
	for _, urid := range []string{"u2", "u3", "u4", "u5"} {
		if _, err := e.r.Heartbeat(e.ctx, "c", urid, 1); !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("Heartbeat of %s, whose begin was invalid: %v, want ErrNotFound (no turn)", urid, err)
		}
	}
}

// testBeginConcurrent: many callers beginning one turn at once: exactly
// one holds it; the others see it in flight. After its lease lapsed, many
// callers at once: exactly one takes it over.
func testBeginConcurrent(t *testing.T, s *suite) {
	e := s.fresh(t)
	const callers = 16
	race := func(lease time.Duration) []repo.TurnState {
		var (
			wg   sync.WaitGroup
			out  = make([]repo.TurnState, callers)
			errs = make([]error, callers)
			gate = make(chan struct{})
		)
		for i := range callers {
			wg.Go(func() {
				<-gate
				out[i], errs[i] = e.r.BeginTurn(e.ctx, beginReq("c", "u1", "hello", lease))
			})
		}
		close(gate)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("caller %d: BeginTurn: %v", i, err)
			}
		}
		return out
	}
	check := func(what string, sts []repo.TurnState, attempt int) {
		started := 0
		for i, st := range sts {
			if st.Attempt != attempt || (st.Status != repo.TurnStarted && st.Status != repo.TurnInFlight) {
				t.Errorf("%s: caller %d got %s attempt %d, want started or in_flight attempt %d", what, i, st.Status, st.Attempt, attempt)
			}
			if st.Status == repo.TurnStarted {
				started++
			}
		}
		if started != 1 {
			t.Errorf("%s: %d callers hold the turn, want exactly 1", what, started)
		}
	}
	check("first begins", race(shortLease), 1)
	time.Sleep(lapse)
	check("begins after the lease lapsed", race(longLease), 2)
	e.wantHead("c", 1)
}

// Chunks.

// testChunkHolder: the holder's chunks are stored with the turn's keys.
func testChunkHolder(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.wantBegin("begin", "c", "u1", "hello", longLease, repo.TurnStarted, 1)
	for i, text := range []string{"Hel", "lo"} {
		sent := compact.Chunk("c", "u1", 1, i, text)
		st := e.appendNew(sent)
		wantPayload(t, fmt.Sprintf("chunk %d", i), st, sent)
		if want := repo.ChunkRequestID("u1", 1, i); st.RequestID != want {
			t.Errorf("chunk %d: request_id %q, want %q", i, st.RequestID, want)
		}
		if a, _ := st.ExtraInt("attempt"); a != 1 {
			t.Errorf("chunk %d: extra.attempt %d, want 1", i, a)
		}
	}
	e.wantHead("c", 3)
}

// testChunkStale: after a take-over, the old attempt's chunks are refused
// and nothing is written; the new holder's are stored.
func testChunkStale(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.takeOver("c", "u1", "hello", func() { e.chunk("c", "u1", 1, 0, "old") })
	e.wantStaleChunk("next chunk of attempt 1", compact.Chunk("c", "u1", 1, 1, "more"), 2, "")
	e.wantStaleChunk("chunk of a future attempt", compact.Chunk("c", "u1", 3, 0, "early"), 2, "")
	e.chunk("c", "u1", 2, 0, "new")
	e.chunk("c", "u1", 2, 1, " text")
	e.wantStaleChunk("attempt 1 after the new holder wrote", compact.Chunk("c", "u1", 1, 2, "late"), 2, "")
}

// testChunkNoAttempt: a chunk without an attempt for a request begun as
// a turn is refused as stale (attempt 0).
func testChunkNoAttempt(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.wantBegin("begin", "c", "u1", "hello", longLease, repo.TurnStarted, 1)
	e.wantStaleChunk("chunk without attempt", compact.Chunk("c", "u1", 0, 0, "x"), 1, "")
	e.chunk("c", "u1", 1, 0, "x")
	e.wantStaleChunk("chunk without attempt after the holder's", compact.Chunk("c", "u1", 0, 1, "y"), 1, "")
}

// testChunkDuplicateWins: a chunk already stored is answered as a
// duplicate even when its attempt no longer holds the turn (the writer is
// retrying what was written).
func testChunkDuplicateWins(t *testing.T, s *suite) {
	e := s.fresh(t)
	var old events.Event
	e.takeOver("c", "u1", "hello", func() { old = e.chunk("c", "u1", 1, 0, "old") })
	e.wantDuplicate("re-sent chunk of attempt 1", compact.Chunk("c", "u1", 1, 0, "old"), repo.AppendOptions{}, old)
	cur := e.chunk("c", "u1", 2, 0, "new")
	e.wantDuplicate("re-sent chunk of the holder", compact.Chunk("c", "u1", 2, 0, "new"), repo.AppendOptions{}, cur)

	// The same through the batch paths.
	n := len(e.all(0))
	resent := []events.Event{compact.Chunk("c", "u1", 1, 0, "old"), compact.Chunk("c", "u1", 2, 0, "new")}
	res, err := e.r.AppendBatch(e.ctx, resent, repo.AppendOptions{})
	if err != nil {
		t.Fatalf("AppendBatch of re-sent chunks: %v", err)
	}
	wantResults(t, "AppendBatch of re-sent chunks", res, resent, fmt.Sprintf("D%d", old.Seq), fmt.Sprintf("D%d", cur.Seq))
	for i, it := range e.r.AppendEach(e.ctx, resent, repo.AppendOptions{}) {
		if it.Err != nil || it.Outcome != repo.Duplicate {
			t.Errorf("AppendEach of re-sent chunks: item %d %v %v, want a duplicate", i, it.Outcome, it.Err)
		}
	}
	e.wantAllLen(n)
}

// testChunkConflict: the same index with other content is an idempotency
// conflict.
func testChunkConflict(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.wantBegin("begin", "c", "u1", "hello", longLease, repo.TurnStarted, 1)
	st := e.chunk("c", "u1", 1, 0, "first")
	e.wantConflict("same index, other content", compact.Chunk("c", "u1", 1, 0, "other"), repo.ChunkRequestID("u1", 1, 0), st)

	plain := e.chunk("c", "u2", 0, 0, "first")
	e.wantConflict("same index, other content, no turn", compact.Chunk("c", "u2", 0, 0, "other"), repo.ChunkRequestID("u2", 0, 0), plain)
}

// testChunkWithoutTurn: a request never begun as a turn streams chunks
// without an attempt; one naming an attempt is refused (holder 0).
func testChunkWithoutTurn(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(userMsg("c", "u1", "hello"))
	for i, text := range []string{"a", "b", "c"} {
		st := e.chunk("c", "u1", 0, i, text)
		if want := repo.ChunkRequestID("u1", 0, i); st.RequestID != want {
			t.Errorf("chunk %d: request_id %q, want %q", i, st.RequestID, want)
		}
	}
	e.wantStaleChunk("chunk naming an attempt of no turn", compact.Chunk("c", "u1", 1, 3, "d"), 0, "")
	e.wantHead("c", 4)
	// Once finished, the stream takes no more chunks: they would come
	// after the reply and never be folded.
	e.finish("plain finish", "c", "u1", 0, repo.Appended)
	e.wantStaleChunk("late chunk on a finished plain stream", compact.Chunk("c", "u1", 0, 3, "late"), 0, "completed")
}

// testChunkBatch: AppendBatch goes through the same guard: a stale chunk
// fails the whole batch.
func testChunkBatch(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.takeOver("c", "u1", "hello", nil)
	before := e.head("c")
	batch := []events.Event{
		compact.Chunk("c", "u1", 2, 0, "ok"),
		compact.Chunk("c", "u1", 1, 0, "stale"),
		compact.Chunk("c", "u1", 2, 1, "ok too"),
	}
	_, err := e.r.AppendBatch(e.ctx, batch, repo.AppendOptions{})
	wantBatchErr(t, "batch with a stale chunk at 1", err, 1, repo.ErrStaleAttempt)
	wantStale(t, "batch with a stale chunk at 1", err, "c", "u1", 1, 2, "")
	e.wantHead("c", before)

	batch = []events.Event{userMsg("c", "u2", "next"), compact.Chunk("c", "u1", 0, 0, "no attempt")}
	_, err = e.r.AppendBatch(e.ctx, batch, repo.AppendOptions{})
	wantBatchErr(t, "batch with a chunk without attempt at 1", err, 1, repo.ErrStaleAttempt)
	e.wantHead("c", before)

	batch = []events.Event{compact.Chunk("c", "u1", 2, 0, "ok"), compact.Chunk("c", "u1", 2, 1, "ok too")}
	res, err := e.r.AppendBatch(e.ctx, batch, repo.AppendOptions{})
	if err != nil {
		t.Fatalf("batch of the holder's chunks: %v", err)
	}
	wantResults(t, "batch of the holder's chunks", res, batch, fmt.Sprintf("A%d", before+1), fmt.Sprintf("A%d", before+2))
}

// testChunkEach: AppendEach is the bulk path that loads history (ingest,
// import): chunks are recorded as written, not checked against the live
// turn, and recording the old attempt's leaves the holder holding: its
// finish folds its own chunks only.
func testChunkEach(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.takeOver("c", "u1", "hello", nil)
	before := e.head("c")
	sent := []events.Event{
		compact.Chunk("c", "u1", 2, 0, "new"),
		compact.Chunk("c", "u1", 1, 0, "old"),
		compact.Chunk("c", "u1", 1, 1, " text"),
		compact.Chunk("c", "u1", 2, 1, " reply"),
	}
	items := e.r.AppendEach(e.ctx, sent, repo.AppendOptions{})
	if len(items) != len(sent) {
		t.Fatalf("AppendEach returned %d items for %d events", len(items), len(sent))
	}
	for i, it := range items {
		if it.Err != nil || it.Outcome != repo.Appended {
			t.Errorf("item %d (%s): %v %v, want appended", i, describe(sent[i]), it.Outcome, it.Err)
		}
	}
	e.wantHead("c", before+int64(len(sent)))
	e.wantBegin("begin after the load", "c", "u1", "hello", longLease, repo.TurnInFlight, 2)
	e.wantStaleChunk("attempt 1 through Append after the load", compact.Chunk("c", "u1", 1, 2, "late"), 2, "")
	// History never takes a live turn away: a loaded chunk of a later
	// attempt is stored, and attempt 2 still holds the turn.
	if it := e.r.AppendEach(e.ctx, []events.Event{compact.Chunk("c", "u1", 5, 0, "from a log")}, repo.AppendOptions{})[0]; it.Err != nil {
		t.Fatalf("loading a later attempt's chunk: %v", it.Err)
	}
	if _, err := e.r.Heartbeat(e.ctx, "c", "u1", 2); err != nil {
		t.Errorf("the holder's heartbeat after a later attempt's chunk was loaded: %v", err)
	}
	msg := e.finish("holder's finish", "c", "u1", 2, repo.Appended)
	wantReply(t, "holder's finish", msg, "c", "u1", "new reply")
}

// testChunkImport: an export of a conversation with turns (a taken-over
// attempt's chunks, a failure, the holder's chunks and reply) imports
// into another repository as it is, and again as duplicates.
func testChunkImport(t *testing.T, s *suite) {
	src := s.fresh(t)
	src.takeOver("c", "u1", "hello", func() { src.chunk("c", "u1", 1, 0, "old") })
	src.chunk("c", "u1", 2, 0, "new")
	if err := src.r.FailTurn(src.ctx, "c", "u1", 2, "boom"); err != nil {
		t.Fatalf("FailTurn: %v", err)
	}
	src.wantBegin("begin after the failure", "c", "u1", "hello", longLease, repo.TurnStarted, 3)
	src.chunk("c", "u1", 3, 0, "final")
	src.finish("finish", "c", "u1", 3, repo.Appended)
	src.chunk("c", "u2", 0, 0, "open stream")
	export := src.all(0)

	dst := s.fresh(t)
	items := dst.r.AppendEach(dst.ctx, export, keep)
	for i, it := range items {
		if it.Err != nil || it.Outcome != repo.Appended {
			t.Errorf("import item %d (%s): %v %v, want appended", i, describe(export[i]), it.Outcome, it.Err)
		}
	}
	for i, it := range dst.r.AppendEach(dst.ctx, export, keep) {
		if it.Err != nil || it.Outcome != repo.Duplicate {
			t.Errorf("re-import item %d (%s): %v %v, want a duplicate", i, describe(export[i]), it.Outcome, it.Err)
		}
	}
	dst.wantAllLen(len(export))
	dst.wantBegin("begin of the imported turn", "c", "u1", "hello", longLease, repo.TurnCompleted, 3)
}

// Heartbeat.

// testHeartbeatExtends: a heartbeat extends the lease by its length from
// now, and begins report the new expiry.
func testHeartbeatExtends(t *testing.T, s *suite) {
	e := s.fresh(t)
	st := e.wantBegin("begin", "c", "u1", "hello", longLease, repo.TurnStarted, 1)
	time.Sleep(20 * time.Millisecond)
	before := time.Now()
	exp, err := e.r.Heartbeat(e.ctx, "c", "u1", 1)
	if err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	wantLease(t, "Heartbeat", exp, before, time.Now(), longLease)
	if !exp.After(st.LeaseExpiresAt) {
		t.Errorf("Heartbeat: lease expires at %s, not later than before (%s)", exp.Format(time.RFC3339Nano), st.LeaseExpiresAt.Format(time.RFC3339Nano))
	}
	again := e.wantBegin("begin after the heartbeat", "c", "u1", "hello", longLease, repo.TurnInFlight, 1)
	if !sameTime(again.LeaseExpiresAt, exp) {
		t.Errorf("in flight after the heartbeat: lease expires at %s, want %s", again.LeaseExpiresAt.Format(time.RFC3339Nano), exp.Format(time.RFC3339Nano))
	}
	e.wantAllLen(1)
}

// testHeartbeatStale: an attempt that no longer holds the turn cannot
// extend it.
func testHeartbeatStale(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.takeOver("c", "u1", "hello", nil)
	_, err := e.r.Heartbeat(e.ctx, "c", "u1", 1)
	wantStale(t, "Heartbeat of attempt 1 after the take-over", err, "c", "u1", 1, 2, "")
	_, err = e.r.Heartbeat(e.ctx, "c", "u1", 3)
	wantStale(t, "Heartbeat of a future attempt", err, "c", "u1", 3, 2, "")
	_, err = e.r.Heartbeat(e.ctx, "c", "u1", 0)
	wantStale(t, "Heartbeat of attempt 0", err, "c", "u1", 0, 2, "")
	if _, err := e.r.Heartbeat(e.ctx, "c", "u1", 2); err != nil {
		t.Errorf("Heartbeat of the holder: %v", err)
	}
}

// testHeartbeatNotFound: a turn never begun is not found.
func testHeartbeatNotFound(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(userMsg("c", "plain", "a message, not a turn"))
	e.wantBegin("begin", "c", "u1", "hello", longLease, repo.TurnStarted, 1)
	for _, k := range []struct{ conv, urid string }{{"c", "nope"}, {"c", "plain"}, {"other", "u1"}} {
		if _, err := e.r.Heartbeat(e.ctx, k.conv, k.urid, 1); !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("Heartbeat(%q, %q): %v, want ErrNotFound", k.conv, k.urid, err)
		}
	}
}

// testNotFoundPlainStream: a request streamed without a turn was never
// begun as one: its turn is not found by Heartbeat or FailTurn, and
// neither writes anything.
func testNotFoundPlainStream(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(userMsg("c", "plain", "hi"))
	e.chunk("c", "plain", 0, 0, "a")
	n := len(e.all(0))
	for _, a := range []int{0, 1} {
		if _, err := e.r.Heartbeat(e.ctx, "c", "plain", a); !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("Heartbeat(attempt %d) of a stream without a turn: %v, want ErrNotFound", a, err)
		}
		if err := e.r.FailTurn(e.ctx, "c", "plain", a, "x"); !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("FailTurn(attempt %d) of a stream without a turn: %v, want ErrNotFound", a, err)
		}
	}
	e.wantAllLen(n)
	e.chunk("c", "plain", 0, 1, "b")
	msg := e.finish("finish", "c", "plain", 0, repo.Appended)
	wantReply(t, "finish", msg, "c", "plain", "ab")
}

// testHeartbeatLapsedHolder: a holder whose lease lapsed, with nobody
// taking over, still holds the turn: it may heartbeat, write and finish.
func testHeartbeatLapsedHolder(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.wantBegin("begin", "c", "u1", "hello", shortLease, repo.TurnStarted, 1)
	time.Sleep(lapse)
	e.chunk("c", "u1", 1, 0, "slow ")
	before := time.Now()
	exp, err := e.r.Heartbeat(e.ctx, "c", "u1", 1)
	if err != nil {
		t.Fatalf("Heartbeat after the lease lapsed: %v", err)
	}
	wantLease(t, "Heartbeat after the lease lapsed", exp, before, time.Now(), shortLease)
	time.Sleep(lapse)
	e.chunk("c", "u1", 1, 1, "holder")
	msg := e.finish("finish after the lease lapsed again", "c", "u1", 1, repo.Appended)
	wantReply(t, "finish after the lease lapsed", msg, "c", "u1", "slow holder")
}

// Finish.

// testFinishHolderOnly: the final message folds the holder's chunks only,
// given to build in seq order; it answers the user request.
func testFinishHolderOnly(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.takeOver("c", "u1", "hello", func() {
		e.chunk("c", "u1", 1, 0, "old ")
		e.chunk("c", "u1", 1, 1, "text")
	})
	e.chunk("other", "u1", 0, 0, "another conversation")
	e.chunk("c", "u1x", 0, 0, "another request")
	e.chunk("c", "u1", 2, 0, "new ")
	e.appendNew(userMsg("c", "u2", "interleaved"))
	e.chunk("c", "u1", 2, 1, "reply")
	var given []events.Event
	res, err := e.r.Finish(e.ctx, "c", "u1", 2, func(chunks []events.Event) ([]events.Event, error) {
		given = chunks
		return fold(chunks)
	})
	if err != nil {
		t.Fatalf("Finish(attempt 2): %v", err)
	}
	if res.Outcome != repo.Appended {
		t.Errorf("Finish(attempt 2): outcome %v, want appended", res.Outcome)
	}
	wantReply(t, "Finish(attempt 2)", res.Event, "c", "u1", "new reply")
	if res.Event.StopReason != "stop" {
		t.Errorf("Finish: stop reason %q, want the build's %q", res.Event.StopReason, "stop")
	}
	if len(given) != 2 {
		t.Fatalf("build got %d chunks, want attempt 2's 2: %v", len(given), ids(given))
	}
	for i, c := range given {
		a, _ := c.ExtraInt("attempt")
		u, _ := c.ExtraString("user_request_id")
		if a != 2 || u != "u1" || c.ConversationID != "c" || c.Type != events.TypeAssistantDelta {
			t.Errorf("build got chunk %d: %s of %q attempt %d in %q, want attempt 2's of u1 in c", i, c.Type, u, a, c.ConversationID)
		}
		if i > 0 && c.Seq <= given[i-1].Seq {
			t.Errorf("build got chunks in seqs %v, want seq order", seqs(given))
		}
	}
	stored, err := e.r.ByRequestID(e.ctx, "c", repo.ReplyRequestID("u1"))
	if err != nil {
		t.Fatalf("ByRequestID(%q): %v", repo.ReplyRequestID("u1"), err)
	}
	wantStored(t, "the final message", res.Event, stored)
	if last := e.events("c", repo.Range{}); last[len(last)-1].ID != res.Event.ID {
		t.Errorf("the final message is not the conversation's last event")
	}
}

// testFinishTwice: finishing again returns the stored message as a
// duplicate and writes nothing.
func testFinishTwice(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.wantBegin("begin", "c", "u1", "hello", longLease, repo.TurnStarted, 1)
	e.chunk("c", "u1", 1, 0, "hi")
	first := e.finish("first finish", "c", "u1", 1, repo.Appended)
	n := len(e.all(0))
	second := e.finish("second finish", "c", "u1", 1, repo.Duplicate)
	wantStored(t, "second finish", second, first)
	res, err := e.r.Finish(e.ctx, "c", "u1", 1, func([]events.Event) ([]events.Event, error) {
		return []events.Event{assistantMsg("c", "", "something else entirely")}, nil
	})
	if err != nil || res.Outcome != repo.Duplicate {
		t.Fatalf("finish with another build: %v %v, want the stored message as a duplicate", res.Outcome, err)
	}
	wantStored(t, "finish with another build", res.Event, first)
	e.wantAllLen(n)
}

// testFinishStale: an attempt that does not hold the turn cannot finish
// it, before or after the holder did; nothing is written.
func testFinishStale(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.takeOver("c", "u1", "hello", func() { e.chunk("c", "u1", 1, 0, "old") })
	e.chunk("c", "u1", 2, 0, "new")
	n := len(e.all(0))
	called := false
	build := func(chunks []events.Event) ([]events.Event, error) { called = true; return fold(chunks) }
	for _, a := range []int{1, 0, 3} {
		_, err := e.r.Finish(e.ctx, "c", "u1", a, build)
		wantStale(t, fmt.Sprintf("Finish(attempt %d) while attempt 2 holds the turn", a), err, "c", "u1", a, 2, "")
	}
	if called {
		t.Errorf("a stale finish called build")
	}
	e.wantAllLen(n)
	msg := e.finish("holder's finish", "c", "u1", 2, repo.Appended)
	wantReply(t, "holder's finish", msg, "c", "u1", "new")
	_, err := e.r.Finish(e.ctx, "c", "u1", 1, build)
	wantStale(t, "Finish(attempt 1) after the holder finished", err, "c", "u1", 1, 2, "completed")
	e.wantAllLen(n + 1)
}

// testFinishBeginAfter: once finished, a begin answers with the reply.
func testFinishBeginAfter(t *testing.T, s *suite) {
	e := s.fresh(t)
	first := e.wantBegin("begin", "c", "u1", "hello", longLease, repo.TurnStarted, 1)
	e.chunk("c", "u1", 1, 0, "4")
	msg := e.finish("finish", "c", "u1", 1, repo.Appended)
	for i, lease := range []time.Duration{longLease, shortLease} {
		st := e.wantBegin(fmt.Sprintf("begin %d after the finish", i+1), "c", "u1", "hello", lease, repo.TurnCompleted, 1)
		if st.Reply == nil {
			t.Fatalf("completed turn without a reply")
		}
		wantStored(t, "TurnState.Reply", *st.Reply, msg)
		wantStored(t, "TurnState.UserEvent", st.UserEvent, first.UserEvent)
	}
	time.Sleep(lapse)
	e.wantBegin("begin after the leases would have lapsed", "c", "u1", "hello", longLease, repo.TurnCompleted, 1)
	_, err := e.r.BeginTurn(e.ctx, beginReq("c", "u1", "hello?", longLease))
	wantErr(t, "BeginTurn of a completed turn with other content", err, repo.ErrIdempotencyConflict)
}

// testFinishCloses: after the finish, the holder can write no more: its
// chunks, heartbeats and failures are stale (the turn is completed).
func testFinishCloses(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.wantBegin("begin", "c", "u1", "hello", longLease, repo.TurnStarted, 1)
	last := e.chunk("c", "u1", 1, 0, "done")
	e.finish("finish", "c", "u1", 1, repo.Appended)
	e.wantStaleChunk("holder's chunk after the finish", compact.Chunk("c", "u1", 1, 1, "late"), 1, "completed")
	e.wantDuplicate("holder's chunk re-sent after the finish", compact.Chunk("c", "u1", 1, 0, "done"), repo.AppendOptions{}, last)
	_, err := e.r.Heartbeat(e.ctx, "c", "u1", 1)
	wantStale(t, "Heartbeat after the finish", err, "c", "u1", 1, 1, "completed")
	err = e.r.FailTurn(e.ctx, "c", "u1", 1, "too late")
	wantStale(t, "FailTurn after the finish", err, "c", "u1", 1, 1, "completed")
	e.wantBegin("begin after all that", "c", "u1", "hello", longLease, repo.TurnCompleted, 1)
}

// testFinishBuildError: build's error is returned as is and nothing is
// written; the turn still runs and finishes later.
func testFinishBuildError(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.wantBegin("begin", "c", "u1", "hello", longLease, repo.TurnStarted, 1)
	e.chunk("c", "u1", 1, 0, "par")
	n := len(e.all(0))
	errBuild := errors.New("the fold failed")
	res, err := e.r.Finish(e.ctx, "c", "u1", 1, func([]events.Event) ([]events.Event, error) { return nil, errBuild })
	if !errors.Is(err, errBuild) {
		t.Errorf("Finish with a failing build: %v %v, want the build's error", res.Outcome, err)
	}
	// Events built then refused (here: invalid) leave no trace either.
	_, err = e.r.Finish(e.ctx, "c", "u1", 1, func(chunks []events.Event) ([]events.Event, error) {
		evs, err := fold(chunks)
		return append(evs, events.Event{Type: events.TypeToolResult, Content: events.NewText("no tool_call_id")}), err
	})
	wantErr(t, "Finish with an invalid event after the message", err, events.ErrInvalid)
	e.wantAllLen(n)
	if _, err := e.r.ByRequestID(e.ctx, "c", repo.ReplyRequestID("u1")); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("ByRequestID of the reply after failed finishes: %v, want ErrNotFound", err)
	}
	e.wantBegin("begin after failed finishes", "c", "u1", "hello", longLease, repo.TurnInFlight, 1)
	e.chunk("c", "u1", 1, 1, "tial")
	msg := e.finish("finish", "c", "u1", 1, repo.Appended)
	wantReply(t, "finish after failed finishes", msg, "c", "u1", "partial")
}

// testFinishWithoutTurn: a request never begun as a turn streams without
// an attempt and finishes with attempt 0; the build's further events are
// written after the message, in the same call.
func testFinishWithoutTurn(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(userMsg("c", "u1", "hello"))
	e.chunk("c", "u1", 0, 1, "world")
	e.chunk("c", "u1", 0, 0, "hello ")
	_, err := e.r.Finish(e.ctx, "c", "u1", 1, fold)
	wantStale(t, "Finish(attempt 1) of a request not begun as a turn", err, "c", "u1", 1, 0, "")
	res, err := e.r.Finish(e.ctx, "c", "u1", 0, func(chunks []events.Event) ([]events.Event, error) {
		evs, err := fold(chunks)
		return append(evs, events.Event{Type: events.TypeToolResult, ToolCallID: "call_1", Content: events.NewText("after")}), err
	})
	if err != nil || res.Outcome != repo.Appended {
		t.Fatalf("Finish(attempt 0): %v %v", res.Outcome, err)
	}
	wantReply(t, "Finish(attempt 0)", res.Event, "c", "u1", "hello world")
	evs := e.events("c", repo.Range{AfterSeq: res.Event.Seq})
	if len(evs) != 1 || evs[0].Type != events.TypeToolResult || evs[0].ConversationID != "c" {
		t.Errorf("after the final message: %v, want the build's tool_result", ids(evs))
	}
	again := e.finish("Finish(attempt 0) again", "c", "u1", 0, repo.Duplicate)
	wantStored(t, "Finish(attempt 0) again", again, res.Event)
	e.wantBegin("begin after the finish", "c", "u1", "hello", longLease, repo.TurnCompleted, 0)
}

// testFinishNotFound: a request neither begun as a turn nor streamed has
// nothing to finish: ErrNotFound, build is not called, nothing written.
func testFinishNotFound(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(userMsg("c", "u1", "hello"))
	e.chunk("c", "u2", 0, 0, "another request's chunk")
	called := false
	for _, k := range []struct{ conv, urid string }{{"c", "u1"}, {"c", "nope"}, {"other", "u2"}} {
		_, err := e.r.Finish(e.ctx, k.conv, k.urid, 0, func(chunks []events.Event) ([]events.Event, error) {
			called = true
			return fold(chunks)
		})
		if !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("Finish(%q, %q, attempt 0) with no turn and no chunks: %v, want ErrNotFound", k.conv, k.urid, err)
		}
	}
	if called {
		t.Errorf("Finish with nothing to finish called build")
	}
	e.wantAllLen(2)
}

// FailTurn.

// testFailRecorded: a failure is a turn_failed event; the failed attempt
// holds nothing any more and the next begin takes over at once,
// reporting the error.
func testFailRecorded(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.wantBegin("begin", "c", "u1", "hello", longLease, repo.TurnStarted, 1)
	e.chunk("c", "u1", 1, 0, "half")
	n := len(e.all(0))
	if err := e.r.FailTurn(e.ctx, "c", "u1", 1, "model timed out"); err != nil {
		t.Fatalf("FailTurn: %v", err)
	}
	e.wantAllLen(n + 1)
	ev, err := e.r.ByRequestID(e.ctx, "c", repo.FailureRequestID("u1", 1))
	if err != nil {
		t.Fatalf("ByRequestID(%q): %v", repo.FailureRequestID("u1", 1), err)
	}
	if ev.Type != events.TypeTurnFailed {
		t.Errorf("failure event type %q, want %q", ev.Type, events.TypeTurnFailed)
	}
	if msg, _ := ev.ExtraString("error"); msg != "model timed out" {
		t.Errorf("failure event extra.error %q, want %q", msg, "model timed out")
	}
	if u, _ := ev.ExtraString("user_request_id"); u != "u1" {
		t.Errorf("failure event extra.user_request_id %q, want u1", u)
	}
	if a, _ := ev.ExtraInt("attempt"); a != 1 {
		t.Errorf("failure event extra.attempt %d, want 1", a)
	}
	e.wantStaleChunk("chunk of the failed attempt", compact.Chunk("c", "u1", 1, 1, "more"), 1, "failed")
	_, err = e.r.Finish(e.ctx, "c", "u1", 1, fold)
	wantStale(t, "Finish of the failed attempt", err, "c", "u1", 1, 1, "failed")
	_, err = e.r.Heartbeat(e.ctx, "c", "u1", 1)
	wantStale(t, "Heartbeat of the failed attempt", err, "c", "u1", 1, 1, "failed")

	st := e.wantBegin("begin after the failure (lease not lapsed)", "c", "u1", "hello", longLease, repo.TurnStarted, 2)
	if st.LastError != "model timed out" {
		t.Errorf("begin after the failure: LastError %q, want %q", st.LastError, "model timed out")
	}
	e.chunk("c", "u1", 2, 0, "whole")
	msg := e.finish("finish of attempt 2", "c", "u1", 2, repo.Appended)
	wantReply(t, "finish of attempt 2", msg, "c", "u1", "whole")
}

// testFailEmpty: a failure without a message releases the turn and
// writes nothing.
func testFailEmpty(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.wantBegin("begin", "c", "u1", "hello", longLease, repo.TurnStarted, 1)
	n := len(e.all(0))
	if err := e.r.FailTurn(e.ctx, "c", "u1", 1, ""); err != nil {
		t.Fatalf("FailTurn without a message: %v", err)
	}
	e.wantAllLen(n)
	e.wantHead("c", 1)
	if _, err := e.r.ByRequestID(e.ctx, "c", repo.FailureRequestID("u1", 1)); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("ByRequestID of the failure: %v, want ErrNotFound", err)
	}
	e.wantBegin("begin after the release", "c", "u1", "hello", longLease, repo.TurnStarted, 2)
}

// testFailStale: only the holder can fail its turn.
func testFailStale(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.takeOver("c", "u1", "hello", nil)
	n := len(e.all(0))
	err := e.r.FailTurn(e.ctx, "c", "u1", 1, "late failure")
	wantStale(t, "FailTurn of attempt 1 after the take-over", err, "c", "u1", 1, 2, "")
	e.wantAllLen(n)
	if err := e.r.FailTurn(e.ctx, "c", "nope", 1, "x"); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("FailTurn of a turn never begun: %v, want ErrNotFound", err)
	}
	e.wantAllLen(n)
	e.wantBegin("begin after the refused failure", "c", "u1", "hello", longLease, repo.TurnInFlight, 2)
}

// Streams.

// testStreamsIdle: Streams lists the open streams whose last chunk is
// older than idleSince and whose holder's lease, if any, has expired; no
// finished, fresher or live one.
func testStreamsIdle(t *testing.T, s *suite) {
	e := s.fresh(t)
	// Open, without a turn.
	e.appendNew(userMsg("c", "plain", "hi"))
	e.chunk("c", "plain", 0, 0, "a")
	plainLast := e.chunk("c", "plain", 0, 1, "b")
	// Open, as a turn whose lease lapses below.
	e.wantBegin("begin", "d", "turn", "hi", shortLease, repo.TurnStarted, 1)
	turnLast := e.chunk("d", "turn", 1, 0, "a")
	// A chunk before the cut and one after: fresh by its newest chunk.
	e.wantBegin("begin", "c", "mixed", "hi", shortLease, repo.TurnStarted, 1)
	e.chunk("c", "mixed", 1, 0, "a")
	// Open, as a turn whose holder's lease is live: not idle.
	e.wantBegin("begin", "c", "live", "hi", longLease, repo.TurnStarted, 1)
	e.chunk("c", "live", 1, 0, "a")
	// Finished.
	e.wantBegin("begin", "c", "done", "hi", shortLease, repo.TurnStarted, 1)
	e.chunk("c", "done", 1, 0, "a")
	e.finish("finish", "c", "done", 1, repo.Appended)
	e.chunk("c", "done0", 0, 0, "a")
	e.finish("finish", "c", "done0", 0, repo.Appended)
	// Begun, no chunk: not a stream.
	e.wantBegin("begin", "c", "nochunk", "hi", shortLease, repo.TurnStarted, 1)

	// Past the lapse, and past the resolution of stream times, so the
	// newer chunks below are recorded.
	time.Sleep(max(lapse, repo.StreamTimeResolution+100*time.Millisecond))
	cut := time.Now()
	time.Sleep(5 * time.Millisecond)
	// Fresh: its only chunk is newer than cut.
	e.chunk("c", "fresh", 0, 0, "a")
	e.chunk("c", "mixed", 1, 1, "b")

	type key struct{ conv, urid string }
	list := func(idleSince time.Time) map[key]repo.Stream {
		t.Helper()
		got, err := e.r.Streams(e.ctx, idleSince)
		if err != nil {
			t.Fatalf("Streams(%s): %v", idleSince.Format(time.RFC3339Nano), err)
		}
		m := map[key]repo.Stream{}
		for _, st := range got {
			k := key{st.ConversationID, st.UserRequestID}
			if _, dup := m[k]; dup {
				t.Errorf("Streams lists %v twice", k)
			}
			m[k] = st
		}
		return m
	}
	got := list(cut)
	if len(got) != 2 {
		t.Errorf("Streams(cut) = %v, want the two open streams idle since before cut", got)
	}
	if st, ok := got[key{"c", "plain"}]; !ok {
		t.Errorf("Streams(cut) misses the open stream without a turn")
	} else if st.Attempt != 0 || !nearChunk(st.LastChunkAt, plainLast.CreatedAt) {
		t.Errorf("Streams(cut): plain stream attempt %d last chunk at %s, want attempt 0, %s", st.Attempt, st.LastChunkAt.Format(time.RFC3339Nano), plainLast.CreatedAt.Format(time.RFC3339Nano))
	}
	if st, ok := got[key{"d", "turn"}]; !ok {
		t.Errorf("Streams(cut) misses the open stream of a turn whose lease lapsed")
	} else if st.Attempt != 1 || !nearChunk(st.LastChunkAt, turnLast.CreatedAt) {
		t.Errorf("Streams(cut): turn stream attempt %d last chunk at %s, want attempt 1, %s", st.Attempt, st.LastChunkAt.Format(time.RFC3339Nano), turnLast.CreatedAt.Format(time.RFC3339Nano))
	}

	later := list(time.Now().Add(time.Hour))
	for _, k := range []key{{"c", "plain"}, {"d", "turn"}, {"c", "fresh"}, {"c", "mixed"}} {
		if _, ok := later[k]; !ok {
			t.Errorf("Streams(now + 1h) misses the open stream %v", k)
		}
	}
	if len(later) != 4 {
		t.Errorf("Streams(now + 1h) = %v, want the 4 open streams (finished ones, live turns and turns without chunks are not listed)", later)
	}
	if early := list(cut.Add(-time.Hour)); len(early) != 0 {
		t.Errorf("Streams(cut - 1h) = %v, want none", early)
	}
}

// nearChunk reports whether a stream's recorded time is its newest chunk's
// time, or earlier by less than repo.StreamTimeResolution.
func nearChunk(recorded, newest time.Time) bool {
	return !recorded.After(newest) && newest.Sub(recorded) < repo.StreamTimeResolution
}
