// Package repotest is the conformance suite for [repo.Repo] backends, in the
// manner of testing/fstest and testing/slogtest: every backend (SQLite,
// PostgreSQL, ...) passes it.
//
//	func TestConformance(t *testing.T) {
//		repotest.Run(t, func(t testing.TB) repo.Repo {
//			r, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "db"), nil)
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { r.Close() })
//			return r
//		})
//	}
//
// Run runs one subtest per contract of the repo package documentation, each
// on a fresh repository from newRepo, and checks the store's invariants
// ([Check]) after each of them.
//
// # Flags
//
// The storm test is randomised. It logs its seed; rerun it with
//
//	go test -run 'Conformance/.*/Storm' -repotest.seed=N
//
// Under the race detector the storm is scaled down so the suite stays fast.
package repotest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
	"github.com/oklog/ulid/v2"
)

var seedFlag = flag.Uint64("repotest.seed", 0, "seed for the randomised repotest cases (0: pick one and log it)")

// wait bounds every wait for something that should happen "promptly"
// (a followed event, an iterator ending). It is generous on purpose: the
// suite checks that things happen, never how fast.
const wait = 5 * time.Second

// Run runs the conformance suite. newRepo returns a new, empty repository
// each time it is called and registers its own clean-up (Close) with
// t.Cleanup; closing an already closed repository there should be
// tolerated, since the Close contract test closes it first.
func Run(t *testing.T, newRepo func(t testing.TB) repo.Repo) {
	t.Helper()
	s := &suite{newRepo: newRepo}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, sub := range c.subs {
				t.Run(sub.name, func(t *testing.T) { sub.fn(t, s) })
			}
		})
	}
}

type testCase struct {
	name string
	subs []subCase
}

type subCase struct {
	name string
	fn   func(t *testing.T, s *suite)
}

// cases lists every contract; each file adds its own.
var cases = []testCase{
	{"Append", appendCases},
	{"Duplicate", duplicateCases},
	{"Conflict", conflictCases},
	{"Invalid", invalidCases},
	{"ExpectedSeq", expectedSeqCases},
	{"AppendBatch", batchCases},
	{"AppendEach", eachCases},
	{"KeepSeq", keepSeqCases},
	{"Read", readCases},
	{"Follow", followCases},
	{"Close", closeCases},
	{"Context", contextCases},
	{"Concurrency", concurrencyCases},
	{"BeginTurn", beginCases},
	{"Chunks", chunkCases},
	{"Heartbeat", heartbeatCases},
	{"Finish", finishCases},
	{"FailTurn", failCases},
	{"Streams", streamCases},
	{"Fork", forkCases},
	{"Erase", eraseCases},
	{"Title", titleCases},
	{"Resolve", resolveCases},
	{"Usage", usageCases},
	{"Ledger", ledgerCases},
}

type suite struct {
	newRepo func(t testing.TB) repo.Repo
}

// env is one subtest's fresh repository.
type env struct {
	t   *testing.T
	ctx context.Context
	r   repo.Repo
	// skipCheck turns the invariant check off (the repository was closed
	// by the test).
	skipCheck bool
}

// fresh returns a new repository for t and registers the invariant check,
// which runs before newRepo's own clean-up closes the repository.
func (s *suite) fresh(t *testing.T) *env {
	t.Helper()
	r := s.newRepo(t)
	if r == nil {
		t.Fatal("newRepo returned nil")
	}
	e := &env{t: t, ctx: t.Context(), r: r}
	t.Cleanup(func() {
		if e.skipCheck {
			return
		}
		Check(t, r)
	})
	return e
}

