package repotest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

var appendCases = []subCase{
	{"OK", testAppendOK},
	{"CreatedAtKept", testAppendCreatedAtKept},
	{"IDKept", testAppendIDKept},
	{"RoundTrip", testAppendRoundTrip},
	{"SchemaVersion", testAppendSchemaVersion},
	{"NoKeyNoDedupe", testAppendNoKey},
}

// testAppendOK: ids are minted ULIDs, seq counts from 1 per conversation,
// pos grows across conversations, created_at and schema_version are set,
// and the events read back are the ones returned.
func testAppendOK(t *testing.T, s *suite) {
	e := s.fresh(t)
	sent := []events.Event{
		userMsg("a", "r1", "one"),
		userMsg("b", "r1", "b one"),
		assistantMsg("a", "r2", "two"),
		userMsg("a", "", "three, no key"),
		assistantMsg("b", "", "b two"),
	}
	wantSeq := []int64{1, 1, 2, 3, 2}
	var got []events.Event
	seen := map[string]bool{}
	var lastPos int64
	for i, ev := range sent {
		st := e.appendNew(ev)
		got = append(got, st)
		wantPayload(t, fmt.Sprintf("Append #%d", i), st, ev)
		if st.Seq != wantSeq[i] {
			t.Errorf("Append #%d (%s): seq %d, want %d", i, describe(ev), st.Seq, wantSeq[i])
		}
		if st.Pos <= lastPos {
			t.Errorf("Append #%d: pos %d, want > %d (pos grows across conversations)", i, st.Pos, lastPos)
		}
		lastPos = st.Pos
		wantULID(t, st.ID)
		if seen[st.ID] {
			t.Errorf("Append #%d: id %s minted twice", i, st.ID)
		}
		seen[st.ID] = true
		if st.CreatedAt.IsZero() {
			t.Errorf("Append #%d: created_at not set", i)
		}
		if st.SchemaVersion != events.CurrentSchemaVersion {
			t.Errorf("Append #%d: schema_version %d, want %d", i, st.SchemaVersion, events.CurrentSchemaVersion)
		}
	}
	e.wantHead("a", 3)
	e.wantHead("b", 2)
	all := e.all(0)
	if len(all) != len(got) {
		t.Fatalf("All(0) yields %d events, want %d", len(all), len(got))
	}
	for i := range got {
		wantStored(t, fmt.Sprintf("All(0)[%d]", i), all[i], got[i])
	}
	a := e.events("a", repo.Range{})
	if len(a) != 3 {
		t.Fatalf(`Events("a") yields %d events, want 3`, len(a))
	}
	for i, want := range []events.Event{got[0], got[2], got[3]} {
		wantStored(t, fmt.Sprintf(`Events("a")[%d]`, i), a[i], want)
	}
}

// testAppendCreatedAtKept: a given created_at is stored to the nanosecond.
func testAppendCreatedAtKept(t *testing.T, s *suite) {
	e := s.fresh(t)
	times := []time.Time{
		time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("IST", 5*3600+1800)),
		time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		time.Unix(0, 1),
		time.Date(1700, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2262, 1, 1, 0, 0, 0, 999999999, time.UTC),
	}
	var stored []events.Event
	for i, ts := range times {
		ev := userMsg("c", fmt.Sprintf("r%d", i), "hi")
		ev.CreatedAt = ts
		st := e.appendNew(ev)
		if !st.CreatedAt.Equal(ts) {
			t.Errorf("Append with created_at %s returned %s", ts.Format(time.RFC3339Nano), st.CreatedAt.Format(time.RFC3339Nano))
		}
		stored = append(stored, st)
	}
	evs := e.events("c", repo.Range{})
	if len(evs) != len(times) {
		t.Fatalf("Events yields %d events, want %d", len(evs), len(times))
	}
	for i, got := range evs {
		if !got.CreatedAt.Equal(times[i]) {
			t.Errorf("Events: seq %d created_at %s, want %s", got.Seq, got.CreatedAt.Format(time.RFC3339Nano), times[i].Format(time.RFC3339Nano))
		}
		wantStored(t, "Events", got, stored[i])
	}
}

