package repo_test

// The contracts of the read models and of turn retention, beyond what the
// conformance suite (repo/repotest) checks, run against every backend.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/internal/storetest"
	"github.com/chatlog/chatlog/repo"
)

func at(sec int) time.Time { return time.Date(2026, 1, 2, 3, 4, sec, 0, time.UTC) }

func mustAppend(t *testing.T, r repo.Repo, e events.Event) events.Event {
	t.Helper()
	res, err := r.Append(context.Background(), e, repo.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Event
}

// TestReadModels_Summary: the conversation read model follows the log.
func TestReadModels_Summary(t *testing.T) { storetest.Run(t, testReadModels_Summary) }

func testReadModels_Summary(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	r := b.Open(t)
	long := strings.Repeat("é", 70)
	for _, e := range []events.Event{
		{Type: events.TypeConversationStarted, CreatedAt: at(1), Extra: map[string]any{"source": "cli", "user": "ann", "model": "m0", "title": "First"}},
		{Type: events.TypeUserMessage, CreatedAt: at(2), Content: events.NewText(long)},
		{Type: events.TypeAssistantMessage, CreatedAt: at(3), Model: "m1", ToolCalls: []events.ToolCall{{ID: "t1", Name: "f", Arguments: "{}"}},
			Usage: &events.Usage{Input: 10, Output: 5, Cost: 0.5}},
		{Type: events.TypeToolResult, CreatedAt: at(4), ToolCallID: "t1", Content: events.NewText("ok")},
		{Type: events.TypeUserMessage, CreatedAt: at(5), Content: events.NewText("second question")},
		{Type: events.TypeUsageRecorded, CreatedAt: at(6), Usage: &events.Usage{Input: 1, CacheRead: 7}},
		{Type: events.TypeTitleSet, CreatedAt: at(7), Extra: map[string]any{"title": "Renamed"}},
		{Type: events.TypeConversationEnded, CreatedAt: at(8), Extra: map[string]any{"reason": "done"}},
	} {
		e.ConversationID = "c1"
		mustAppend(t, r, e)
	}
	s, err := r.Summary(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	want := repo.Summary{
		ConversationID: "c1", Title: "Renamed", Preview: strings.Repeat("é", 60) + "…",
		Messages: 4, ToolCalls: 1, Events: 8,
		Usage:     events.Usage{Input: 11, Output: 5, CacheRead: 7, Cost: 0.5},
		StartedAt: at(1), LastActiveAt: at(8), LastSeq: 8,
		Source: "cli", User: "ann", Model: "m1", Ended: true, EndedReason: "done",
	}
	endedAt := at(8)
	want.EndedAt = &endedAt
	if fmt.Sprintf("%+v", s) != fmt.Sprintf("%+v", want) {
		t.Errorf("summary\n got %+v\nwant %+v", s, want)
	}
	if _, err := r.Summary(ctx, "nope"); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("Summary of an unknown conversation: %v, want ErrNotFound", err)
	}
}

// TestReadModels_List: newest first, filters, cursor paging without gaps
// or repeats.
func TestReadModels_List(t *testing.T) { storetest.Run(t, testReadModels_List) }

func testReadModels_List(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	r := b.Open(t)
	const n = 23
	for i := range n {
		user := "ann"
		if i%3 == 0 {
			user = "bob"
		}
		mustAppend(t, r, events.Event{ConversationID: fmt.Sprintf("c%02d", i), Type: events.TypeConversationStarted,
			CreatedAt: at(i % 5), Extra: map[string]any{"user": user}}) // ties in time on purpose
	}
	var seen []string
	cursor := ""
	for {
		page, err := r.ListConversations(ctx, repo.ListQuery{Limit: 5, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page.Conversations {
			if len(seen) > 0 {
				prev, _ := r.Summary(ctx, seen[len(seen)-1])
				if s.LastActiveAt.After(prev.LastActiveAt) || (s.LastActiveAt.Equal(prev.LastActiveAt) && s.ConversationID >= prev.ConversationID) {
					t.Errorf("%s listed after %s: not newest first", s.ConversationID, prev.ConversationID)
				}
			}
			seen = append(seen, s.ConversationID)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(seen) != n {
		t.Errorf("paging listed %d conversations, want %d: %v", len(seen), n, seen)
	}
	bob, err := r.ListConversations(ctx, repo.ListQuery{User: "bob", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(bob.Conversations) != 8 {
		t.Errorf("user filter: %d conversations, want 8", len(bob.Conversations))
	}
	if _, err := r.ListConversations(ctx, repo.ListQuery{Cursor: "not a cursor!"}); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("bad cursor: %v, want events.ErrInvalid", err)
	}
}

// TestReadModels_Search: matches with snippet and context; hostile input
// never fails.
func TestReadModels_Search(t *testing.T) { storetest.Run(t, testReadModels_Search) }

func testReadModels_Search(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	r := b.Open(t)
	for _, e := range []events.Event{
		{ConversationID: "a", Type: events.TypeUserMessage, Content: events.NewText("Where do penguins live?")},
		{ConversationID: "a", Type: events.TypeAssistantMessage, Content: events.NewText("Penguins live in the Southern Hemisphere, mostly Antarctica.")},
		{ConversationID: "a", Type: events.TypeUserMessage, Content: events.NewText("Thanks!")},
		{ConversationID: "b", Type: events.TypeUserMessage, Content: events.NewText("Tell me about polar bears")},
		{ConversationID: "b", Type: events.TypeAssistantDelta, Content: events.NewText("penguins in a chunk"), Extra: map[string]any{"user_request_id": "u", "index": 0}},
	} {
		mustAppend(t, r, e)
	}
	hits, err := r.Search(ctx, repo.SearchQuery{Query: "penguins antarctica"})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 1 || hits[0].ConversationID != "a" || hits[0].Seq != 2 {
		t.Fatalf("hits %+v, want conversation a seq 2 only", hits)
	}
	h := hits[0]
	if !strings.Contains(h.Snippet, "[Antarctica]") || h.Before == nil || h.Before.Seq != 1 || h.After == nil || h.After.Seq != 3 {
		t.Errorf("hit %+v: want the match marked and messages 1 and 3 around it", h)
	}
	if hits, _ := r.Search(ctx, repo.SearchQuery{Query: "penguins", Role: events.RoleUser}); len(hits) != 1 || hits[0].Seq != 1 {
		t.Errorf("role filter: %+v, want seq 1 only", hits)
	}
	for _, q := range []string{`"`, `AND OR NOT`, `penguins*`, `(((`, `col:value`, `NEAR(a b)`, "\x00", `'; DROP TABLE events; --`, ``, `^-+`} {
		if _, err := r.Search(ctx, repo.SearchQuery{Query: q}); err != nil {
			t.Errorf("Search(%q): %v", q, err)
		}
	}
}

// TestReadModels_SearchParts: the text parts of multi-part messages are
// searchable and shown as context.
func TestReadModels_SearchParts(t *testing.T) { storetest.Run(t, testReadModels_SearchParts) }

func testReadModels_SearchParts(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	r := b.Open(t)
	img := events.Part{Type: "image_url", Fields: map[string]json.RawMessage{"image_url": json.RawMessage(`{"url":"https://example.com/x.png"}`)}}
	mustAppend(t, r, events.Event{ConversationID: "c", Type: events.TypeUserMessage,
		Content: events.NewParts(events.TextPart("what is this giraffe doing"), img, events.TextPart("in the savanna"))})
	mustAppend(t, r, events.Event{ConversationID: "c", Type: events.TypeAssistantMessage, Content: events.NewText("Eating leaves.")})
	hits, err := r.Search(ctx, repo.SearchQuery{Query: "savanna giraffe"})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 1 || hits[0].Seq != 1 || !strings.Contains(hits[0].Snippet, "[giraffe]") {
		t.Fatalf("hits %+v, want the multi-part message with its match marked", hits)
	}
	hits, _ = r.Search(ctx, repo.SearchQuery{Query: "leaves"})
	if len(hits) != 1 || hits[0].Before == nil || !strings.Contains(hits[0].Before.Text, "giraffe") {
		t.Errorf("hits %+v, want the multi-part message's text as context", hits)
	}
	if err := r.RebuildReadModels(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if p, _ := r.VerifyReadModels(ctx, nil); len(p) != 0 {
		t.Errorf("verify: %v", p)
	}
}

// TestReadModels_SearchDiacritics: every backend folds case and the
// diacritics of Latin letters alike, in what it indexes and in queries,
// and leaves letters without a decomposition (ł, ß, æ) and other scripts
// as they are.
func TestReadModels_SearchDiacritics(t *testing.T) {
	storetest.Run(t, testReadModels_SearchDiacritics)
}

func testReadModels_SearchDiacritics(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	r := b.Open(t)
	for _, text := range []string{"Un café crème", "a naïve Ångström", "Việt Nam", "Łódź", "Straße", "Ελληνικά"} {
		mustAppend(t, r, events.Event{ConversationID: "c", Type: events.TypeUserMessage, Content: events.NewText(text)})
	}
	for q, want := range map[string]int64{
		"cafe creme": 1, "CAFÉ": 1, "naive angström": 2, "viet": 3, "VIỆT": 3,
		"łodz": 4, "lodz": 0, "straße": 5, "strasse": 0, "ελληνικά": 6, "ελληνικα": 0,
	} {
		hits, err := r.Search(ctx, repo.SearchQuery{Query: q})
		switch {
		case err != nil:
			t.Errorf("Search(%q): %v", q, err)
		case want == 0 && len(hits) != 0:
			t.Errorf("Search(%q) = %+v, want nothing", q, hits)
		case want != 0 && (len(hits) != 1 || hits[0].Seq != want):
			t.Errorf("Search(%q) = %+v, want seq %d alone", q, hits, want)
		}
	}
}

// TestReadModels_SearchSnippet: every backend cuts the same snippet: up
// to 16 words around the matches, each match marked (diacritics folded),
// an ellipsis where the text was cut.
func TestReadModels_SearchSnippet(t *testing.T) { storetest.Run(t, testReadModels_SearchSnippet) }

func testReadModels_SearchSnippet(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	r := b.Open(t)
	for _, text := range []string{
		"We met at a small café near the station; the Café was crowded and the coffee was cold, but the croissants were excellent and we stayed for hours.",
		"  Short: café!  ",
		"one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty target. end",
		"target one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen",
		"a b c d e f g h i j k l m n o p q r s t u v w x y z alpha beta gamma delta target epsilon zeta eta theta iota kappa lambda mu nu xi omicron",
	} {
		mustAppend(t, r, events.Event{ConversationID: "c", Type: events.TypeUserMessage, Content: events.NewText(text)})
	}
	for q, want := range map[string][]string{
		"CAFE":              {"  Short: [café]!  ", "We met at a small [café] near the station; the [Café] was crowded and the coffee…"},
		"croissants coffee": {"…Café was crowded and the [coffee] was cold, but the [croissants] were excellent and we stayed…"},
		"target": {
			"…x y z alpha beta gamma delta [target] epsilon zeta eta theta iota kappa lambda mu…",
			"[target] one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen…",
			"…seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty [target]. end",
		},
	} {
		hits, err := r.Search(ctx, repo.SearchQuery{Query: q})
		if err != nil {
			t.Fatalf("Search(%q): %v", q, err)
		}
		var got []string
		for _, h := range hits {
			got = append(got, h.Snippet)
		}
		if !slices.Equal(got, want) {
			t.Errorf("Search(%q) snippets:\n%q\nwant:\n%q", q, got, want)
		}
	}
}

// TestReadModels_RebuildVerify: a rebuild equals the live read models,
// and verify finds nothing on a healthy store. Each backend's own tests
// damage its read models behind its back and check that verify names
// what is wrong.
func TestReadModels_RebuildVerify(t *testing.T) { storetest.Run(t, testReadModels_RebuildVerify) }

func testReadModels_RebuildVerify(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	r := b.Open(t)
	for i := range 300 {
		mustAppend(t, r, events.Event{ConversationID: fmt.Sprintf("c%d", i%7), Type: events.TypeUserMessage,
			Content: events.NewText(fmt.Sprintf("message %d about topic%d", i, i%11))})
	}
	before, _ := r.ListConversations(ctx, repo.ListQuery{Limit: 100})
	if p, err := r.VerifyReadModels(ctx, nil); err != nil || len(p) != 0 {
		t.Fatalf("verify on a healthy store: %v %v", p, err)
	}
	if err := r.RebuildReadModels(ctx, nil); err != nil {
		t.Fatal(err)
	}
	after, _ := r.ListConversations(ctx, repo.ListQuery{Limit: 100})
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("rebuild changed the read models:\nbefore %v\nafter  %v", before, after)
	}
	// topic3 is in messages i = 3, 14, ..., 289: 27 of them.
	if hits, _ := r.Search(ctx, repo.SearchQuery{Query: "topic3", Limit: 200}); len(hits) != 27 {
		t.Errorf("search after rebuild: %d hits for topic3, want 27", len(hits))
	}
}

// TestRepo_PurgeChunks: retention empties the chunks of finished streams
// only, keeps their rows (no seq holes), never touches final messages, and
// a re-sent purged chunk is still answered as a duplicate.
func TestRepo_PurgeChunks(t *testing.T) { storetest.Run(t, testRepo_PurgeChunks) }

func testRepo_PurgeChunks(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	r := b.Open(t)
	for i, text := range []string{"Hel", "lo"} {
		mustAppend(t, r, compact.Chunk("c", "done", 0, i, text))
		mustAppend(t, r, compact.Chunk("c", "open", 0, i, text))
	}
	final, err := compact.Finish(ctx, r, "c", "done", 0, compact.Options{StopReason: "stop"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.PurgeChunks(ctx, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("purged %d chunks, want 2 (the finished stream's)", n)
	}
	var seqs []int64
	for e, err := range r.Events(ctx, "c", repo.Range{}) {
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, e.Seq)
		urid, _ := e.ExtraString("user_request_id")
		purged, _ := e.ExtraBool("purged")
		switch {
		case e.Type == events.TypeAssistantMessage:
			if e.Text() != "Hello" || purged {
				t.Errorf("final message changed: %q purged=%v", e.Text(), purged)
			}
		case urid == "done":
			if e.Content != nil || !purged {
				t.Errorf("chunk seq %d of the finished stream: content %v purged=%v, want emptied and marked", e.Seq, e.Content, purged)
			}
		case urid == "open":
			if e.Content == nil || purged {
				t.Errorf("chunk seq %d of the open stream was purged", e.Seq)
			}
		}
	}
	if len(seqs) != 5 || seqs[4] != 5 {
		t.Errorf("seqs after purge %v, want 1..5", seqs)
	}
	res, err := r.Append(ctx, compact.Chunk("c", "done", 0, 0, "Hel"), repo.AppendOptions{})
	if err != nil || !res.Duplicate() {
		t.Errorf("re-sent purged chunk: %v, %v; want a duplicate", res.Outcome, err)
	}
	if again, err := compact.Finish(ctx, r, "c", "done", 0, compact.Options{}); err != nil || again.Event.ID != final.Event.ID {
		t.Errorf("finish after purge: %v, %v; want the same message", again.Event.ID, err)
	}
}

// TestRepo_FinishUnknown: finishing a user request that was neither begun
// as a turn nor streamed is ErrNotFound and writes nothing (a mistyped id
// must not leave an empty reply for good).
func TestRepo_FinishUnknown(t *testing.T) { storetest.Run(t, testRepo_FinishUnknown) }

func testRepo_FinishUnknown(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	r := b.Open(t)
	_, err := compact.Finish(ctx, r, "c", "nope", 0, compact.Options{})
	if !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("finish of an unknown request: %v, want ErrNotFound", err)
	}
	if head, _ := r.Head(ctx, "c"); head != 0 {
		t.Errorf("head %d after a refused finish, want 0", head)
	}
}

// TestRepo_PosNotSpentOnDuplicates: re-sending stored events through the
// bulk path (as a re-ingest does) writes nothing and spends no position,
// so the next new event follows the last stored one.
func TestRepo_PosNotSpentOnDuplicates(t *testing.T) {
	storetest.Run(t, testRepo_PosNotSpentOnDuplicates)
}

func testRepo_PosNotSpentOnDuplicates(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	r := b.Open(t)
	var evs []events.Event
	for i := range 10 {
		evs = append(evs, events.Event{ConversationID: "c", Type: events.TypeUserMessage,
			RequestID: fmt.Sprintf("r%d", i), Content: events.NewText("hi")})
	}
	for round := range 3 {
		for i, it := range r.AppendEach(ctx, evs, repo.AppendOptions{}) {
			if it.Err != nil {
				t.Fatal(it.Err)
			}
			if want := int64(i + 1); it.Event.Pos != want {
				t.Fatalf("round %d event %d: pos %d, want %d", round, i, it.Event.Pos, want)
			}
		}
	}
	res, err := r.Append(ctx, events.Event{ConversationID: "c", Type: events.TypeUserMessage,
		Content: events.NewText("new")}, repo.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Event.Pos != 11 {
		t.Errorf("new event after re-sent duplicates got pos %d, want 11", res.Event.Pos)
	}
}
