package projection_test

import (
	"strings"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
)

func TestSummaries_ApplyFork(t *testing.T) {
	sums := projection.Summaries{}
	history := func(parent string, until int64) (repo.Summary, error) {
		if parent != "p" || until != 2 {
			t.Errorf("history(%q, %d), want (p, 2)", parent, until)
		}
		return repo.Summary{Messages: 2, Events: 2, Preview: "hello", User: "ann", Title: "not inherited"}, nil
	}
	for _, e := range []events.Event{
		{ConversationID: "b", Seq: 3, Type: events.TypeConversationForked, Extra: map[string]any{"parent_id": "p", "parent_seq": int64(2)}},
		{ConversationID: "~ledger/ann", Seq: 1, Type: events.TypeLedgerEntry},
	} {
		if err := sums.Apply(&e, history); err != nil {
			t.Fatal(err)
		}
	}
	b := sums["b"]
	if b == nil || b.Messages != 2 || b.Events != 3 || b.Preview != "hello" || b.User != "ann" || b.Title != "" || b.ParentID != "p" {
		t.Errorf("branch summary = %+v", b)
	}
	if _, ok := sums["~ledger/ann"]; ok {
		t.Error("an account stream got a summary")
	}
}

func TestDiffSummaries(t *testing.T) {
	got := projection.DiffSummaries([]byte(`{"title":"a","messages":2,"extra":1}`), []byte(`{"title":"b","messages":2}`))
	for _, want := range []string{`title is "a", the log says "b"`, "extra is set, the log has none"} {
		if !strings.Contains(got, want) {
			t.Errorf("DiffSummaries = %q, lacks %q", got, want)
		}
	}
	if strings.Contains(got, "messages") {
		t.Errorf("DiffSummaries names an equal field: %q", got)
	}
}