// testAppendIDKept: a caller-supplied id is kept (imports keep theirs).
func testAppendIDKept(t *testing.T, s *suite) {
	e := s.fresh(t)
	given := []string{events.NewID(time.Now()), "import-0001", strings.Repeat("x", events.MaxIDBytes)}
	for i, id := range given {
		ev := userMsg("c", "", fmt.Sprintf("msg %d", i))
		ev.ID = id
		if st := e.appendNew(ev); st.ID != id {
			t.Errorf("Append with id %q stored id %q", id, st.ID)
		}
	}
	evs := e.events("c", repo.Range{})
	if len(evs) != len(given) {
		t.Fatalf("Events yields %d events, want %d", len(evs), len(given))
	}
	for i, got := range evs {
		if got.ID != given[i] {
			t.Errorf("Events: seq %d has id %q, want %q", got.Seq, got.ID, given[i])
		}
	}
}

// testAppendRoundTrip: every field of an event survives storage, on every
// read path.
func testAppendRoundTrip(t *testing.T, s *suite) {
	e := s.fresh(t)
	sent := fullEvent("c", "r1")
	sent.CreatedAt = time.Date(2025, 12, 31, 23, 59, 59, 999999999, time.UTC)
	st := e.appendNew(sent)
	wantPayload(t, "Append", st, sent)

	got := e.events("c", repo.Range{})
	if len(got) != 1 {
		t.Fatalf("Events yields %d events, want 1", len(got))
	}
	wantStored(t, "Events", got[0], st)
	wantPayload(t, "Events", got[0], sent)
	if got[0].Content == nil || !got[0].Content.IsParts() || len(got[0].Content.Parts) != 2 {
		t.Errorf("Events: content %+v, want 2 parts", got[0].Content)
	}

	all := e.all(0)
	if len(all) != 1 {
		t.Fatalf("All yields %d events, want 1", len(all))
	}
	wantStored(t, "All", all[0], st)

	last, err := e.r.Last(e.ctx, "c", 1)
	if err != nil || len(last) != 1 {
		t.Fatalf("Last(1) = %d events, %v; want 1", len(last), err)
	}
	wantStored(t, "Last", last[0], st)

	byKey, err := e.r.ByRequestID(e.ctx, "c", "r1")
	if err != nil {
		t.Fatalf("ByRequestID: %v", err)
	}
	wantStored(t, "ByRequestID", byKey, st)
}

// testAppendSchemaVersion: the store writes the current schema version.
func testAppendSchemaVersion(t *testing.T, s *suite) {
	e := s.fresh(t)
	for i, v := range []int{0, 1, events.CurrentSchemaVersion} {
		ev := userMsg("c", fmt.Sprintf("r%d", i), "hi")
		ev.SchemaVersion = v
		st := e.appendNew(ev)
		if st.SchemaVersion != events.CurrentSchemaVersion {
			t.Errorf("Append with schema_version %d: stored %d, want %d", v, st.SchemaVersion, events.CurrentSchemaVersion)
		}
	}
	for _, got := range e.events("c", repo.Range{}) {
		if got.SchemaVersion != events.CurrentSchemaVersion {
			t.Errorf("Events: seq %d has schema_version %d, want %d", got.Seq, got.SchemaVersion, events.CurrentSchemaVersion)
		}
	}
}

// testAppendNoKey: without a request_id or id there is nothing to dedupe
// on: the same event appended twice is stored twice.
func testAppendNoKey(t *testing.T, s *suite) {
	e := s.fresh(t)
	ev := userMsg("c", "", "same")
	a := e.appendNew(ev)
	b := e.appendNew(ev)
	if a.ID == b.ID || b.Seq != 2 {
		t.Errorf("second keyless append: id %s seq %d (first id %s): want a new event at seq 2", b.ID, b.Seq, a.ID)
	}
	e.wantHead("c", 2)
}