// Check verifies a repository's invariants through the public API only:
//
//   - All yields strictly increasing pos values and every event id once;
//   - for every conversation All shows, Events yields seqs 1..Head with no
//     gap or repeat, the same events (id, seq, pos) as All, in pos order
//     (for a branch, its lineage's: see repo.Management);
//   - no request_id appears twice within a conversation;
//   - Last agrees with the tail of Events and ByRequestID finds events by
//     their key (sampled);
//   - in every user's ledger (events.LedgerStreamPrefix), each entry's
//     balance is the one before it plus or minus its amount, never
//     negative.
//
// Run calls it after every subtest; backends may call it in their own tests.
func Check(t testing.TB, r repo.Repo) {
	t.Helper()
	// t.Context is already cancelled when clean-up runs.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var (
		problems []string
		bad      = func(format string, args ...any) {
			if len(problems) < 20 {
				problems = append(problems, fmt.Sprintf(format, args...))
			}
		}
		byID    = map[string]events.Event{}
		convs   = map[string][]events.Event{}
		order   []string
		lastPos int64
	)
	all, err := collect(r.All(ctx, 0))
	if err != nil {
		t.Errorf("invariants: All(0): %v", err)
		return
	}
	for _, e := range all {
		if e.Pos <= lastPos {
			bad("All: pos %d (event %s) after pos %d: not strictly increasing", e.Pos, e.ID, lastPos)
		}
		lastPos = e.Pos
		if e.ID == "" {
			bad("All: event at pos %d has no id", e.Pos)
		} else if prev, dup := byID[e.ID]; dup {
			bad("All: event id %s appears twice (pos %d and %d)", e.ID, prev.Pos, e.Pos)
		}
		byID[e.ID] = e
		if _, ok := convs[e.ConversationID]; !ok {
			order = append(order, e.ConversationID)
		}
		convs[e.ConversationID] = append(convs[e.ConversationID], e)
		if e.CreatedAt.IsZero() {
			bad("All: event %s has no created_at", e.ID)
		}
		if e.SchemaVersion < 1 {
			bad("All: event %s has schema_version %d", e.ID, e.SchemaVersion)
		}
	}
	sampled := 0
	for _, conv := range order {
		// A branch's history is its lineage's: each ancestor's events
		// up to the seq its child forks at, then its own.
		segs, err := r.Lineage(ctx, conv)
		if err != nil {
			bad("Lineage(%q): %v", conv, err)
			continue
		}
		var fromAll []events.Event
		for _, sg := range segs {
			for _, e := range convs[sg.ConversationID] {
				if e.Seq > sg.AfterSeq && (sg.UntilSeq == 0 || e.Seq <= sg.UntilSeq) {
					fromAll = append(fromAll, e)
				}
			}
		}
		evs, err := collect(r.Events(ctx, conv, repo.Range{}))
		if err != nil {
			bad("Events(%q): %v", conv, err)
			continue
		}
		head, err := r.Head(ctx, conv)
		if err != nil {
			bad("Head(%q): %v", conv, err)
		}
		if head != int64(len(evs)) {
			bad("conversation %q: Head = %d, Events yields %d events", conv, head, len(evs))
		}
		if len(evs) != len(fromAll) {
			bad("conversation %q: Events yields %d events, All has %d", conv, len(evs), len(fromAll))
		}
		rids := map[string]int64{}
		for i, e := range evs {
			if e.Seq != int64(i+1) {
				bad("conversation %q: Events yields seq %d at index %d (want %d: seqs must be 1..head, contiguous)", conv, e.Seq, i, i+1)
			}
			if i < len(fromAll) {
				if a := fromAll[i]; a.ID != e.ID || a.Seq != e.Seq || a.Pos != e.Pos || a.ConversationID != e.ConversationID {
					bad("conversation %q: Events[%d] is id %s seq %d pos %d of %q, but its lineage in All has id %s seq %d pos %d of %q",
						conv, i, e.ID, e.Seq, e.Pos, e.ConversationID, a.ID, a.Seq, a.Pos, a.ConversationID)
				}
			}
			if e.RequestID != "" && e.ConversationID == conv {
				if prev, dup := rids[e.RequestID]; dup {
					bad("conversation %q: request_id %q appears twice (seq %d and %d)", conv, e.RequestID, prev, e.Seq)
				}
				rids[e.RequestID] = e.Seq
			}
		}
		if strings.HasPrefix(conv, events.LedgerStreamPrefix) {
			checkLedger(conv, evs, bad)
		}
		if len(evs) > 0 {
			n := min(3, len(evs))
			last, err := r.Last(ctx, conv, n)
			if err != nil {
				bad("Last(%q, %d): %v", conv, n, err)
			} else if !sameIDs(last, evs[len(evs)-n:]) {
				bad("conversation %q: Last(%d) = %v, want %v", conv, n, ids(last), ids(evs[len(evs)-n:]))
			}
		}
		// Sample ByRequestID: about 200 look-ups per check in all.
		step := max(1, len(all)/200)
		for i, e := range evs {
			if e.RequestID == "" || e.ConversationID != conv || (sampled+i)%step != 0 {
				continue
			}
			got, err := r.ByRequestID(ctx, conv, e.RequestID)
			if err != nil {
				bad("ByRequestID(%q, %q): %v", conv, e.RequestID, err)
			} else if got.ID != e.ID || got.Seq != e.Seq {
				bad("ByRequestID(%q, %q) = id %s seq %d, want id %s seq %d", conv, e.RequestID, got.ID, got.Seq, e.ID, e.Seq)
			}
		}
		sampled += len(evs)
	}
	if len(problems) > 0 {
		t.Errorf("invariants violated after the test:\n\t%s", strings.Join(problems, "\n\t"))
	}
}

