package repotest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

var forkCases = []subCase{
	{"HistoryThroughParent", testForkHistory},
	{"ForkOfFork", testForkOfFork},
	{"Idempotent", testForkIdempotent},
	{"Refused", testForkRefused},
	{"ContextMarkersInherited", testForkMarkers},
	{"FollowBranch", testForkFollow},
	{"SummaryInherits", testForkSummary},
	{"KeepSeqImport", testForkImport},
}

var eraseCases = []subCase{
	{"Delete", testDelete},
	{"DeleteBranchesRefused", testDeleteBranches},
	{"DeleteCascade", testDeleteCascade},
	{"DeleteUnknown", testDeleteUnknown},
	{"AppendAfterDelete", testAppendAfterDelete},
	{"Prune", testPrune},
	{"PruneKeepsLiveBranches", testPruneBranches},
}

var titleCases = []subCase{
	{"SetSanitised", testTitleSet},
	{"Taken", testTitleTaken},
	{"Unchanged", testTitleUnchanged},
	{"NextInLineage", testTitleNext},
	{"ConcurrentUnique", testTitleConcurrent},
	{"FreedByDelete", testTitleFreed},
}

var resolveCases = []subCase{
	{"IDAndPrefix", testResolvePrefix},
	{"Title", testResolveTitle},
}

var usageCases = []subCase{
	{"AddAndSet", testUsageAddSet},
}

// mustFork forks parent at atSeq into newID and returns the fork event.
func (e *env) mustFork(parent string, atSeq int64, newID string) events.Event {
	e.t.Helper()
	res, err := e.r.Fork(e.ctx, parent, atSeq, newID)
	if err != nil {
		e.t.Fatalf("Fork(%q, %d, %q): %v", parent, atSeq, newID, err)
	}
	return res.Event
}

// wantSeqs checks the (conversation, seq) pairs a read yields.
func wantSeqs(t testing.TB, what string, got []events.Event, want ...string) {
	t.Helper()
	var have []string
	for _, e := range got {
		have = append(have, fmt.Sprintf("%s/%d", e.ConversationID, e.Seq))
	}
	if !slices.Equal(have, want) {
		t.Errorf("%s = %v, want %v", what, have, want)
	}
}

func testForkHistory(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.fill("p", 5)
	fork := e.mustFork("p", 3, "b")
	if fork.ConversationID != "b" || fork.Seq != 4 || fork.Type != events.TypeConversationForked {
		t.Fatalf("fork event = %s, want a conversation_forked of b at seq 4", describe(fork))
	}
	if p, _ := fork.ExtraString("parent_id"); p != "p" {
		t.Errorf("fork extra.parent_id = %q, want p", p)
	}
	e.appendNew(userMsg("b", "b-1", "on the branch"))
	e.appendNew(userMsg("p", "p-6", "on the parent"))
	e.wantHead("b", 5)
	e.wantHead("p", 6)
	wantSeqs(t, "Events(b)", e.events("b", repo.Range{}), "p/1", "p/2", "p/3", "b/4", "b/5")
	wantSeqs(t, "Events(b, after 2 until 4)", e.events("b", repo.Range{AfterSeq: 2, UntilSeq: 4}), "p/3", "b/4")
	wantSeqs(t, "Events(b, reverse, limit 3)", e.events("b", repo.Range{Reverse: true, Limit: 3}), "b/5", "b/4", "p/3")
	wantSeqs(t, "Events(b, reverse, until 3)", e.events("b", repo.Range{Reverse: true, UntilSeq: 3}), "p/3", "p/2", "p/1")
	wantSeqs(t, "Events(p)", e.events("p", repo.Range{AfterSeq: 4}), "p/5", "p/6")
	last, err := e.r.Last(e.ctx, "b", 3)
	if err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, "Last(b, 3)", last, "p/3", "b/4", "b/5")
	segs, err := e.r.Lineage(e.ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	want := []repo.Segment{{ConversationID: "p", UntilSeq: 3}, {ConversationID: "b", AfterSeq: 3}}
	if !slices.Equal(segs, want) {
		t.Errorf("Lineage(b) = %+v, want %+v", segs, want)
	}
	if _, err := e.r.ByRequestID(e.ctx, "b", "p-1"); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("ByRequestID(b, p-1) = %v, want ErrNotFound: keys are the branch's own", err)
	}
}

