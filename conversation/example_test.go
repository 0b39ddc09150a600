package conversation_test

import (
	"context"
	"fmt"

	"github.com/chatlog/chatlog/conversation"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// A conversation started, forked to try another answer, and popped: each
// step is an event, and the model sees the result.
func Example() {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, ":memory:", nil)
	if err != nil {
		panic(err)
	}
	defer store.Close()

	conversation.Start(ctx, store, "trip", conversation.Metadata{User: "ann", System: "Be brief.", Title: "Trip plan"})
	for _, e := range []events.Event{
		{ConversationID: "trip", Type: events.TypeUserMessage, Content: events.NewText("Where should I go in May?")},
		{ConversationID: "trip", Type: events.TypeAssistantMessage, Content: events.NewText("Lisbon.")},
	} {
		if _, err := store.Append(ctx, e, repo.AppendOptions{}); err != nil {
			panic(err)
		}
	}
	// Try again from the question: a branch that shares it.
	branch, err := store.Fork(ctx, "trip", 2, "trip-retry")
	if err != nil {
		panic(err)
	}
	store.Append(ctx, events.Event{ConversationID: "trip-retry", Type: events.TypeAssistantMessage,
		Content: events.NewText("Porto.")}, repo.AppendOptions{})
	title, _ := store.SetTitle(ctx, "trip-retry", "Trip plan", repo.TitleOptions{Next: true})

	popped, _, _, _ := conversation.Pop(ctx, store, "trip")
	fmt.Println("branch:", branch.Event.ConversationID, "at seq", branch.Event.Seq)
	fmt.Println("title:", title.Event.Extra["title"])
	fmt.Println("popped:", popped.Text())
	for _, id := range []string{"trip", "trip-retry"} {
		view, _ := projection.Read(ctx, store, id, projection.Options{})
		fmt.Printf("%s: %s |", id, view.System)
		for _, m := range view.Messages {
			fmt.Printf(" %s: %s", m.Role, m.Content.PlainText())
		}
		fmt.Println()
	}
	// Output:
	// branch: trip-retry at seq 3
	// title: Trip plan #2
	// popped: Lisbon.
	// trip: Be brief. | user: Where should I go in May?
	// trip-retry: Be brief. | user: Where should I go in May? assistant: Porto.
}
