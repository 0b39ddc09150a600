package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// benchDB opens $CHATLOG_BENCH_DB when set (e.g. a database made by
// `chatlog ingest` of a large log), else a fresh one filled by fill.
func benchDB(b *testing.B, fill func(r *sqlite.Repo)) *sqlite.Repo {
	b.Helper()
	if path := os.Getenv("CHATLOG_BENCH_DB"); path != "" {
		r, err := sqlite.Open(context.Background(), path, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { r.Close() })
		return r
	}
	r := openBench(b, nil)
	fill(r)
	return r
}

// BenchmarkListConversations lists a page of 50 from 100,000
// conversations, from the middle of the list (by cursor).
func BenchmarkListConversations(b *testing.B) {
	ctx := context.Background()
	r := benchDB(b, func(r *sqlite.Repo) {
		batch := make([]events.Event, 0, 1000)
		for i := range 100000 {
			batch = append(batch, events.Event{ConversationID: fmt.Sprintf("conv-%06d", i), Type: events.TypeUserMessage,
				Content: events.NewText(fmt.Sprintf("hello number %d", i))})
			if len(batch) == cap(batch) {
				if _, err := r.AppendBatch(ctx, batch, repo.AppendOptions{}); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
	})
	first, err := r.ListConversations(ctx, repo.ListQuery{Limit: 1000})
	if err != nil || first.NextCursor == "" {
		b.Fatalf("%v, cursor %q", err, first.NextCursor)
	}
	b.ResetTimer()
	for b.Loop() {
		page, err := r.ListConversations(ctx, repo.ListQuery{Limit: 50, Cursor: first.NextCursor})
		if err != nil || len(page.Conversations) != 50 {
			b.Fatalf("%d, %v", len(page.Conversations), err)
		}
	}
}

// BenchmarkSearch runs a two-word query; with $CHATLOG_BENCH_DB set to a
// 1,000,000-message database it measures the target.
func BenchmarkSearch(b *testing.B) {
	ctx := context.Background()
	query := os.Getenv("CHATLOG_BENCH_QUERY")
	if query == "" {
		query = "penguins antarctica"
	}
	r := benchDB(b, func(r *sqlite.Repo) {
		words := []string{"penguins", "antarctica", "weather", "oslo", "soup", "leeks", "loop", "closure", "tool", "call"}
		batch := make([]events.Event, 0, 1000)
		for i := range 100000 {
			text := fmt.Sprintf("message %d about %s and %s with %s", i, words[i%10], words[(i/10)%10], words[(i/100)%10])
			batch = append(batch, events.Event{ConversationID: fmt.Sprintf("c%d", i%1000), Type: events.TypeUserMessage, Content: events.NewText(text)})
			if len(batch) == cap(batch) {
				if _, err := r.AppendBatch(ctx, batch, repo.AppendOptions{}); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
	})
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Search(ctx, repo.SearchQuery{Query: query}); err != nil {
			b.Fatal(err)
		}
	}
}