func testForkOfFork(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.fill("a", 4)
	e.mustFork("a", 2, "b")
	e.appendNew(userMsg("b", "b-x", "b's own"))
	e.mustFork("b", 4, "c") // inherits a/1-2, b/3 (the fork), b/4
	e.appendNew(userMsg("c", "c-x", "c's own"))
	wantSeqs(t, "Events(c)", e.events("c", repo.Range{}), "a/1", "a/2", "b/3", "b/4", "c/5", "c/6")
	wantSeqs(t, "Events(c) reversed", e.events("c", repo.Range{Reverse: true}), "c/6", "c/5", "b/4", "b/3", "a/2", "a/1")
	wantSeqs(t, "Events(c, after 1 limit 2)", e.events("c", repo.Range{AfterSeq: 1, Limit: 2}), "a/2", "b/3")
}

func testForkIdempotent(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.fill("p", 3)
	first := e.mustFork("p", 2, "b")
	res, err := e.r.Fork(e.ctx, "p", 2, "b")
	if err != nil || res.Outcome != repo.Duplicate || res.Event.ID != first.ID {
		t.Errorf("Fork again = %v, %v (id %s), want the stored fork as a duplicate (id %s)", res.Outcome, err, res.Event.ID, first.ID)
	}
	_, err = e.r.Fork(e.ctx, "p", 1, "b")
	if !errors.Is(err, repo.ErrConversationExists) {
		t.Errorf("Fork(p, 1, b) over a fork at 2 = %v, want ErrConversationExists", err)
	}
	minted := e.mustFork("p", 0, "")
	if minted.ConversationID == "" || minted.Seq != 4 {
		t.Errorf("Fork(p, 0, \"\") = %s, want a new id forked at the head (seq 4)", describe(minted))
	}
}

func testForkRefused(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.fill("p", 3)
	e.fill("other", 1)
	check := func(what string, err error, target error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Errorf("%s = %v, want %v", what, err, target)
		}
	}
	_, err := e.r.Fork(e.ctx, "nobody", 0, "b")
	check("Fork of an unknown conversation", err, repo.ErrNotFound)
	_, err = e.r.Fork(e.ctx, "nobody", 1, "b")
	check("Fork of an unknown conversation at 1", err, repo.ErrNotFound)
	_, err = e.r.Fork(e.ctx, "p", 9, "b")
	check("Fork beyond the head", err, events.ErrInvalid)
	_, err = e.r.Fork(e.ctx, "p", 2, "other")
	check("Fork into a conversation with events", err, repo.ErrConversationExists)
	_, err = e.r.Fork(e.ctx, "p", 2, "p")
	check("Fork into itself", err, events.ErrInvalid)
	// A conversation_forked appended by hand obeys the same rules.
	_, err = e.r.Append(e.ctx, events.Event{ConversationID: "other", Type: events.TypeConversationForked,
		Extra: map[string]any{"parent_id": "p", "parent_seq": 1}}, repo.AppendOptions{})
	check("Append of a conversation_forked to a conversation with events", err, repo.ErrConversationExists)
	e.wantHead("b", 0)
}

func testForkMarkers(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(events.Event{ConversationID: "p", Type: events.TypeSystemPromptSet, Content: events.NewText("be brief")})
	e.appendNew(userMsg("p", "", "one"))
	e.appendNew(events.Event{ConversationID: "p", Type: events.TypeConversationCleared})
	e.appendNew(userMsg("p", "", "two"))
	e.appendNew(events.Event{ConversationID: "p", Type: events.TypeSystemPromptSet, Content: events.NewText("after the fork")})
	e.mustFork("p", 4, "b")
	m, err := e.r.ContextMarkers(e.ctx, "b", 0)
	if err != nil {
		t.Fatal(err)
	}
	if m.Prompt == nil || m.Prompt.ConversationID != "p" || m.Prompt.Seq != 1 || m.ClearSeq != 3 {
		t.Errorf("ContextMarkers(b) = prompt %v, clear %d; want p's prompt at seq 1 and the clear at 3", m.Prompt, m.ClearSeq)
	}
	e.appendNew(events.Event{ConversationID: "b", Type: events.TypeSystemPromptSet, Content: events.NewText("branch prompt")})
	m, err = e.r.ContextMarkers(e.ctx, "b", 0)
	if err != nil {
		t.Fatal(err)
	}
	if m.Prompt == nil || m.Prompt.ConversationID != "b" || m.Prompt.Seq != 6 || m.ClearSeq != 3 {
		t.Errorf("ContextMarkers(b) after its own prompt = prompt %v, clear %d; want b's at seq 6, clear 3", m.Prompt, m.ClearSeq)
	}
	m, err = e.r.ContextMarkers(e.ctx, "b", 2)
	if err != nil {
		t.Fatal(err)
	}
	if m.Prompt == nil || m.Prompt.Seq != 1 || m.ClearSeq != 0 {
		t.Errorf("ContextMarkers(b, until 2) = prompt %v, clear %d; want p's at seq 1 and no clear", m.Prompt, m.ClearSeq)
	}
}

