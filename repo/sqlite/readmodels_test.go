package sqlite_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/ext/fts5"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

func openFile(t *testing.T, path string) *sqlite.Repo {
	t.Helper()
	r, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func at(sec int) time.Time { return time.Date(2026, 1, 2, 3, 4, sec, 0, time.UTC) }

// TestReadModels_Summary: the conversation read model follows the log.
func TestReadModels_Summary(t *testing.T) {
	ctx := context.Background()
	r := openFile(t, filepath.Join(t.TempDir(), "rm.db"))
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
func TestReadModels_List(t *testing.T) {
	ctx := context.Background()
	r := openFile(t, filepath.Join(t.TempDir(), "rm.db"))
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
func TestReadModels_Search(t *testing.T) {
	ctx := context.Background()
	r := openFile(t, filepath.Join(t.TempDir(), "rm.db"))
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

// TestReadModels_RebuildVerify: a rebuild equals the live read models;
// verify finds nothing on a healthy store and names what is wrong on a
// tampered one; reopening a store whose read models lag catches them up.
func TestReadModels_RebuildVerify(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rm.db")
	r := openFile(t, path)
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
	r.Close()

	// Tamper with a read model behind the store's back.
	raw := openRaw(t, path)
	if err := raw.Exec(`UPDATE conversations SET summary = json_set(summary, '$.messages', 999) WHERE conversation_id = 'c3'`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	r = openFile(t, path)
	problems, err := r.VerifyReadModels(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], `"c3"`) || !strings.Contains(problems[0], "messages is 999") {
		t.Errorf("verify on a tampered store: %q, want one problem naming c3's messages", problems)
	}
	if err := r.RebuildReadModels(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if p, _ := r.VerifyReadModels(ctx, nil); len(p) != 0 {
		t.Errorf("verify after rebuild: %v", p)
	}
	r.Close()

	// A store whose read models lag the log (written before they
	// existed) is caught up at Open.
	raw = openRaw(t, path)
	if err := raw.Exec(`DELETE FROM conversations; UPDATE projections SET pos = 100`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	r = openFile(t, path)
	s, err := r.Summary(ctx, "c0")
	if err != nil {
		t.Fatal(err)
	}
	// Only the events after the checkpoint were applied to the emptied
	// table: c0's are i = 0, 7, ..., 294 at pos i+1, and those after pos
	// 100 are i = 105 ... 294: 28 of them.
	if s.Events != 28 {
		t.Errorf("c0 after catch-up has %d events applied, want the 28 after the checkpoint", s.Events)
	}
}

// openRaw opens the database file directly, to damage it behind the
// store's back, with the extensions and functions the schema uses.
func openRaw(t *testing.T, path string) *sqlite3.Conn {
	t.Helper()
	c, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.BusyTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := fts5.Register(c); err != nil {
		t.Fatal(err)
	}
	if err := sqlite.RegisterFunctions(c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReadModels_SearchParts: the text parts of multi-part messages are
// searchable and shown as context.
func TestReadModels_SearchParts(t *testing.T) {
	ctx := context.Background()
	r := openFile(t, filepath.Join(t.TempDir(), "rm.db"))
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

// TestReadModels_RebuildOne: each read model can be rebuilt on its own,
// and verify notices damage to either.
func TestReadModels_RebuildOne(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rm.db")
	r := openFile(t, path)
	for i := range 50 {
		mustAppend(t, r, events.Event{ConversationID: fmt.Sprintf("c%d", i%3), Type: events.TypeUserMessage,
			Content: events.NewText(fmt.Sprintf("note %d about walruses", i))})
	}
	r.Close()
	raw := openRaw(t, path)
	if err := raw.Exec(`UPDATE conversations SET summary = json_set(summary, '$.messages', 7);
		INSERT INTO message_search (message_search) VALUES ('delete-all')`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	r = openFile(t, path)
	problems, err := r.VerifyReadModels(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var conv, search int
	for _, p := range problems {
		switch {
		case strings.HasPrefix(p, "search index"):
			search++
		case strings.Contains(p, "messages is 7"):
			conv++
		}
	}
	if conv != 3 || search != 1 {
		t.Fatalf("verify: %q; want the 3 damaged summaries and the emptied search index", problems)
	}
	if hits, _ := r.Search(ctx, repo.SearchQuery{Query: "walruses"}); len(hits) != 0 {
		t.Fatalf("search after emptying the index found %d", len(hits))
	}
	if err := r.RebuildReadModels(ctx, nil, repo.ReadModelSearch); err != nil {
		t.Fatal(err)
	}
	if hits, _ := r.Search(ctx, repo.SearchQuery{Query: "walruses", Limit: 100}); len(hits) != 50 {
		t.Errorf("search after rebuilding it: %d hits, want 50", len(hits))
	}
	if s, _ := r.Summary(ctx, "c0"); s.Messages != 7 {
		t.Errorf("rebuilding search touched the conversation list (c0 has %d messages)", s.Messages)
	}
	if err := r.RebuildReadModels(ctx, nil, repo.ReadModelConversations); err != nil {
		t.Fatal(err)
	}
	if p, _ := r.VerifyReadModels(ctx, nil); len(p) != 0 {
		t.Errorf("verify after rebuilding both, one at a time: %q", p)
	}
	if err := r.RebuildReadModels(ctx, nil, "nonsense"); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("rebuilding an unknown read model: %v, want events.ErrInvalid", err)
	}
}
