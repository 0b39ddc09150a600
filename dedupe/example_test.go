package dedupe_test

import (
	"context"
	"fmt"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// Answer a user request exactly once, streaming the model's reply into the
// log; a retry gets the recorded reply without calling the model.
func ExampleRunner_Turn() {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, ":memory:", nil)
	if err != nil {
		panic(err)
	}
	defer store.Close()

	calls := 0
	model := func(ctx context.Context, s *dedupe.Stream) (compact.Options, error) {
		calls++
		for _, chunk := range []string{"Oslo ", "is the ", "capital."} { // the model's stream
			if _, err := s.Write(ctx, chunk); err != nil {
				return compact.Options{}, err // the turn was lost to a takeover
			}
		}
		return compact.Options{StopReason: "stop", Model: "example-model"}, nil
	}
	runner := &dedupe.Runner{Store: store, Wait: true}
	question := events.Event{
		ConversationID: "conv-1",
		Type:           events.TypeUserMessage,
		RequestID:      "req-42",
		Content:        events.NewText("What is the capital of Norway?"),
	}
	first, err := runner.Turn(ctx, question, model)
	if err != nil {
		panic(err)
	}
	retry, err := runner.Turn(ctx, question, model) // a browser retry
	if err != nil {
		panic(err)
	}
	fmt.Println(first.Message.Text(), "|", first.Message.RequestID, "| attempt", first.Attempt, "| ran:", first.Ran)
	fmt.Println(retry.Message.ID == first.Message.ID, "| ran:", retry.Ran, "| model calls:", calls)
	// Output:
	// Oslo is the capital. | assistant:req-42 | attempt 1 | ran: true
	// true | ran: false | model calls: 1
}