var duplicateCases = []subCase{
	{"RequestID", testDupRequestID},
	{"EventID", testDupEventID},
	{"OtherCreatedAt", testDupOtherCreatedAt},
	{"OtherID", testDupOtherID},
	{"EquivalentEncoding", testDupEquivalent},
	{"AfterLaterEvents", testDupAfterLater},
}

// wantDuplicate appends ev, which must be answered as a duplicate of
// stored, and checks that nothing was written.
func (e *env) wantDuplicate(what string, ev events.Event, opts repo.AppendOptions, stored events.Event) {
	e.t.Helper()
	before := e.head(stored.ConversationID)
	n := len(e.all(0))
	res, err := e.r.Append(e.ctx, ev, opts)
	if err != nil {
		e.t.Fatalf("%s: Append: %v, want a duplicate", what, err)
	}
	if res.Outcome != repo.Duplicate || !res.Duplicate() {
		e.t.Errorf("%s: outcome %v, want %v", what, res.Outcome, repo.Duplicate)
	}
	wantStored(e.t, what, res.Event, stored)
	e.wantHead(stored.ConversationID, before)
	e.wantAllLen(n)
}

func testDupRequestID(t *testing.T, s *suite) {
	e := s.fresh(t)
	ev := userMsg("c", "r1", "hello")
	st := e.appendNew(ev)
	e.wantDuplicate("retry", ev, repo.AppendOptions{}, st)
	e.wantDuplicate("second retry", ev, repo.AppendOptions{}, st)
	got, err := e.r.ByRequestID(e.ctx, "c", "r1")
	if err != nil {
		t.Fatal(err)
	}
	wantStored(t, "ByRequestID", got, st)
}

// testDupEventID: a caller-supplied event id is a key too.
func testDupEventID(t *testing.T, s *suite) {
	e := s.fresh(t)
	ev := userMsg("c", "", "hello")
	ev.ID = events.NewID(time.Now())
	st := e.appendNew(ev)
	if st.ID != ev.ID {
		t.Fatalf("stored id %s, want the given %s", st.ID, ev.ID)
	}
	e.wantDuplicate("retry by id", ev, repo.AppendOptions{}, st)

	// With both keys.
	ev2 := userMsg("c", "r2", "hello again")
	ev2.ID = events.NewID(time.Now())
	st2 := e.appendNew(ev2)
	e.wantDuplicate("retry by id and request_id", ev2, repo.AppendOptions{}, st2)
}

// testDupOtherCreatedAt: created_at is not part of the payload: a retry
// made later is still a duplicate and gets the original time back.
func testDupOtherCreatedAt(t *testing.T, s *suite) {
	e := s.fresh(t)
	ev := userMsg("c", "r1", "hello")
	st := e.appendNew(ev)
	retry := ev
	retry.CreatedAt = st.CreatedAt.Add(time.Hour + time.Nanosecond)
	e.wantDuplicate("retry with another created_at", retry, repo.AppendOptions{}, st)

	ev2 := userMsg("c", "r2", "hello")
	ev2.CreatedAt = time.Date(2025, 1, 1, 0, 0, 0, 1, time.UTC)
	st2 := e.appendNew(ev2)
	retry2 := ev2
	retry2.CreatedAt = time.Time{}
	e.wantDuplicate("retry without created_at", retry2, repo.AppendOptions{}, st2)
}

// testDupOtherID: a retry that carries a new event id (a client minting
// ids per attempt) is still a duplicate by request_id; its id is not stored.
func testDupOtherID(t *testing.T, s *suite) {
	e := s.fresh(t)
	ev := userMsg("c", "r1", "hello")
	st := e.appendNew(ev)
	retry := ev
	retry.ID = events.NewID(time.Now())
	e.wantDuplicate("retry with another id", retry, repo.AppendOptions{}, st)
	for _, got := range e.all(0) {
		if got.ID == retry.ID {
			t.Errorf("the retry's id %s was stored", retry.ID)
		}
	}
}

