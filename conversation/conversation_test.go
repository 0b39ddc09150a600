package conversation_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/chatlog/chatlog/conversation"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

func open(t *testing.T) *sqlite.Repo {
	t.Helper()
	r, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func say(t *testing.T, r repo.Repo, conv string, role events.Type, text string) events.Event {
	t.Helper()
	res, err := r.Append(context.Background(), events.Event{ConversationID: conv, Type: role, Content: events.NewText(text)}, repo.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Event
}

func texts(t *testing.T, r repo.Repo, conv string) []string {
	t.Helper()
	view, err := projection.Read(context.Background(), r, conv, projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	if view.System != "" {
		out = append(out, "system: "+view.System)
	}
	for _, m := range view.Messages {
		out = append(out, string(m.Role)+": "+m.Content.PlainText())
	}
	return out
}

func TestStart_EnsureExists(t *testing.T) {
	ctx := context.Background()
	r := open(t)
	md := conversation.Metadata{Source: "telegram", User: "ann", Model: "gpt-x", System: "be brief", Project: "/srv/app",
		Title: " Trip\u200b plan ", ModelConfig: map[string]any{"temperature": 0.2}}
	first, err := conversation.Start(ctx, r, "c", md)
	if err != nil || first.Outcome != repo.Appended {
		t.Fatalf("Start = %v, %v", first.Outcome, err)
	}
	again, err := conversation.Start(ctx, r, "c", conversation.Metadata{Source: "other"})
	if err != nil || again.Outcome != repo.Duplicate || again.Event.ID != first.Event.ID {
		t.Fatalf("Start again = %v (%s), %v; want the first start as a duplicate", again.Outcome, again.Event.ID, err)
	}
	sum, err := r.Summary(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Source != "telegram" || sum.User != "ann" || sum.Model != "gpt-x" || sum.Project != "/srv/app" || sum.Title != "Trip plan" {
		t.Errorf("Summary = %+v", sum)
	}
	say(t, r, "c", events.TypeUserMessage, "hi")
	if got, want := texts(t, r, "c"), []string{"system: be brief", "user: hi"}; !slices.Equal(got, want) {
		t.Errorf("model sees %q, want %q", got, want)
	}
	// Starting under a title another conversation holds is refused.
	if _, err := conversation.Start(ctx, r, "d", conversation.Metadata{Title: "Trip plan"}); !errors.Is(err, repo.ErrTitleTaken) {
		t.Errorf("Start with a taken title = %v, want ErrTitleTaken", err)
	}
}

func TestStart_ConcurrentOnce(t *testing.T) {
	ctx := context.Background()
	r := open(t)
	var wg sync.WaitGroup
	ids := make([]string, 16)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := conversation.Start(ctx, r, "c", conversation.Metadata{User: fmt.Sprint("u", i)})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = res.Event.ID
		}()
	}
	wg.Wait()
	if len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 1 {
		t.Errorf("concurrent starts returned several events: %v", ids)
	}
	if head, _ := r.Head(ctx, "c"); head != 1 {
		t.Errorf("head after concurrent starts = %d, want 1", head)
	}
}

func TestEndReopen(t *testing.T) {
	ctx := context.Background()
	r := open(t)
	say(t, r, "c", events.TypeUserMessage, "hi")
	if _, err := conversation.End(ctx, r, "c", "done"); err != nil {
		t.Fatal(err)
	}
	sum, _ := r.Summary(ctx, "c")
	if !sum.Ended || sum.EndedReason != "done" || sum.EndedAt == nil {
		t.Errorf("after End: %+v", sum)
	}
	if _, err := conversation.Reopen(ctx, r, "c"); err != nil {
		t.Fatal(err)
	}
	sum, _ = r.Summary(ctx, "c")
	if sum.Ended || sum.EndedReason != "" || sum.EndedAt != nil {
		t.Errorf("after Reopen: %+v", sum)
	}
}

func TestSystemPromptAndClear(t *testing.T) {
	ctx := context.Background()
	r := open(t)
	say(t, r, "c", events.TypeUserMessage, "one")
	if _, err := conversation.SetSystemPrompt(ctx, r, "c", "new rules"); err != nil {
		t.Fatal(err)
	}
	say(t, r, "c", events.TypeAssistantMessage, "ok")
	if got, want := texts(t, r, "c"), []string{"system: new rules", "user: one", "assistant: ok"}; !slices.Equal(got, want) {
		t.Errorf("model sees %q, want %q", got, want)
	}
	if _, err := conversation.Clear(ctx, r, "c"); err != nil {
		t.Fatal(err)
	}
	say(t, r, "c", events.TypeUserMessage, "two")
	if got, want := texts(t, r, "c"), []string{"system: new rules", "user: two"}; !slices.Equal(got, want) {
		t.Errorf("after clear the model sees %q, want %q", got, want)
	}
	// The history stays replayable.
	view, err := projection.Read(ctx, r, "c", projection.Options{AsOfSeq: 3})
	if err != nil || len(view.Messages) != 2 {
		t.Errorf("as of seq 3: %d messages, %v; want the 2 from before the clear", len(view.Messages), err)
	}
}

func TestPop(t *testing.T) {
	ctx := context.Background()
	r := open(t)
	if _, _, found, err := conversation.Pop(ctx, r, "empty"); found || err != nil {
		t.Errorf("Pop of an empty conversation = %v, %v; want nothing", found, err)
	}
	say(t, r, "c", events.TypeUserMessage, "one")
	say(t, r, "c", events.TypeAssistantMessage, "reply one")
	say(t, r, "c", events.TypeUserMessage, "two")
	popped, retraction, found, err := conversation.Pop(ctx, r, "c")
	if err != nil || !found || popped.Text() != "two" || popped.Seq != 3 {
		t.Fatalf("Pop = %q seq %d, %v, %v; want the message 'two' at seq 3", popped.Text(), popped.Seq, found, err)
	}
	if retraction.Event.Type != events.TypeMessageRetracted {
		t.Errorf("retraction event type %s", retraction.Event.Type)
	}
	if got, want := texts(t, r, "c"), []string{"user: one", "assistant: reply one"}; !slices.Equal(got, want) {
		t.Errorf("after pop the model sees %q, want %q", got, want)
	}
	popped, _, _, _ = conversation.Pop(ctx, r, "c")
	if popped.Text() != "reply one" {
		t.Errorf("second Pop = %q, want 'reply one'", popped.Text())
	}
	// The popped messages stay in the log.
	view, _ := projection.Read(ctx, r, "c", projection.Options{AsOfSeq: 3})
	if len(view.Messages) != 3 {
		t.Errorf("as of seq 3 the model saw %d messages, want 3", len(view.Messages))
	}
}

// TestPop_Concurrent: pops racing on one conversation each retract a
// different message, and never more than there are.
func TestPop_Concurrent(t *testing.T) {
	ctx := context.Background()
	r := open(t)
	const messages, pops = 6, 10
	for i := range messages {
		say(t, r, "c", events.TypeUserMessage, fmt.Sprint("m", i))
	}
	var (
		mu     sync.Mutex
		seqs   []int64
		misses int
		wg     sync.WaitGroup
	)
	for range pops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			popped, _, found, err := conversation.Pop(ctx, r, "c")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Error(err)
			case found:
				seqs = append(seqs, popped.Seq)
			default:
				misses++
			}
		}()
	}
	wg.Wait()
	slices.Sort(seqs)
	if !slices.Equal(seqs, []int64{1, 2, 3, 4, 5, 6}) || misses != pops-messages {
		t.Errorf("popped seqs %v and %d misses; want each of 1..6 once and %d misses", seqs, misses, pops-messages)
	}
	if got := texts(t, r, "c"); len(got) != 0 {
		t.Errorf("model still sees %q", got)
	}
}

