package conversation_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/chatlog/chatlog/conversation"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

func TestCurrent(t *testing.T) {
	ctx := context.Background()
	r := open(t)
	if id, ok, err := conversation.Current(ctx, r, "ann", ""); ok || err != nil || id != "" {
		t.Errorf("Current of a new user = %q, %v, %v", id, ok, err)
	}
	if _, err := conversation.SetCurrent(ctx, r, "ann", "", "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := conversation.SetCurrent(ctx, r, "ann", "telegram", "c2"); err != nil {
		t.Fatal(err)
	}
	for scope, want := range map[string]string{"": "c1", conversation.DefaultScope: "c1", "telegram": "c2"} {
		if id, ok, err := conversation.Current(ctx, r, "ann", scope); !ok || err != nil || id != want {
			t.Errorf("Current(ann, %q) = %q, %v, %v; want %q", scope, id, ok, err, want)
		}
	}
	again, err := conversation.SetCurrent(ctx, r, "ann", "telegram", "c2")
	if err != nil || again.Outcome != repo.Duplicate {
		t.Errorf("setting the same pointer = %v, %v; want a duplicate", again.Outcome, err)
	}
	if _, err := conversation.SetCurrent(ctx, r, "ann", "telegram", ""); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := conversation.Current(ctx, r, "ann", "telegram"); ok {
		t.Error("a cleared pointer is still set")
	}
	if id, _, _ := conversation.Current(ctx, r, "ann", ""); id != "c1" {
		t.Errorf("clearing one scope touched another: %q", id)
	}
	if _, ok, _ := conversation.Current(ctx, r, "bob", ""); ok {
		t.Error("bob has ann's pointer")
	}
	if _, err := conversation.SetCurrent(ctx, r, "", "", "c1"); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("SetCurrent without a user = %v", err)
	}
	// The user stream is no conversation.
	page, err := r.ListConversations(ctx, repo.ListQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range page.Conversations {
		if events.IsAccountStream(s.ConversationID) {
			t.Errorf("the conversation list shows %q", s.ConversationID)
		}
	}
}

// TestCurrent_ConcurrentScopes: setters of different scopes at once never
// lose each other's pointers.
func TestCurrent_ConcurrentScopes(t *testing.T) {
	ctx := context.Background()
	r := open(t)
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := conversation.SetCurrent(ctx, r, "ann", fmt.Sprint("scope", i), fmt.Sprint("conv", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if id, ok, _ := conversation.Current(ctx, r, "ann", fmt.Sprint("scope", i)); !ok || id != fmt.Sprint("conv", i) {
			t.Errorf("scope%d = %q, %v; want conv%d", i, id, ok, i)
		}
	}
}