// testDupEquivalent: the implied role spelled out and an older schema
// version are the same request.
func testDupEquivalent(t *testing.T, s *suite) {
	e := s.fresh(t)
	ev := userMsg("c", "r1", "hello")
	st := e.appendNew(ev)
	retry := ev.Clone()
	retry.Role = events.RoleUser
	retry.SchemaVersion = 1
	e.wantDuplicate("retry with explicit role and schema_version 1", retry, repo.AppendOptions{}, st)
}

// testDupAfterLater: a retry of an old event, after others were appended,
// returns the old one.
func testDupAfterLater(t *testing.T, s *suite) {
	e := s.fresh(t)
	first := e.appendNew(userMsg("c", "r1", "one"))
	e.appendNew(userMsg("c", "r2", "two"))
	e.appendNew(assistantMsg("c", "r3", "three"))
	e.appendNew(userMsg("other", "r1", "elsewhere"))
	e.wantDuplicate("retry of seq 1", userMsg("c", "r1", "one"), repo.AppendOptions{}, first)
}

var conflictCases = []subCase{
	{"Content", testConflictContent},
	{"TypeAndExtra", testConflictTypeExtra},
	{"EventID", testConflictEventID},
	{"OtherConversation", testConflictOtherConversation},
	{"EventIDOtherConversation", testConflictEventIDOtherConversation},
	{"EventIDOtherRequest", testConflictEventIDOtherRequest},
	{"Repeated", testConflictRepeated},
}

// wantConflict appends ev, which must fail with an idempotency conflict
// on key carrying stored, and checks nothing was written.
func (e *env) wantConflict(what string, ev events.Event, key string, stored events.Event) {
	e.t.Helper()
	before := e.head(ev.ConversationID)
	n := len(e.all(0))
	res, err := e.r.Append(e.ctx, ev, repo.AppendOptions{})
	e.checkConflictErr(what, err, key, stored)
	if err == nil {
		e.t.Errorf("%s: got outcome %v (seq %d), want a conflict", what, res.Outcome, res.Event.Seq)
	}
	e.wantHead(ev.ConversationID, before)
	e.wantAllLen(n)
}

func (e *env) checkConflictErr(what string, err error, key string, stored events.Event) {
	e.t.Helper()
	if !errors.Is(err, repo.ErrIdempotencyConflict) {
		e.t.Errorf("%s: error %v, want ErrIdempotencyConflict", what, err)
		return
	}
	var ce *repo.ConflictError
	if !errors.As(err, &ce) {
		e.t.Errorf("%s: error %v (%T) is not a *repo.ConflictError", what, err, err)
		return
	}
	if ce.Key != key {
		e.t.Errorf("%s: ConflictError.Key = %q, want %q", what, ce.Key, key)
	}
	wantStored(e.t, what+": ConflictError.Stored", ce.Stored, stored)
}

func testConflictContent(t *testing.T, s *suite) {
	e := s.fresh(t)
	st := e.appendNew(userMsg("c", "r1", "hello"))
	e.wantConflict("same key, other content", userMsg("c", "r1", "hello!"), "r1", st)
}

func testConflictTypeExtra(t *testing.T, s *suite) {
	e := s.fresh(t)
	ev := userMsg("c", "r1", "hello")
	ev.Extra = map[string]any{"source": "web"}
	st := e.appendNew(ev)

	other := ev.Clone()
	other.Type = events.TypeSystemUpdate
	other.Role = ""
	e.wantConflict("same key, other type", other, "r1", st)

	other = ev.Clone()
	other.Extra["source"] = "cli"
	e.wantConflict("same key, other extra", other, "r1", st)

	other = ev.Clone()
	other.Extra = nil
	e.wantConflict("same key, extra dropped", other, "r1", st)

	other = ev.Clone()
	other.Model = "gpt-test"
	e.wantConflict("same key, model added", other, "r1", st)
}

// testConflictEventID: an event id reused with another payload conflicts
// under the key "id:"+id.
func testConflictEventID(t *testing.T, s *suite) {
	e := s.fresh(t)
	ev := userMsg("c", "", "hello")
	ev.ID = events.NewID(time.Now())
	st := e.appendNew(ev)
	other := userMsg("c", "", "something else")
	other.ID = ev.ID
	e.wantConflict("same id, other content", other, "id:"+ev.ID, st)
}

