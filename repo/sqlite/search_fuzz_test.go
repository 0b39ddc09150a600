package sqlite_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// FuzzSearch: no input makes search fail, and a word of a stored message
// always finds it (the sanitiser keeps words, only quoting them).
func FuzzSearch(f *testing.F) {
	for _, s := range []string{"penguins", `"`, `AND OR NOT`, `penguins*`, `(((`, `col:value`, `NEAR(a b)`, "\x00",
		`'; DROP TABLE events; --`, ``, `^-+`, `{"json": 1}`, "émoji 🐧 penguins", strings.Repeat("a ", 100),
		"xᦰy", "e\u0301cole", "\u0301", "²", "\u0305a"} {
		f.Add(s)
	}
	ctx := context.Background()
	r, err := sqlite.Open(ctx, ":memory:", nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	if _, err := r.Append(ctx, events.Event{ConversationID: "c", Type: events.TypeUserMessage,
		Content: events.NewText("emperor penguins huddle in antarctica")}, repo.AppendOptions{}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if _, err := r.Search(ctx, repo.SearchQuery{Query: q}); err != nil {
			t.Fatalf("Search(%q): %v", q, err)
		}
		hits, err := r.Search(ctx, repo.SearchQuery{Query: q + " penguins"})
		if err != nil {
			t.Fatalf("Search(%q + penguins): %v", q, err)
		}
		if sqlite.SearchTerms(q) == "" && len(hits) != 1 {
			t.Fatalf("Search(%q + penguins) found %d, want the stored message", q, len(hits))
		}
	})
}