// collect drains an iterator. It reports the iterator's error, and an
// error when the iterator yields anything after an error (an error must be
// the last value).
func collect(seq func(yield func(events.Event, error) bool)) ([]events.Event, error) {
	var (
		out      []events.Event
		firstErr error
	)
	for e, err := range seq {
		if firstErr != nil {
			return out, fmt.Errorf("iterator yielded a value after its error %v", firstErr)
		}
		if err != nil {
			firstErr = err
			continue
		}
		out = append(out, e)
	}
	return out, firstErr
}

// mustCollect drains an iterator and fails the test on error.
func (e *env) mustCollect(what string, seq func(yield func(events.Event, error) bool)) []events.Event {
	e.t.Helper()
	evs, err := collect(seq)
	if err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
	return evs
}

func (e *env) events(conv string, rg repo.Range) []events.Event {
	e.t.Helper()
	return e.mustCollect(fmt.Sprintf("Events(%q, %+v)", conv, rg), e.r.Events(e.ctx, conv, rg))
}

func (e *env) all(afterPos int64) []events.Event {
	e.t.Helper()
	return e.mustCollect(fmt.Sprintf("All(%d)", afterPos), e.r.All(e.ctx, afterPos))
}

func (e *env) head(conv string) int64 {
	e.t.Helper()
	h, err := e.r.Head(e.ctx, conv)
	if err != nil {
		e.t.Fatalf("Head(%q): %v", conv, err)
	}
	return h
}

// mustAppend appends ev and requires outcome want.
func (e *env) mustAppend(ev events.Event, opts repo.AppendOptions, want repo.Outcome) events.Event {
	e.t.Helper()
	res, err := e.r.Append(e.ctx, ev, opts)
	if err != nil {
		e.t.Fatalf("Append(%s): %v", describe(ev), err)
	}
	if res.Outcome != want {
		e.t.Fatalf("Append(%s): outcome %v, want %v", describe(ev), res.Outcome, want)
	}
	return res.Event
}

// appendNew appends ev, which must be new.
func (e *env) appendNew(ev events.Event) events.Event {
	e.t.Helper()
	return e.mustAppend(ev, repo.AppendOptions{}, repo.Appended)
}

// wantHead fails the test unless conv's head is want.
func (e *env) wantHead(conv string, want int64) {
	e.t.Helper()
	if got := e.head(conv); got != want {
		e.t.Errorf("Head(%q) = %d, want %d", conv, got, want)
	}
}

// wantAllLen fails the test unless the log holds n events in all.
func (e *env) wantAllLen(n int) {
	e.t.Helper()
	if got := e.all(0); len(got) != n {
		e.t.Errorf("All(0) yields %d events, want %d: %v", len(got), n, ids(got))
	}
}

// Event builders.

func userMsg(conv, rid, text string) events.Event {
	return events.Event{
		ConversationID: conv,
		Type:           events.TypeUserMessage,
		RequestID:      rid,
		Content:        events.NewText(text),
	}
}

func assistantMsg(conv, rid, text string) events.Event {
	return events.Event{
		ConversationID: conv,
		Type:           events.TypeAssistantMessage,
		RequestID:      rid,
		Content:        events.NewText(text),
		Provider:       "openai",
		Model:          "gpt-test",
		StopReason:     "stop",
	}
}

// invalidMsg fails validation: a user_message without content.
func invalidMsg(conv, rid string) events.Event {
	return events.Event{ConversationID: conv, Type: events.TypeUserMessage, RequestID: rid}
}

// fullEvent has every optional field set, to check that storage keeps them.
func fullEvent(conv, rid string) events.Event {
	return events.Event{
		ConversationID: conv,
		Type:           events.TypeAssistantMessage,
		Role:           events.RoleAssistant,
		RequestID:      rid,
		Content: events.NewParts(
			events.TextPart("héllo, wörld ✓"),
			events.Part{Type: "image_url", Fields: map[string]json.RawMessage{"image_url": json.RawMessage(`{"url":"https://example.com/a.png"}`)}},
		),
		ToolCalls:  []events.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}},
		Provider:   "anthropic",
		Model:      "claude-test",
		StopReason: "tool_use",
		Usage:      &events.Usage{Input: 10, Output: 20, CacheRead: 3, CacheWrite: 4, Reasoning: 5, Cost: 0.00123},
		Extra:      map[string]any{"source": "web", "n": 42, "nested": map[string]any{"a": []any{"x", true}}},
		Raw:        json.RawMessage(`{"id":"msg_1","usage":{"input_tokens":10}}`),
	}
}

