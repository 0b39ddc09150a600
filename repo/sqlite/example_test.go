package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// Record a user message exactly once, however often the request is
// retried, and read the conversation back.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "chatlog-example")
	defer os.RemoveAll(dir)

	store, err := sqlite.Open(ctx, filepath.Join(dir, "chatlog.db"), nil)
	if err != nil {
		panic(err)
	}
	defer store.Close()

	msg := events.Event{
		ConversationID: "conv-1",
		Type:           events.TypeUserMessage,
		RequestID:      "req-42", // the client's idempotency key
		Content:        events.NewText("What is the capital of Norway?"),
	}
	first, _ := store.Append(ctx, msg, repo.AppendOptions{})
	retry, _ := store.Append(ctx, msg, repo.AppendOptions{}) // a browser retry
	fmt.Println(first.Outcome, first.Event.Seq, "/", retry.Outcome, retry.Event.Seq)

	// The same key with another payload is a conflict, never a second write.
	msg.Content = events.NewText("What is the capital of Sweden?")
	_, err = store.Append(ctx, msg, repo.AppendOptions{})
	var conflict *repo.ConflictError
	if errors.As(err, &conflict) {
		fmt.Println("conflict; stored:", conflict.Stored.Text())
	}

	for e, err := range store.Events(ctx, "conv-1", repo.Range{}) {
		if err != nil {
			panic(err)
		}
		fmt.Println(e.Seq, e.Type, e.Text())
	}
	// Output:
	// appended 1 / duplicate 1
	// conflict; stored: What is the capital of Norway?
	// 1 user_message What is the capital of Norway?
}
