package repotest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

var batchCases = []subCase{
	{"OK", testBatchOK},
	{"AtomicInvalid", testBatchAtomicInvalid},
	{"AtomicConflict", testBatchAtomicConflict},
	{"Duplicates", testBatchDuplicates},
	{"DuplicateWithinBatch", testBatchWithin},
	{"Retry", testBatchRetry},
	{"ExpectedAllStored", testBatchExpectedAllStored},
	{"ExpectedNoneStored", testBatchExpectedNoneStored},
	{"ExpectedPartiallyStored", testBatchExpectedPartial},
	{"ExpectedTwoConversations", testBatchExpectedTwoConvs},
}

// wantBatchErr checks err is a *repo.BatchError at index whose cause
// matches target.
func wantBatchErr(t testing.TB, what string, err error, index int, target error) {
	t.Helper()
	var be *repo.BatchError
	switch {
	case err == nil:
		t.Errorf("%s: no error, want a *repo.BatchError at index %d matching %v", what, index, target)
	case !errors.As(err, &be):
		t.Errorf("%s: error %v (%T) is not a *repo.BatchError", what, err, err)
	case be.Index != index:
		t.Errorf("%s: BatchError.Index = %d, want %d (%v)", what, be.Index, index, err)
	}
	if err != nil && !errors.Is(err, target) {
		t.Errorf("%s: error %v does not match %v", what, err, target)
	}
}

// wantResults checks the outcomes and seqs of a batch against want,
// "A3" meaning appended at seq 3 and "D1" a duplicate of seq 1.
func wantResults(t testing.TB, what string, res []repo.Result, sent []events.Event, want ...string) {
	t.Helper()
	if len(res) != len(want) {
		t.Fatalf("%s: %d results, want %d", what, len(res), len(want))
	}
	for i, r := range res {
		got := fmt.Sprintf("%c%d", r.Outcome.String()[0]-'a'+'A', r.Event.Seq)
		if got != want[i] {
			t.Errorf("%s: result %d is %v at seq %d, want %s", what, i, r.Outcome, r.Event.Seq, want[i])
		}
		if r.Event.ConversationID != sent[i].ConversationID {
			t.Errorf("%s: result %d in conversation %q, want %q", what, i, r.Event.ConversationID, sent[i].ConversationID)
		}
	}
}

func testBatchOK(t *testing.T, s *suite) {
	e := s.fresh(t)
	sent := []events.Event{
		userMsg("a", "r1", "a1"),
		userMsg("b", "r1", "b1"),
		assistantMsg("a", "r2", "a2"),
		userMsg("b", "", "b2"),
		fullEvent("a", "r3"),
	}
	res, err := e.r.AppendBatch(e.ctx, sent, repo.AppendOptions{})
	if err != nil {
		t.Fatalf("AppendBatch: %v", err)
	}
	wantResults(t, "AppendBatch", res, sent, "A1", "A1", "A2", "A2", "A3")
	var lastPos int64
	seen := map[string]bool{}
	for i, r := range res {
		wantPayload(t, fmt.Sprintf("result %d", i), r.Event, sent[i])
		wantULID(t, r.Event.ID)
		if seen[r.Event.ID] {
			t.Errorf("result %d: id %s used twice", i, r.Event.ID)
		}
		seen[r.Event.ID] = true
		if r.Event.Pos <= lastPos {
			t.Errorf("result %d: pos %d, want > %d (batch order)", i, r.Event.Pos, lastPos)
		}
		lastPos = r.Event.Pos
		if r.Event.CreatedAt.IsZero() || r.Event.SchemaVersion != events.CurrentSchemaVersion {
			t.Errorf("result %d: created_at %v schema_version %d", i, r.Event.CreatedAt, r.Event.SchemaVersion)
		}
	}
	all := e.all(0)
	if len(all) != len(res) {
		t.Fatalf("All yields %d events, want %d", len(all), len(res))
	}
	for i := range all {
		wantStored(t, fmt.Sprintf("All[%d]", i), all[i], res[i].Event)
	}
	// A second batch continues the seqs.
	more := []events.Event{userMsg("a", "r4", "a4"), userMsg("c", "r1", "c1")}
	res, err = e.r.AppendBatch(e.ctx, more, repo.AppendOptions{})
	if err != nil {
		t.Fatalf("second AppendBatch: %v", err)
	}
	wantResults(t, "second AppendBatch", res, more, "A4", "A1")
}