func testForkFollow(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.fill("p", 3)
	e.mustFork("p", 2, "b")
	got := make(chan events.Event, 16)
	go func() {
		for ev, err := range e.r.Follow(e.ctx, "b", 1) {
			if err != nil {
				return
			}
			got <- ev
		}
	}()
	var seen []events.Event
	deadline := time.After(wait)
	for len(seen) < 3 {
		if len(seen) == 2 {
			e.appendNew(userMsg("b", "b-live", "live"))
			e.appendNew(userMsg("p", "p-live", "not the branch's"))
		}
		select {
		case ev := <-got:
			seen = append(seen, ev)
		case <-deadline:
			t.Fatalf("Follow(b, 1) yielded %d events, want 3", len(seen))
		}
	}
	wantSeqs(t, "Follow(b, after 1)", seen, "p/2", "b/3", "b/4")
}

func testForkSummary(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(events.Event{ConversationID: "p", Type: events.TypeConversationStarted,
		Extra: map[string]any{"user": "ann", "source": "cli", "title": "parent"}})
	e.appendNew(userMsg("p", "", "the first question"))
	e.appendNew(events.Event{ConversationID: "p", Type: events.TypeAssistantMessage, Content: events.NewText("an answer"),
		Usage: &events.Usage{Input: 10, Output: 5}})
	e.appendNew(userMsg("p", "", "not inherited"))
	e.mustFork("p", 3, "b")
	sum, err := e.r.Summary(e.ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Messages != 2 || sum.Preview != "the first question" || sum.User != "ann" || sum.Source != "cli" ||
		sum.ParentID != "p" || sum.ParentSeq != 3 || sum.Title != "" || sum.Usage.Input != 0 || sum.LastSeq != 4 {
		t.Errorf("Summary(b) = %+v; want 2 inherited messages, the parent's preview, user and source, parent p at 3, "+
			"no title and no usage of its own, last seq 4", sum)
	}
}

func testForkImport(t *testing.T, s *suite) {
	src := s.fresh(t)
	src.fill("p", 3)
	src.mustFork("p", 2, "b")
	src.appendNew(userMsg("b", "b-1", "own"))
	all := src.mustCollect("All", src.r.All(src.ctx, 0))
	dst := s.fresh(t)
	for _, it := range dst.r.AppendEach(dst.ctx, all, repo.AppendOptions{KeepSeq: true}) {
		if it.Err != nil {
			t.Fatalf("import: %v", it.Err)
		}
	}
	wantSeqs(t, "imported Events(b)", dst.events("b", repo.Range{}), "p/1", "p/2", "b/3", "b/4")
	// Again: all duplicates.
	for _, it := range dst.r.AppendEach(dst.ctx, all, repo.AppendOptions{KeepSeq: true}) {
		if it.Err != nil || it.Outcome != repo.Duplicate {
			t.Fatalf("re-import: %v %v, want duplicates", it.Outcome, it.Err)
		}
	}
	// A fork whose parent is missing is refused.
	lone := s.fresh(t)
	var fork events.Event
	for _, ev := range all {
		if ev.Type == events.TypeConversationForked {
			fork = ev
		}
	}
	if _, err := lone.r.Append(lone.ctx, fork, repo.AppendOptions{KeepSeq: true}); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("importing a fork without its parent = %v, want ErrNotFound", err)
	}
}