// testConflictOtherConversation: keys are per conversation.
func testConflictOtherConversation(t *testing.T, s *suite) {
	e := s.fresh(t)
	a := e.appendNew(userMsg("a", "r1", "hello"))
	b := e.appendNew(userMsg("b", "r1", "something else"))
	c := e.appendNew(userMsg("c", "r1", "hello"))
	for _, st := range []events.Event{a, b, c} {
		if st.Seq != 1 {
			t.Errorf("conversation %s: seq %d, want 1", st.ConversationID, st.Seq)
		}
		got, err := e.r.ByRequestID(e.ctx, st.ConversationID, "r1")
		if err != nil {
			t.Fatalf("ByRequestID(%q, r1): %v", st.ConversationID, err)
		}
		wantStored(t, "ByRequestID "+st.ConversationID, got, st)
	}
}

// testConflictEventIDOtherConversation: event ids are unique across the
// log, so an id taken in one conversation is a conflict in another.
func testConflictEventIDOtherConversation(t *testing.T, s *suite) {
	e := s.fresh(t)
	ev := userMsg("a", "", "hello")
	ev.ID = events.NewID(time.Now())
	st := e.appendNew(ev)
	other := ev
	other.ConversationID = "b"
	e.wantConflict("id reused in another conversation", other, "id:"+ev.ID, st)
	e.wantHead("b", 0)
	e.wantAllLen(1)
}

// testConflictEventIDOtherRequest: an id stored under one request_id (or
// none) reused with another request_id is a conflict, not a duplicate:
// acknowledging it would leave the new key unstored.
func testConflictEventIDOtherRequest(t *testing.T, s *suite) {
	e := s.fresh(t)
	ev := userMsg("c", "r1", "hello")
	ev.ID = events.NewID(time.Now())
	st := e.appendNew(ev)
	other := ev
	other.RequestID = "r2"
	e.wantConflict("id reused with another request_id", other, "id:"+ev.ID, st)
	if _, err := e.r.ByRequestID(e.ctx, "c", "r2"); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("ByRequestID(r2) after the conflict: %v, want ErrNotFound", err)
	}
	e.wantAllLen(1)
}

// testConflictRepeated: a conflict changes nothing: it repeats, and the
// original payload is still a duplicate.
func testConflictRepeated(t *testing.T, s *suite) {
	e := s.fresh(t)
	ev := userMsg("c", "r1", "hello")
	st := e.appendNew(ev)
	bad := userMsg("c", "r1", "bye")
	e.wantConflict("first", bad, "r1", st)
	e.wantConflict("again", bad, "r1", st)
	e.wantDuplicate("original after conflicts", ev, repo.AppendOptions{}, st)
}

var invalidCases = []subCase{
	{"Rejected", testInvalidRejected},
	{"NoSeqUsed", testInvalidNoSeqUsed},
}

func invalidEvents() map[string]events.Event {
	long := strings.Repeat("k", events.MaxRequestIDBytes+1)
	tr := events.Event{ConversationID: "c", Type: events.TypeToolResult, Content: events.NewText("42")}
	roleBad := userMsg("c", "", "hi")
	roleBad.Role = events.RoleAssistant
	rawBad := userMsg("c", "", "hi")
	rawBad.Raw = []byte(`{"unterminated"`)
	return map[string]events.Event{
		"no conversation":        userMsg("", "r", "hi"),
		"no type":                {ConversationID: "c", Content: events.NewText("hi")},
		"unknown type":           {ConversationID: "c", Type: "no_such_type", Content: events.NewText("hi")},
		"user without content":   invalidMsg("c", "r"),
		"tool_result without id": tr,
		"role contradicts type":  roleBad,
		"request_id too long":    userMsg("c", long, "hi"),
		"raw not JSON":           rawBad,
	}
}