func describe(e events.Event) string {
	s := fmt.Sprintf("%s conv=%q", e.Type, e.ConversationID)
	if e.RequestID != "" {
		s += fmt.Sprintf(" request_id=%q", e.RequestID)
	}
	if e.ID != "" {
		s += " id=" + e.ID
	}
	if e.Seq != 0 {
		s += fmt.Sprintf(" seq=%d", e.Seq)
	}
	return s
}

func fingerprint(t testing.TB, e events.Event) dedupe.Fingerprint {
	t.Helper()
	f, err := dedupe.Of(&e)
	if err != nil {
		t.Fatalf("dedupe.Of(%s): %v", describe(e), err)
	}
	return f
}

// sameStored reports how got differs from want, both events as stored:
// identity, position, time, key and payload. Empty means equal.
func sameStored(t testing.TB, got, want events.Event) string {
	t.Helper()
	var d []string
	if got.ID != want.ID {
		d = append(d, fmt.Sprintf("id %q, want %q", got.ID, want.ID))
	}
	if got.ConversationID != want.ConversationID {
		d = append(d, fmt.Sprintf("conversation_id %q, want %q", got.ConversationID, want.ConversationID))
	}
	if got.Seq != want.Seq {
		d = append(d, fmt.Sprintf("seq %d, want %d", got.Seq, want.Seq))
	}
	if got.Pos != want.Pos {
		d = append(d, fmt.Sprintf("pos %d, want %d", got.Pos, want.Pos))
	}
	if !got.CreatedAt.Equal(want.CreatedAt) {
		d = append(d, fmt.Sprintf("created_at %s, want %s", got.CreatedAt.Format(time.RFC3339Nano), want.CreatedAt.Format(time.RFC3339Nano)))
	}
	if got.SchemaVersion != want.SchemaVersion {
		d = append(d, fmt.Sprintf("schema_version %d, want %d", got.SchemaVersion, want.SchemaVersion))
	}
	d = append(d, samePayload(t, got, want)...)
	return strings.Join(d, "; ")
}

// samePayload compares what the caller gives: conversation, type, key and
// the fingerprinted payload.
func samePayload(t testing.TB, got, want events.Event) []string {
	t.Helper()
	var d []string
	if got.Type != want.Type {
		d = append(d, fmt.Sprintf("type %q, want %q", got.Type, want.Type))
	}
	if got.RequestID != want.RequestID {
		d = append(d, fmt.Sprintf("request_id %q, want %q", got.RequestID, want.RequestID))
	}
	if fingerprint(t, got) != fingerprint(t, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		d = append(d, fmt.Sprintf("payload differs (dedupe.Of):\n\t got %s\n\twant %s", g, w))
	}
	return d
}

// wantStored fails the test when got is not the stored event want.
func wantStored(t testing.TB, what string, got, want events.Event) {
	t.Helper()
	if d := sameStored(t, got, want); d != "" {
		t.Errorf("%s: not the stored event: %s", what, d)
	}
}

// wantPayload fails the test when stored does not carry the payload the
// caller submitted in sent.
func wantPayload(t testing.TB, what string, stored, sent events.Event) {
	t.Helper()
	d := samePayload(t, stored, sent)
	if stored.ConversationID != sent.ConversationID {
		d = append(d, fmt.Sprintf("conversation_id %q, want %q", stored.ConversationID, sent.ConversationID))
	}
	if len(d) > 0 {
		t.Errorf("%s: stored event differs from the one appended: %s", what, strings.Join(d, "; "))
	}
}

// wantULID fails the test unless id is a ULID.
func wantULID(t testing.TB, id string) {
	t.Helper()
	if _, err := ulid.ParseStrict(id); err != nil {
		t.Errorf("id %q is not a ULID: %v", id, err)
	}
}

func ids(evs []events.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%s#%d", e.ConversationID, e.Seq)
	}
	return out
}

func seqs(evs []events.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func sameIDs(a, b []events.Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID {
			return false
		}
	}
	return true
}

// wantErr fails the test unless err matches target (errors.Is).
func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want one matching %v", what, err, target)
	}
}
