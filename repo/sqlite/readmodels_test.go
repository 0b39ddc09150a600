package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
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

func mustAppend(t *testing.T, r repo.Repo, e events.Event) events.Event {
	t.Helper()
	res, err := r.Append(context.Background(), e, repo.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Event
}

// TestReadModels_Tampered: verify names what is wrong with read models
// damaged behind the store's back, and a rebuild repairs them; reopening
// a store whose read models lag (written before they existed) catches
// them up. (repo's tests check rebuild and verify on healthy stores of
// every backend.)
func TestReadModels_Tampered(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rm.db")
	r := openFile(t, path)
	for i := range 300 {
		mustAppend(t, r, events.Event{ConversationID: fmt.Sprintf("c%d", i%7), Type: events.TypeUserMessage,
			Content: events.NewText(fmt.Sprintf("message %d about topic%d", i, i%11))})
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

// TestSearch_UnicodeEdges: a query splits into the words the index holds,
// where Go's Unicode tables and FTS5's differ too: an accent typed after
// its letter stays in the word, numbers that are not digits are words,
// and a rune Go takes for a letter but FTS5 for a separator (U+19B0, a
// vowel sign Unicode once called a letter) splits the word instead of
// making FTS5 refuse the query as a phrase.
func TestSearch_UnicodeEdges(t *testing.T) {
	ctx := context.Background()
	r, err := sqlite.Open(ctx, ":memory:", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, text := range []string{"une école", "x²y", "xᦰy", "unrelated"} {
		if _, err := r.Append(ctx, events.Event{ConversationID: "c", Type: events.TypeUserMessage, Content: events.NewText(text)}, repo.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for q, want := range map[string][]int64{
		"e\u0301cole": {1}, "ECOLE": {1}, "x²y": {2}, "xᦰy": {3}, "x\u19B0y une": nil, "\u0301": nil,
	} {
		hits, err := r.Search(ctx, repo.SearchQuery{Query: q})
		if err != nil {
			t.Errorf("Search(%q): %v", q, err)
			continue
		}
		var got []int64
		for _, h := range hits {
			got = append(got, h.Seq)
		}
		if !slices.Equal(got, want) {
			t.Errorf("Search(%q) found seqs %v, want %v", q, got, want)
		}
	}
}
