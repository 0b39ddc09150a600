package sqlite_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// TestRepo_PosNotSpentOnDuplicates: re-sending stored events through the
// bulk path (as a re-ingest does) writes nothing and spends no position,
// so the next new event follows the last stored one.
func TestRepo_PosNotSpentOnDuplicates(t *testing.T) {
	ctx := context.Background()
	r, err := sqlite.Open(ctx, t.TempDir()+"/pos.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
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