// testInvalidRejected: an invalid event fails with events.ErrInvalid (a
// *events.ValidationError) and nothing is written.
func testInvalidRejected(t *testing.T, s *suite) {
	e := s.fresh(t)
	st := e.appendNew(userMsg("c", "ok", "valid"))
	for name, ev := range invalidEvents() {
		res, err := e.r.Append(e.ctx, ev, repo.AppendOptions{})
		if !errors.Is(err, events.ErrInvalid) {
			t.Errorf("%s: Append = (%v seq %d, %v), want events.ErrInvalid", name, res.Outcome, res.Event.Seq, err)
			continue
		}
		var ve *events.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: error %v (%T) is not a *events.ValidationError", name, err, err)
		}
	}
	e.wantHead("c", 1)
	e.wantAllLen(1)
	last, err := e.r.Last(e.ctx, "c", 5)
	if err != nil || len(last) != 1 {
		t.Fatalf("Last = %v, %v", ids(last), err)
	}
	wantStored(t, "Last", last[0], st)
}

// testInvalidNoSeqUsed: a rejected event does not consume a seq.
func testInvalidNoSeqUsed(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(userMsg("c", "r1", "one"))
	if _, err := e.r.Append(e.ctx, invalidMsg("c", "r2"), repo.AppendOptions{}); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("invalid append: %v, want events.ErrInvalid", err)
	}
	if st := e.appendNew(userMsg("c", "r2", "two")); st.Seq != 2 {
		t.Errorf("after a rejected event the next seq is %d, want 2", st.Seq)
	}
	e.wantHead("c", 2)
}

var expectedSeqCases = []subCase{
	{"OK", testExpectOK},
	{"Mismatch", testExpectMismatch},
	{"DuplicateWins", testExpectDuplicateWins},
}

func expect(n int64) repo.AppendOptions { return repo.AppendOptions{Expected: repo.ExpectSeq(n)} }

func testExpectOK(t *testing.T, s *suite) {
	e := s.fresh(t)
	if st := e.mustAppend(userMsg("c", "r1", "one"), expect(0), repo.Appended); st.Seq != 1 {
		t.Errorf("ExpectSeq(0) on an empty conversation: seq %d, want 1", st.Seq)
	}
	if st := e.mustAppend(userMsg("c", "r2", "two"), expect(1), repo.Appended); st.Seq != 2 {
		t.Errorf("ExpectSeq(1): seq %d, want 2", st.Seq)
	}
	if st := e.mustAppend(userMsg("c", "", "three"), expect(2), repo.Appended); st.Seq != 3 {
		t.Errorf("ExpectSeq(2): seq %d, want 3", st.Seq)
	}
	// The expectation is about the event's own conversation.
	if st := e.mustAppend(userMsg("d", "r1", "other"), expect(0), repo.Appended); st.Seq != 1 {
		t.Errorf("ExpectSeq(0) on another conversation: seq %d, want 1", st.Seq)
	}
}

// wantSeqConflict checks err is a seq conflict in conv with the given
// expected and actual seqs.
func wantSeqConflict(t testing.TB, what string, err error, conv string, expected, actual int64) {
	t.Helper()
	if !errors.Is(err, repo.ErrSeqConflict) {
		t.Errorf("%s: error %v, want ErrSeqConflict", what, err)
		return
	}
	var se *repo.SeqConflictError
	if !errors.As(err, &se) {
		t.Errorf("%s: error %v (%T) is not a *repo.SeqConflictError", what, err, err)
		return
	}
	if se.ConversationID != conv || se.Expected != expected || se.Actual != actual {
		t.Errorf("%s: SeqConflictError{ConversationID: %q, Expected: %d, Actual: %d}, want {%q, %d, %d}",
			what, se.ConversationID, se.Expected, se.Actual, conv, expected, actual)
	}
}