// wantErased checks that nothing of conv can be read back.
func (e *env) wantErased(conv, word string) {
	e.t.Helper()
	e.wantHead(conv, 0)
	if evs := e.events(conv, repo.Range{}); len(evs) != 0 {
		e.t.Errorf("Events(%q) after erasure yields %d events", conv, len(evs))
	}
	if _, err := e.r.Summary(e.ctx, conv); !errors.Is(err, repo.ErrNotFound) {
		e.t.Errorf("Summary(%q) after erasure: %v, want ErrNotFound", conv, err)
	}
	hits, err := e.r.Search(e.ctx, repo.SearchQuery{Query: word})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, h := range hits {
		if h.ConversationID == conv {
			e.t.Errorf("Search(%q) finds erased conversation %q at seq %d", word, conv, h.Seq)
		}
	}
	for ev, err := range e.r.All(e.ctx, 0) {
		if err == nil && ev.ConversationID == conv {
			e.t.Errorf("All yields event %s of erased conversation %q", ev.ID, conv)
			break
		}
	}
	if problems, err := e.r.VerifyReadModels(e.ctx, nil); err != nil || len(problems) > 0 {
		e.t.Errorf("VerifyReadModels after erasure: %v %v", err, problems)
	}
}

func testDelete(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.appendNew(userMsg("gone", "g-1", "zanzibarian secret"))
	st, err := e.r.BeginTurn(e.ctx, repo.BeginTurn{UserMessage: userMsg("gone", "g-2", "zanzibarian question"), Lease: time.Minute, Owner: "t"})
	if err != nil || st.Status != repo.TurnStarted {
		t.Fatalf("BeginTurn: %v %v", st.Status, err)
	}
	e.appendNew(userMsg("kept", "k-1", "zanzibarian but kept"))
	erased, err := e.r.Delete(e.ctx, "gone", repo.DeleteOptions{})
	if err != nil || !slices.Equal(erased, []string{"gone"}) {
		t.Fatalf("Delete(gone) = %v, %v; want [gone]", erased, err)
	}
	e.wantErased("gone", "zanzibarian")
	hits, err := e.r.Search(e.ctx, repo.SearchQuery{Query: "zanzibarian"})
	if err != nil || len(hits) != 1 || hits[0].ConversationID != "kept" {
		t.Errorf("Search after delete = %+v, %v; want the kept conversation's message only", hits, err)
	}
	// The turn went with it: beginning it again starts afresh.
	st, err = e.r.BeginTurn(e.ctx, repo.BeginTurn{UserMessage: userMsg("gone", "g-2", "zanzibarian question"), Lease: time.Minute, Owner: "t"})
	if err != nil || st.Status != repo.TurnStarted || st.Attempt != 1 {
		t.Errorf("BeginTurn after delete = %+v, %v; want started as attempt 1", st, err)
	}
}

