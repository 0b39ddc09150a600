package repo_test

import (
	"strings"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

func TestLogChecker(t *testing.T) {
	ev := func(conv string, seq, pos int64, typ events.Type, extra map[string]any) *events.Event {
		return &events.Event{ConversationID: conv, Seq: seq, Pos: pos, Type: typ, Extra: extra}
	}
	var (
		c repo.LogChecker
		p repo.Problems
	)
	for _, e := range []*events.Event{
		ev("a", 1, 1, events.TypeUserMessage, nil),
		ev("a", 2, 2, events.TypeUserMessage, nil),
		ev("b", 3, 3, events.TypeConversationForked, map[string]any{"parent_id": "a", "parent_seq": int64(2)}),
		ev("b", 4, 4, events.TypeUserMessage, nil),
	} {
		c.Check(e, &p)
	}
	if len(p) != 0 || c.LastPos() != 4 {
		t.Fatalf("a sound log with a branch: problems %v, last pos %d", p, c.LastPos())
	}
	c.Check(ev("a", 4, 4, events.TypeUserMessage, nil), &p) // a seq skipped, a pos repeated
	c.Check(ev("c", 2, 9, events.TypeUserMessage, nil), &p) // a conversation not starting at 1
	want := []string{"pos 4 follows pos 4", `conversation "a": seq 4 where 3 was expected`, `conversation "c": seq 2 where 1 was expected`}
	if strings.Join(p, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(p, "\n"), strings.Join(want, "\n"))
	}
	for range repo.MaxProblems + 5 {
		p.Report("x")
	}
	if len(p) != repo.MaxProblems {
		t.Errorf("%d problems kept, want the cap %d", len(p), repo.MaxProblems)
	}
}