func testExpectMismatch(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(userMsg("c", "r1", "one"))
	e.appendNew(userMsg("c", "r2", "two"))
	for i, x := range []int64{0, 1, 3, 100} {
		_, err := e.r.Append(e.ctx, userMsg("c", fmt.Sprintf("n%d", i), "new"), expect(x))
		wantSeqConflict(t, fmt.Sprintf("ExpectSeq(%d) with head 2", x), err, "c", x, 2)
	}
	_, err := e.r.Append(e.ctx, userMsg("empty", "n", "new"), expect(1))
	wantSeqConflict(t, "ExpectSeq(1) on an empty conversation", err, "empty", 1, 0)
	e.wantHead("c", 2)
	e.wantHead("empty", 0)
	e.wantAllLen(2)
	// A key used in a failed conditional append is still free.
	if st := e.mustAppend(userMsg("c", "n0", "new"), expect(2), repo.Appended); st.Seq != 3 {
		t.Errorf("after the conflicts: seq %d, want 3", st.Seq)
	}
}

// testExpectDuplicateWins: a retry whose expectation went stale because it
// was itself stored is answered as a duplicate.
func testExpectDuplicateWins(t *testing.T, s *suite) {
	e := s.fresh(t)
	a := userMsg("c", "r1", "one")
	b := userMsg("c", "r2", "two")
	sa := e.mustAppend(a, expect(0), repo.Appended)
	sb := e.mustAppend(b, expect(1), repo.Appended)
	e.wantDuplicate("retry of seq 1 expecting 0", a, expect(0), sa)
	e.wantDuplicate("retry of seq 2 expecting 1", b, expect(1), sb)
	e.wantDuplicate("retry expecting a future seq", b, expect(7), sb)
	byID := userMsg("c", "", "three")
	byID.ID = events.NewID(time.Now())
	sc := e.mustAppend(byID, expect(2), repo.Appended)
	e.wantDuplicate("retry by id expecting 2", byID, expect(2), sc)
}

var closeCases = []subCase{
	{"ErrClosed", testCloseErrClosed},
	{"StopsFollow", testCloseStopsFollow},
	{"InFlightAppends", testCloseInFlight},
}