func testDeleteBranches(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.fill("p", 2)
	e.mustFork("p", 1, "b")
	_, err := e.r.Delete(e.ctx, "p", repo.DeleteOptions{})
	var hb *repo.HasBranchesError
	if !errors.As(err, &hb) || !slices.Equal(hb.Branches, []string{"b"}) {
		t.Fatalf("Delete(p) with a branch = %v, want *HasBranchesError naming b", err)
	}
	e.wantHead("p", 2)
	if _, err := e.r.Delete(e.ctx, "b", repo.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Delete(e.ctx, "p", repo.DeleteOptions{}); err != nil {
		t.Errorf("Delete(p) once its branch is gone: %v", err)
	}
}

func testDeleteCascade(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.fill("p", 2)
	e.mustFork("p", 1, "b")
	e.mustFork("b", 2, "c")
	e.fill("q", 1)
	erased, err := e.r.Delete(e.ctx, "p", repo.DeleteOptions{Cascade: true})
	if err != nil || !slices.Equal(erased, []string{"b", "c", "p"}) {
		t.Fatalf("Delete(p, cascade) = %v, %v; want [b c p]", erased, err)
	}
	for _, c := range []string{"p", "b", "c"} {
		e.wantErased(c, "message")
	}
	e.wantHead("q", 1)
}

func testDeleteUnknown(t *testing.T, s *suite) {
	e := s.fresh(t)
	erased, err := e.r.Delete(e.ctx, "nobody", repo.DeleteOptions{})
	if err != nil || len(erased) != 0 {
		t.Errorf("Delete(nobody) = %v, %v; want nothing erased, no error", erased, err)
	}
}

func testAppendAfterDelete(t *testing.T, s *suite) {
	e := s.fresh(t)
	old := e.fill("c", 3)
	if _, err := e.r.Delete(e.ctx, "c", repo.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	again := e.appendNew(userMsg("c", "c-1", "a new start"))
	if again.Seq != 1 || again.Pos <= old[2].Pos {
		t.Errorf("first event after delete: seq %d pos %d; want seq 1 and a pos above the erased %d", again.Seq, again.Pos, old[2].Pos)
	}
}

// endAt appends a conversation that ended, last active at t.
func (e *env) endAt(conv, source string, at time.Time) {
	e.t.Helper()
	e.appendNew(events.Event{ConversationID: conv, Type: events.TypeConversationStarted, CreatedAt: at,
		Extra: map[string]any{"source": source}})
	e.appendNew(events.Event{ConversationID: conv, Type: events.TypeUserMessage, Content: events.NewText("prunable words"), CreatedAt: at})
	e.appendNew(events.Event{ConversationID: conv, Type: events.TypeConversationEnded, CreatedAt: at})
}

func testPrune(t *testing.T, s *suite) {
	e := s.fresh(t)
	old := time.Now().Add(-100 * 24 * time.Hour)
	e.endAt("old-cli", "cli", old)
	e.endAt("old-tg", "telegram", old)
	e.endAt("recent", "cli", time.Now())
	e.appendNew(events.Event{ConversationID: "open-old", Type: events.TypeUserMessage, Content: events.NewText("prunable"), CreatedAt: old})
	cut := time.Now().Add(-90 * 24 * time.Hour)
	erased, err := e.r.Prune(e.ctx, repo.PruneQuery{Before: cut, Source: "telegram"})
	if err != nil || !slices.Equal(erased, []string{"old-tg"}) {
		t.Fatalf("Prune(telegram) = %v, %v; want [old-tg]", erased, err)
	}
	erased, err = e.r.Prune(e.ctx, repo.PruneQuery{Before: cut})
	if err != nil || !slices.Equal(erased, []string{"old-cli"}) {
		t.Fatalf("Prune = %v, %v; want [old-cli]", erased, err)
	}
	e.wantErased("old-cli", "prunable")
	e.wantHead("recent", 3)
	e.wantHead("open-old", 1)
	if _, err := e.r.Prune(e.ctx, repo.PruneQuery{}); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("Prune without a cut-off = %v, want a field error", err)
	}
}

func testPruneBranches(t *testing.T, s *suite) {
	e := s.fresh(t)
	old := time.Now().Add(-100 * 24 * time.Hour)
	e.endAt("p", "cli", old)
	e.endAt("q", "cli", old)
	e.mustFork("p", 2, "live") // a live branch keeps p
	e.mustFork("q", 2, "dead")
	e.appendNew(events.Event{ConversationID: "dead", Type: events.TypeConversationEnded, CreatedAt: old})
	erased, err := e.r.Prune(e.ctx, repo.PruneQuery{Before: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// The fork event of "dead" is recent (now), so dead is not old: q
	// stays with it. Only conversations whose whole tree is prunable go.
	if len(erased) != 0 {
		t.Errorf("Prune = %v, want nothing (every old conversation has a recent branch)", erased)
	}
	erased, err = e.r.Prune(e.ctx, repo.PruneQuery{Before: time.Now().Add(time.Hour)})
	if err != nil || !slices.Equal(erased, []string{"dead", "q"}) {
		t.Errorf("Prune(before now+1h) = %v, %v; want [dead q] (p keeps its live branch)", erased, err)
	}
	e.wantHead("p", 3)
	e.wantHead("live", 3)
}

func (e *env) title(conv string) string {
	e.t.Helper()
	sum, err := e.r.Summary(e.ctx, conv)
	if err != nil {
		e.t.Fatalf("Summary(%q): %v", conv, err)
	}
	return sum.Title
}

func testTitleSet(t *testing.T, s *suite) {
	e := s.fresh(t)
	// Clearing a title never set writes nothing (and sanitising to
	// nothing is clearing).
	if res, err := e.r.SetTitle(e.ctx, "c", "\x01\u200b", repo.TitleOptions{}); err != nil || res.Outcome != repo.Duplicate {
		t.Errorf("clearing an unset title = %v, %v; want nothing written", res.Outcome, err)
	}
	e.wantHead("c", 0)
	res, err := e.r.SetTitle(e.ctx, "c", "  My\u200b  chat\x07\n title  ", repo.TitleOptions{})
	if err != nil || res.Outcome != repo.Appended {
		t.Fatalf("SetTitle = %v, %v", res.Outcome, err)
	}
	if got, _ := res.Event.ExtraString("title"); got != "My chat title" {
		t.Errorf("stored title %q, want %q", got, "My chat title")
	}
	if got := e.title("c"); got != "My chat title" {
		t.Errorf("Summary title %q", got)
	}
	if _, err := e.r.SetTitle(e.ctx, "c", "", repo.TitleOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := e.title("c"); got != "" {
		t.Errorf("title after clearing = %q", got)
	}
}

func testTitleTaken(t *testing.T, s *suite) {
	e := s.fresh(t)
	if _, err := e.r.SetTitle(e.ctx, "a", "shared", repo.TitleOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := e.r.SetTitle(e.ctx, "b", " shared ", repo.TitleOptions{})
	var tt *repo.TitleTakenError
	if !errors.As(err, &tt) || tt.ConversationID != "a" || tt.Title != "shared" {
		t.Fatalf("SetTitle(b, shared) = %v, want *TitleTakenError naming a", err)
	}
	e.wantHead("b", 0)
	// conversation_started carrying a title is held to the same rule.
	_, err = e.r.Append(e.ctx, events.Event{ConversationID: "b", Type: events.TypeConversationStarted,
		Extra: map[string]any{"title": "shared"}}, repo.AppendOptions{})
	if !errors.Is(err, repo.ErrTitleTaken) {
		t.Errorf("conversation_started with a taken title = %v, want ErrTitleTaken", err)
	}
	// Once a renames, the title is free.
	if _, err := e.r.SetTitle(e.ctx, "a", "renamed", repo.TitleOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.SetTitle(e.ctx, "b", "shared", repo.TitleOptions{}); err != nil {
		t.Errorf("SetTitle(b, shared) after a renamed: %v", err)
	}
}

func testTitleUnchanged(t *testing.T, s *suite) {
	e := s.fresh(t)
	first, err := e.r.SetTitle(e.ctx, "c", "same", repo.TitleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.r.SetTitle(e.ctx, "c", "same", repo.TitleOptions{})
	if err != nil || again.Outcome != repo.Duplicate || again.Event.ID != first.Event.ID {
		t.Errorf("SetTitle with the same title = %v, %v; want the stored title_set as a duplicate", again.Outcome, err)
	}
	e.wantHead("c", 1)
}

func testTitleNext(t *testing.T, s *suite) {
	e := s.fresh(t)
	for i, want := range []string{"my chat", "my chat #2", "my chat #3"} {
		conv := fmt.Sprintf("c%d", i)
		res, err := e.r.SetTitle(e.ctx, conv, "my chat", repo.TitleOptions{Next: true})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := res.Event.ExtraString("title"); got != want {
			t.Errorf("next title for %s = %q, want %q", conv, got, want)
		}
	}
	// From a numbered title, the lineage is its base's.
	res, err := e.r.SetTitle(e.ctx, "c3", "my chat #2", repo.TitleOptions{Next: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := res.Event.ExtraString("title"); got != "my chat #4" {
		t.Errorf("next title from %q = %q, want %q", "my chat #2", got, "my chat #4")
	}
	// A conversation already in the lineage keeps its name.
	res, err = e.r.SetTitle(e.ctx, "c1", "my chat", repo.TitleOptions{Next: true})
	if err != nil || res.Outcome != repo.Duplicate {
		t.Errorf("next title for a conversation in the lineage = %v, %v; want its title unchanged", res.Outcome, err)
	}
	long := string(slices.Repeat([]rune("x"), events.MaxTitleRunes))
	e.r.SetTitle(e.ctx, "l1", long, repo.TitleOptions{})
	res, err = e.r.SetTitle(e.ctx, "l2", long, repo.TitleOptions{Next: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := res.Event.ExtraString("title"); len([]rune(got)) > events.MaxTitleRunes || got[len(got)-3:] != " #2" {
		t.Errorf("next title of a %d-character title = %q, want it cut to fit \" #2\"", events.MaxTitleRunes, got)
	}
}

func testTitleConcurrent(t *testing.T, s *suite) {
	e := s.fresh(t)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.r.SetTitle(e.ctx, fmt.Sprintf("c%02d", i), "contested", repo.TitleOptions{})
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, repo.ErrTitleTaken):
			t.Errorf("SetTitle c%02d: %v", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d conversations got the title, want exactly 1", won)
	}
	// Next titles under contention are all distinct.
	titles := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.r.SetTitle(e.ctx, fmt.Sprintf("n%02d", i), "lineage", repo.TitleOptions{Next: true})
			if err != nil {
				t.Errorf("next title: %v", err)
				return
			}
			titles[i], _ = res.Event.ExtraString("title")
		}()
	}
	wg.Wait()
	slices.Sort(titles)
	if len(slices.Compact(slices.Clone(titles))) != n {
		t.Errorf("concurrent next titles repeat: %v", titles)
	}
}

func testTitleFreed(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.r.SetTitle(e.ctx, "a", "reused", repo.TitleOptions{})
	if _, err := e.r.Delete(e.ctx, "a", repo.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.SetTitle(e.ctx, "b", "reused", repo.TitleOptions{}); err != nil {
		t.Errorf("a deleted conversation's title is not free: %v", err)
	}
}

func testResolvePrefix(t *testing.T, s *suite) {
	e := s.fresh(t)
	for _, c := range []string{"0193abc-1", "0193abd-2", "ff00"} {
		e.appendNew(userMsg(c, "", "hi"))
	}
	for ref, want := range map[string]string{"0193abc-1": "0193abc-1", "0193abc": "0193abc-1", "ff": "ff00"} {
		got, err := e.r.Resolve(e.ctx, ref)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	_, err := e.r.Resolve(e.ctx, "0193ab")
	var amb *repo.AmbiguousError
	if !errors.As(err, &amb) || !slices.Equal(amb.Matches, []string{"0193abc-1", "0193abd-2"}) {
		t.Errorf("Resolve(0193ab) = %v, want *AmbiguousError with both", err)
	}
	if _, err := e.r.Resolve(e.ctx, "zz"); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("Resolve(zz) = %v, want ErrNotFound", err)
	}
}

func testResolveTitle(t *testing.T, s *suite) {
	e := s.fresh(t)
	for _, c := range []string{"a", "b", "c"} {
		if _, err := e.r.SetTitle(e.ctx, c, "plan", repo.TitleOptions{Next: true}); err != nil {
			t.Fatal(err)
		}
	}
	for ref, want := range map[string]string{"plan": "c", "plan #2": "b", " plan  #2 ": "b", "plan #3": "c"} {
		got, err := e.r.Resolve(e.ctx, ref)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	if _, err := e.r.Resolve(e.ctx, "plan #9"); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("Resolve(plan #9) = %v, want ErrNotFound", err)
	}
}

func testUsageAddSet(t *testing.T, s *suite) {
	e := s.fresh(t)
	started := func(conv, user string) {
		e.appendNew(events.Event{ConversationID: conv, Type: events.TypeConversationStarted, Extra: map[string]any{"user": user}})
	}
	usage := func(conv string, u events.Usage, mode string) {
		ev := events.Event{ConversationID: conv, Type: events.TypeUsageRecorded, Usage: &u}
		if mode != "" {
			ev.Extra = map[string]any{"mode": mode}
		}
		e.appendNew(ev)
	}
	started("a", "ann")
	started("b", "ann")
	started("c", "bob")
	usage("a", events.Usage{Input: 10, Output: 2, Cost: 0.5}, "")
	usage("a", events.Usage{Input: 5, CacheRead: 7}, "")
	usage("b", events.Usage{Input: 100}, "")
	usage("b", events.Usage{Input: 40, Output: 4}, "set")
	usage("c", events.Usage{Input: 1000}, "")
	sum, err := e.r.Summary(e.ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if want := (events.Usage{Input: 15, Output: 2, CacheRead: 7, Cost: 0.5}); sum.Usage != want {
		t.Errorf("Summary(a).Usage = %+v, want %+v", sum.Usage, want)
	}
	sum, _ = e.r.Summary(e.ctx, "b")
	if want := (events.Usage{Input: 40, Output: 4}); sum.Usage != want {
		t.Errorf("Summary(b).Usage after a set = %+v, want %+v", sum.Usage, want)
	}
	total, err := e.r.UserUsage(e.ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	if want := (events.Usage{Input: 55, Output: 6, CacheRead: 7, Cost: 0.5}); total != want {
		t.Errorf("UserUsage(ann) = %+v, want %+v", total, want)
	}
	if total, err := e.r.UserUsage(e.ctx, "nobody"); err != nil || total != (events.Usage{}) {
		t.Errorf("UserUsage(nobody) = %+v, %v; want zero", total, err)
	}
}