// testBatchAtomicInvalid: one invalid event fails the whole batch, which
// leaves no trace: its keys are still free afterwards.
func testBatchAtomicInvalid(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(userMsg("a", "r0", "before"))
	batch := []events.Event{
		userMsg("a", "r1", "one"),
		userMsg("b", "r1", "b one"),
		invalidMsg("a", "r2"),
		userMsg("a", "r3", "three"),
	}
	res, err := e.r.AppendBatch(e.ctx, batch, repo.AppendOptions{})
	wantBatchErr(t, "batch with an invalid event at 2", err, 2, events.ErrInvalid)
	if len(res) != 0 && err != nil {
		t.Logf("failed AppendBatch also returned %d results", len(res))
	}
	e.wantHead("a", 1)
	e.wantHead("b", 0)
	e.wantAllLen(1)
	if _, err := e.r.ByRequestID(e.ctx, "a", "r1"); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("ByRequestID of a failed batch's key: %v, want ErrNotFound", err)
	}

	batch[2] = userMsg("a", "r2", "two")
	res, err = e.r.AppendBatch(e.ctx, batch, repo.AppendOptions{})
	if err != nil {
		t.Fatalf("batch after the fix: %v", err)
	}
	wantResults(t, "batch after the fix", res, batch, "A2", "A1", "A3", "A4")
}

func testBatchAtomicConflict(t *testing.T, s *suite) {
	e := s.fresh(t)
	st := e.appendNew(userMsg("a", "r1", "original"))
	batch := []events.Event{
		userMsg("a", "r2", "two"),
		userMsg("b", "r1", "b one"),
		userMsg("a", "r1", "changed"),
		userMsg("a", "r3", "three"),
	}
	_, err := e.r.AppendBatch(e.ctx, batch, repo.AppendOptions{})
	wantBatchErr(t, "batch with a conflicting key at 2", err, 2, repo.ErrIdempotencyConflict)
	if err != nil {
		e.checkConflictErr("batch conflict", err, "r1", st)
	}
	e.wantHead("a", 1)
	e.wantHead("b", 0)
	e.wantAllLen(1)
}

// testBatchDuplicates: events already stored are returned as duplicates,
// the others appended.
func testBatchDuplicates(t *testing.T, s *suite) {
	e := s.fresh(t)
	st := e.appendNew(userMsg("a", "r1", "one"))
	batch := []events.Event{
		userMsg("a", "r2", "two"),
		userMsg("a", "r1", "one"),
		userMsg("b", "r1", "other conversation"),
		userMsg("a", "r3", "three"),
	}
	res, err := e.r.AppendBatch(e.ctx, batch, repo.AppendOptions{})
	if err != nil {
		t.Fatalf("AppendBatch: %v", err)
	}
	wantResults(t, "AppendBatch", res, batch, "A2", "D1", "A1", "A3")
	wantStored(t, "duplicate in batch", res[1].Event, st)
	e.wantAllLen(4)
}

// testBatchWithin: an event repeated inside one batch is stored once; the
// same key with two payloads in one batch is a conflict.
func testBatchWithin(t *testing.T, s *suite) {
	e := s.fresh(t)
	batch := []events.Event{userMsg("a", "r1", "one"), userMsg("a", "r1", "one"), userMsg("a", "r2", "two")}
	res, err := e.r.AppendBatch(e.ctx, batch, repo.AppendOptions{})
	if err != nil {
		t.Fatalf("AppendBatch with a repeated event: %v", err)
	}
	wantResults(t, "AppendBatch with a repeated event", res, batch, "A1", "D1", "A2")
	wantStored(t, "repeat within the batch", res[1].Event, res[0].Event)

	batch = []events.Event{userMsg("a", "r3", "x"), userMsg("a", "r3", "y")}
	_, err = e.r.AppendBatch(e.ctx, batch, repo.AppendOptions{})
	wantBatchErr(t, "one key with two payloads in a batch", err, 1, repo.ErrIdempotencyConflict)
	e.wantHead("a", 2)
	e.wantAllLen(2)
}