func testCloseErrClosed(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.skipCheck = true
	e.appendNew(userMsg("c", "r1", "one"))
	if err := e.r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := e.ctx
	if _, err := e.r.Append(ctx, userMsg("c", "r2", "two"), repo.AppendOptions{}); !errors.Is(err, repo.ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	if _, err := e.r.Append(ctx, userMsg("c", "r1", "one"), repo.AppendOptions{}); !errors.Is(err, repo.ErrClosed) {
		t.Errorf("Append of a duplicate after Close: %v, want ErrClosed", err)
	}
	if _, err := e.r.AppendBatch(ctx, []events.Event{userMsg("c", "r3", "x")}, repo.AppendOptions{}); !errors.Is(err, repo.ErrClosed) {
		t.Errorf("AppendBatch after Close: %v, want ErrClosed", err)
	}
	items := e.r.AppendEach(ctx, []events.Event{userMsg("c", "r4", "x"), userMsg("c", "r5", "y")}, repo.AppendOptions{})
	if len(items) != 2 {
		t.Errorf("AppendEach after Close returned %d items, want 2", len(items))
	}
	for i, it := range items {
		if !errors.Is(it.Err, repo.ErrClosed) {
			t.Errorf("AppendEach after Close: item %d error %v, want ErrClosed", i, it.Err)
		}
	}
	if _, err := e.r.Head(ctx, "c"); !errors.Is(err, repo.ErrClosed) {
		t.Errorf("Head after Close: %v, want ErrClosed", err)
	}
	if _, err := e.r.Last(ctx, "c", 1); !errors.Is(err, repo.ErrClosed) {
		t.Errorf("Last after Close: %v, want ErrClosed", err)
	}
	if _, err := e.r.ByRequestID(ctx, "c", "r1"); !errors.Is(err, repo.ErrClosed) {
		t.Errorf("ByRequestID after Close: %v, want ErrClosed", err)
	}
	for name, seq := range map[string]func(func(events.Event, error) bool){
		"Events": e.r.Events(ctx, "c", repo.Range{}),
		"All":    e.r.All(ctx, 0),
		"Follow": e.r.Follow(ctx, "c", 0),
	} {
		done := make(chan struct{})
		var (
			evs []events.Event
			err error
		)
		go func() {
			defer close(done)
			evs, err = collect(seq)
		}()
		select {
		case <-done:
		case <-time.After(wait):
			t.Errorf("%s after Close did not return within %v", name, wait)
			continue
		}
		if !errors.Is(err, repo.ErrClosed) || len(evs) > 0 {
			t.Errorf("%s after Close: %d events, error %v; want no event and ErrClosed", name, len(evs), err)
		}
	}
}

// testCloseStopsFollow: a Follow waiting for events ends when the
// repository closes (with no error, or ErrClosed).
func testCloseStopsFollow(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.skipCheck = true
	e.appendNew(userMsg("c", "r1", "one"))
	f := e.follow(e.ctx, "c", 0, 0)
	f.next(t, 1)
	if err := e.r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	f.wantEnd(t, repo.ErrClosed)
}

// testCloseInFlight: appends racing with Close either succeed or fail with
// ErrClosed; after Close returns, every append fails with ErrClosed.
func testCloseInFlight(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.skipCheck = true
	const workers = 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		problems []string
		started  = make(chan struct{}, workers)
	)
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				_, err := e.r.Append(e.ctx, userMsg(fmt.Sprintf("c%d", w%3), fmt.Sprintf("w%d-%d", w, i), "x"), repo.AppendOptions{})
				if i == 0 {
					started <- struct{}{}
				}
				if errors.Is(err, repo.ErrClosed) {
					return
				}
				if err != nil || i > 1_000_000 {
					mu.Lock()
					problems = append(problems, fmt.Sprintf("worker %d append %d: %v", w, i, err))
					mu.Unlock()
					return
				}
			}
		})
	}
	for range workers {
		<-started
	}
	if err := e.r.Close(); err != nil {
		t.Errorf("Close with appends in flight: %v", err)
	}
	if _, err := e.r.Append(e.ctx, userMsg("c0", "after", "x"), repo.AppendOptions{}); !errors.Is(err, repo.ErrClosed) {
		t.Errorf("Append after Close returned: %v, want ErrClosed", err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatalf("appends still running %v after Close returned", wait)
	}
	for _, p := range problems {
		t.Errorf("append racing with Close: %s (want success or ErrClosed)", p)
	}
}

var contextCases = []subCase{
	{"Cancelled", testContextCancelled},
	{"DeadlineExceeded", testContextDeadline},
}

func testContextCancelled(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(userMsg("c", "r0", "before"))
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	_, err := e.r.Append(ctx, userMsg("c", "r1", "hi"), repo.AppendOptions{})
	wantErr(t, "Append with a cancelled context", err, context.Canceled)
	_, err = e.r.Append(ctx, userMsg("new", "r1", "hi"), expect(0))
	wantErr(t, "conditional Append with a cancelled context", err, context.Canceled)
	_, err = e.r.AppendBatch(ctx, []events.Event{userMsg("c", "r2", "a"), userMsg("c", "r3", "b")}, repo.AppendOptions{})
	wantErr(t, "AppendBatch with a cancelled context", err, context.Canceled)
	for i, it := range e.r.AppendEach(ctx, []events.Event{userMsg("c", "r4", "a"), userMsg("d", "r5", "b")}, repo.AppendOptions{}) {
		wantErr(t, fmt.Sprintf("AppendEach with a cancelled context, item %d", i), it.Err, context.Canceled)
	}
	e.wantHead("c", 1)
	e.wantHead("new", 0)
	e.wantAllLen(1)
}

func testContextDeadline(t *testing.T, s *suite) {
	e := s.fresh(t)
	ctx, cancel := context.WithDeadline(e.ctx, time.Now().Add(-time.Second))
	defer cancel()
	_, err := e.r.Append(ctx, userMsg("c", "r1", "hi"), repo.AppendOptions{})
	wantErr(t, "Append with an expired deadline", err, context.DeadlineExceeded)
	e.wantAllLen(0)
}