func TestUsage(t *testing.T) {
	ctx := context.Background()
	r := open(t)
	if u, err := conversation.Usage(ctx, r, "none"); err != nil || u != (events.Usage{}) {
		t.Errorf("Usage of nothing = %+v, %v", u, err)
	}
	add := events.Usage{Input: 10, Output: 3, Cost: 0.01, Currency: "USD"}
	for range 3 { // a retried increment counts once
		if _, err := conversation.AddUsage(ctx, r, "c", add, "turn-1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conversation.AddUsage(ctx, r, "c", events.Usage{Input: 1}, "turn-1"); !errors.Is(err, repo.ErrIdempotencyConflict) {
		t.Errorf("other usage under a used key = %v, want a conflict", err)
	}
	if _, err := conversation.AddUsage(ctx, r, "c", add, ""); err != nil {
		t.Fatal(err)
	}
	u, _ := conversation.Usage(ctx, r, "c")
	if want := (events.Usage{Input: 20, Output: 6, Cost: 0.02, Currency: "USD"}); u != want {
		t.Errorf("Usage = %+v, want %+v", u, want)
	}
	if _, err := conversation.SetUsage(ctx, r, "c", events.Usage{Input: 100, ActualCost: 1.5}, "total-1"); err != nil {
		t.Fatal(err)
	}
	conversation.AddUsage(ctx, r, "c", events.Usage{Output: 1}, "")
	u, _ = conversation.Usage(ctx, r, "c")
	if want := (events.Usage{Input: 100, Output: 1, ActualCost: 1.5}); u != want {
		t.Errorf("Usage after a set and an add = %+v, want %+v", u, want)
	}
	// Rebuilt read models agree (the set is a fold of the log).
	if err := r.RebuildReadModels(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if u2, _ := conversation.Usage(ctx, r, "c"); u2 != u {
		t.Errorf("after rebuild usage = %+v, want %+v", u2, u)
	}
}