// testBatchRetry: retrying a whole batch returns the stored events.
func testBatchRetry(t *testing.T, s *suite) {
	e := s.fresh(t)
	batch := []events.Event{userMsg("a", "r1", "one"), userMsg("b", "r1", "b"), assistantMsg("a", "r2", "two")}
	first, err := e.r.AppendBatch(e.ctx, batch, repo.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantResults(t, "first batch", first, batch, "A1", "A1", "A2")
	e.appendNew(userMsg("a", "r3", "later"))
	again, err := e.r.AppendBatch(e.ctx, batch, repo.AppendOptions{})
	if err != nil {
		t.Fatalf("retried batch: %v", err)
	}
	wantResults(t, "retried batch", again, batch, "D1", "D1", "D2")
	for i := range again {
		wantStored(t, fmt.Sprintf("retried batch, result %d", i), again[i].Event, first[i].Event)
	}
	e.wantAllLen(4)
}

func testBatchExpectedAllStored(t *testing.T, s *suite) {
	e := s.fresh(t)
	batch := []events.Event{userMsg("a", "r1", "one"), userMsg("a", "r2", "two")}
	first, err := e.r.AppendBatch(e.ctx, batch, expect(0))
	if err != nil {
		t.Fatalf("AppendBatch expecting 0: %v", err)
	}
	wantResults(t, "AppendBatch expecting 0", first, batch, "A1", "A2")
	e.appendNew(userMsg("a", "r3", "three"))
	// The retry's expectation is stale twice over; it is still a retry.
	for _, x := range []int64{0, 2, 3} {
		res, err := e.r.AppendBatch(e.ctx, batch, expect(x))
		if err != nil {
			t.Fatalf("retry expecting %d: %v, want duplicates", x, err)
		}
		wantResults(t, fmt.Sprintf("retry expecting %d", x), res, batch, "D1", "D2")
		for i := range res {
			wantStored(t, "retry", res[i].Event, first[i].Event)
		}
	}
	e.wantHead("a", 3)
	e.wantAllLen(3)
}

func testBatchExpectedNoneStored(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(userMsg("a", "r1", "one"))
	e.appendNew(userMsg("a", "r2", "two"))
	batch := []events.Event{userMsg("a", "r3", "three"), userMsg("a", "r4", "four")}
	for _, x := range []int64{0, 1, 3} {
		_, err := e.r.AppendBatch(e.ctx, batch, expect(x))
		wantSeqConflict(t, fmt.Sprintf("batch expecting %d with head 2", x), err, "a", x, 2)
	}
	e.wantHead("a", 2)
	e.wantAllLen(2)
	res, err := e.r.AppendBatch(e.ctx, batch, expect(2))
	if err != nil {
		t.Fatalf("batch expecting 2: %v", err)
	}
	wantResults(t, "batch expecting 2", res, batch, "A3", "A4")
	res, err = e.r.AppendBatch(e.ctx, []events.Event{userMsg("new", "r1", "x")}, expect(0))
	if err != nil {
		t.Fatalf("batch expecting 0 on a new conversation: %v", err)
	}
	wantResults(t, "batch expecting 0 on a new conversation", res, []events.Event{userMsg("new", "", "")}, "A1")
}

func testBatchExpectedPartial(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(userMsg("a", "r1", "one"))
	e.appendNew(userMsg("a", "r2", "two"))
	for _, x := range []int64{1, 2} {
		batch := []events.Event{userMsg("a", "r2", "two"), userMsg("a", "r3", "three")}
		_, err := e.r.AppendBatch(e.ctx, batch, expect(x))
		wantErr(t, fmt.Sprintf("batch of a stored and a new event, expecting %d", x), err, repo.ErrPartiallyStored)
	}
	e.wantHead("a", 2)
	e.wantAllLen(2)
}

func testBatchExpectedTwoConvs(t *testing.T, s *suite) {
	e := s.fresh(t)
	batch := []events.Event{userMsg("a", "r1", "one"), userMsg("b", "r1", "one")}
	_, err := e.r.AppendBatch(e.ctx, batch, expect(0))
	wantErr(t, "batch over two conversations with an expected seq", err, events.ErrInvalid)
	e.wantAllLen(0)
}

var eachCases = []subCase{
	{"FailsAlone", testEachFailsAlone},
	{"InOrder", testEachInOrder},
	{"ExpectedNotAllowed", testEachExpected},
}

// testEachFailsAlone: in AppendEach an invalid or conflicting event fails
// on its own; the others are stored, duplicates answered as such.
func testEachFailsAlone(t *testing.T, s *suite) {
	e := s.fresh(t)
	st := e.appendNew(userMsg("a", "r0", "zero"))
	sent := []events.Event{
		userMsg("a", "r1", "one"),
		userMsg("b", "r1", "b one"),
		invalidMsg("a", "r2"),
		userMsg("a", "r0", "changed"),
		userMsg("a", "r0", "zero"),
		userMsg("a", "r3", "three"),
		userMsg("b", "", "b two"),
	}
	items := e.r.AppendEach(e.ctx, sent, repo.AppendOptions{})
	if len(items) != len(sent) {
		t.Fatalf("AppendEach returned %d items for %d events", len(items), len(sent))
	}
	want := []string{"A2", "A1", "invalid", "conflict", "D1", "A3", "A2"}
	for i, it := range items {
		switch want[i] {
		case "invalid":
			wantErr(t, fmt.Sprintf("item %d", i), it.Err, events.ErrInvalid)
		case "conflict":
			e.checkConflictErr(fmt.Sprintf("item %d", i), it.Err, "r0", st)
		default:
			if it.Err != nil {
				t.Errorf("item %d: %v, want %s", i, it.Err, want[i])
				continue
			}
			wantResults(t, fmt.Sprintf("item %d", i), []repo.Result{it.Result}, sent[i:i+1], want[i])
			wantPayload(t, fmt.Sprintf("item %d", i), it.Event, sent[i])
		}
	}
	wantStored(t, "item 4 (duplicate)", items[4].Event, st)
	e.wantHead("a", 3)
	e.wantHead("b", 2)
	e.wantAllLen(5)
}

// testEachInOrder: a long AppendEach keeps the input order, with
// consecutive seqs around the one failure.
func testEachInOrder(t *testing.T, s *suite) {
	e := s.fresh(t)
	const n, bad = 300, 117
	sent := make([]events.Event, n)
	for i := range sent {
		sent[i] = userMsg("c", fmt.Sprintf("r%03d", i), fmt.Sprintf("message %d", i))
	}
	sent[bad] = invalidMsg("c", "bad")
	items := e.r.AppendEach(e.ctx, sent, repo.AppendOptions{})
	if len(items) != n {
		t.Fatalf("AppendEach returned %d items for %d events", len(items), n)
	}
	next := int64(1)
	for i, it := range items {
		if i == bad {
			wantErr(t, "the invalid item", it.Err, events.ErrInvalid)
			continue
		}
		if it.Err != nil || it.Outcome != repo.Appended || it.Event.Seq != next {
			t.Errorf("item %d: %v, %v at seq %d; want appended at seq %d", i, it.Err, it.Outcome, it.Event.Seq, next)
		}
		next++
	}
	got := e.events("c", repo.Range{})
	if len(got) != n-1 {
		t.Fatalf("Events yields %d events, want %d", len(got), n-1)
	}
	j := 0
	for i := range sent {
		if i == bad {
			continue
		}
		if got[j].RequestID != sent[i].RequestID {
			t.Errorf("seq %d holds %q, want %q (input order)", got[j].Seq, got[j].RequestID, sent[i].RequestID)
		}
		j++
	}
}

// testEachExpected: AppendEach does not take an expected seq; given one,
// no event is written.
func testEachExpected(t *testing.T, s *suite) {
	e := s.fresh(t)
	sent := []events.Event{userMsg("a", "r1", "one"), userMsg("a", "r2", "two")}
	items := e.r.AppendEach(e.ctx, sent, expect(0))
	if len(items) != len(sent) {
		t.Fatalf("AppendEach returned %d items for %d events", len(items), len(sent))
	}
	for i, it := range items {
		if it.Err == nil {
			t.Errorf("AppendEach with an expected seq: item %d %v at seq %d, want an error", i, it.Outcome, it.Event.Seq)
		}
	}
	e.wantAllLen(0)
}

var keepSeqCases = []subCase{
	{"Import", testKeepSeqImport},
	{"Append", testKeepSeqAppend},
	{"Batch", testKeepSeqBatch},
	{"EachGap", testKeepSeqEachGap},
}

var keep = repo.AppendOptions{KeepSeq: true}

// testKeepSeqImport: an export of one repository imported into another
// keeps ids, seqs and created_at; importing it again adds nothing.
func testKeepSeqImport(t *testing.T, s *suite) {
	src := s.fresh(t)
	for i := range 6 {
		conv := []string{"a", "b"}[i%2]
		ev := userMsg(conv, fmt.Sprintf("r%d", i), fmt.Sprintf("message %d", i))
		if i%3 == 0 {
			ev.CreatedAt = time.Date(2024, 2, 29, 12, 0, 0, i+1, time.UTC)
		}
		src.appendNew(ev)
	}
	src.appendNew(fullEvent("a", "full"))
	src.appendNew(userMsg("a", "", "no key"))
	export := src.all(0)

	dst := s.fresh(t)
	dst.appendNew(userMsg("unrelated", "r0", "already here"))
	items := dst.r.AppendEach(dst.ctx, export, keep)
	if len(items) != len(export) {
		t.Fatalf("AppendEach returned %d items for %d events", len(items), len(export))
	}
	for i, it := range items {
		if it.Err != nil || it.Outcome != repo.Appended {
			t.Fatalf("import item %d (%s): %v %v", i, describe(export[i]), it.Outcome, it.Err)
		}
		want := export[i]
		want.Pos = it.Event.Pos // pos is the importing store's
		wantStored(t, fmt.Sprintf("import item %d", i), it.Event, want)
	}
	for _, conv := range []string{"a", "b"} {
		got := dst.events(conv, repo.Range{})
		var want []events.Event
		for _, ev := range export {
			if ev.ConversationID == conv {
				want = append(want, ev)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("conversation %s: %d events after import, want %d", conv, len(got), len(want))
		}
		for i := range got {
			w := want[i]
			w.Pos = got[i].Pos
			wantStored(t, fmt.Sprintf("imported %s#%d", conv, got[i].Seq), got[i], w)
		}
	}

	again := dst.r.AppendEach(dst.ctx, export, keep)
	for i, it := range again {
		if it.Err != nil || it.Outcome != repo.Duplicate {
			t.Errorf("re-import item %d: %v %v, want a duplicate", i, it.Outcome, it.Err)
			continue
		}
		wantStored(t, fmt.Sprintf("re-import item %d", i), it.Event, items[i].Event)
	}
	dst.wantAllLen(len(export) + 1)

	// New appends continue after the imported seqs.
	if st := dst.appendNew(userMsg("a", "after", "after import")); st.Seq != 6 {
		t.Errorf("append after import: seq %d, want 6", st.Seq)
	}
}

func imported(conv string, seq int64, text string) events.Event {
	ev := userMsg(conv, fmt.Sprintf("imp-%d", seq), text)
	ev.ID = events.NewID(time.Now())
	ev.Seq = seq
	ev.CreatedAt = time.Date(2023, 5, 6, 7, 8, 9, int(seq), time.UTC)
	return ev
}

// testKeepSeqAppend: with KeepSeq an event's seq must be head+1; an id
// already stored is a duplicate.
func testKeepSeqAppend(t *testing.T, s *suite) {
	e := s.fresh(t)
	one := imported("c", 1, "one")
	st := e.mustAppend(one, keep, repo.Appended)
	if st.ID != one.ID || st.Seq != 1 || !st.CreatedAt.Equal(one.CreatedAt) {
		t.Errorf("imported event stored as id %s seq %d created_at %v; want %s, 1, %v", st.ID, st.Seq, st.CreatedAt, one.ID, one.CreatedAt)
	}
	e.wantDuplicate("re-import", one, keep, st)

	_, err := e.r.Append(e.ctx, imported("c", 3, "gap"), keep)
	wantErr(t, "import of seq 3 with head 1", err, repo.ErrSeqConflict)
	var se *repo.SeqConflictError
	if errors.As(err, &se) && (se.Actual != 1 || se.ConversationID != "c") {
		t.Errorf("import of seq 3 with head 1: %+v, want Actual 1 in conversation c", *se)
	}
	taken := imported("c", 1, "seq taken")
	taken.RequestID = "other key"
	_, err = e.r.Append(e.ctx, taken, keep)
	wantErr(t, "import of a new event at the taken seq 1", err, repo.ErrSeqConflict)
	_, err = e.r.Append(e.ctx, imported("d", 2, "first is 2"), keep)
	wantErr(t, "import of seq 2 into an empty conversation", err, repo.ErrSeqConflict)
	e.wantHead("c", 1)
	e.wantHead("d", 0)
	e.wantAllLen(1)

	two := e.mustAppend(imported("c", 2, "two"), keep, repo.Appended)
	if two.Seq != 2 {
		t.Errorf("import of seq 2: stored at %d", two.Seq)
	}
}

func testKeepSeqBatch(t *testing.T, s *suite) {
	e := s.fresh(t)
	batch := []events.Event{imported("c", 1, "one"), imported("c", 2, "two"), imported("d", 1, "d one"), imported("c", 3, "three")}
	res, err := e.r.AppendBatch(e.ctx, batch, keep)
	if err != nil {
		t.Fatalf("import batch: %v", err)
	}
	wantResults(t, "import batch", res, batch, "A1", "A2", "A1", "A3")
	for i := range res {
		if res[i].Event.ID != batch[i].ID {
			t.Errorf("result %d: id %s, want %s", i, res[i].Event.ID, batch[i].ID)
		}
	}
	res, err = e.r.AppendBatch(e.ctx, batch, keep)
	if err != nil {
		t.Fatalf("re-import batch: %v", err)
	}
	wantResults(t, "re-import batch", res, batch, "D1", "D2", "D1", "D3")

	gap := []events.Event{imported("c", 4, "four"), imported("c", 6, "six"), imported("c", 7, "seven")}
	_, err = e.r.AppendBatch(e.ctx, gap, keep)
	wantBatchErr(t, "import batch with a gap at 1", err, 1, repo.ErrSeqConflict)
	e.wantHead("c", 3)
	e.wantAllLen(4)
}

// testKeepSeqEachGap: in AppendEach an event out of sequence fails alone.
func testKeepSeqEachGap(t *testing.T, s *suite) {
	e := s.fresh(t)
	sent := []events.Event{imported("c", 1, "one"), imported("c", 2, "two"), imported("c", 4, "four"), imported("c", 3, "three")}
	items := e.r.AppendEach(e.ctx, sent, keep)
	if len(items) != len(sent) {
		t.Fatalf("AppendEach returned %d items for %d events", len(items), len(sent))
	}
	for i, want := range []int64{1, 2, 0, 3} {
		it := items[i]
		if want == 0 {
			wantErr(t, "seq 4 after head 2", it.Err, repo.ErrSeqConflict)
			continue
		}
		if it.Err != nil || it.Outcome != repo.Appended || it.Event.Seq != want || it.Event.ID != sent[i].ID {
			t.Errorf("item %d: %v %v seq %d id %s; want appended at seq %d with id %s", i, it.Err, it.Outcome, it.Event.Seq, it.Event.ID, want, sent[i].ID)
		}
	}
	e.wantHead("c", 3)
}
