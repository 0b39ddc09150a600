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

func TestLogChecker_Ledger(t *testing.T) {
	entry := func(seq int64, kind string, amount, balance int64) *events.Event {
		return &events.Event{ConversationID: events.LedgerStreamPrefix + "u", Seq: seq, Pos: seq, Type: events.TypeLedgerEntry,
			Extra: map[string]any{"kind": kind, "amount": amount, "balance": balance}}
	}
	var (
		c repo.LogChecker
		p repo.Problems
	)
	for _, e := range []*events.Event{
		entry(1, "credit", 100, 100),
		entry(2, "debit", 30, 70),
		entry(3, "debit", 70, 0),
		entry(4, "credit", 5, 5),
	} {
		c.Check(e, &p)
	}
	if len(p) != 0 {
		t.Fatalf("a sound ledger: problems %v", p)
	}
	c.Check(entry(5, "debit", 1, 5), &p)   // the debit not taken off
	c.Check(entry(6, "debit", 2, 3), &p)   // sound again, from the balance stated
	c.Check(entry(7, "debit", 10, -7), &p) // overdrawn
	c.Check(entry(8, "refund", 1, 0), &p)  // no such kind
	c.Check(entry(9, "debit", -5, 5), &p)  // a debit that adds
	want := []string{
		`ledger "~ledger/u": seq 5 (debit of 1) states balance 5; the entries before it make 4`,
		`ledger "~ledger/u": seq 7 (debit of 10) states balance -7; the entries before it make -7`,
		`ledger "~ledger/u": seq 8 is not a well-formed entry (kind "refund", amount 1, balance 0)`,
		`ledger "~ledger/u": seq 9 is not a well-formed entry (kind "debit", amount -5, balance 5)`,
	}
	if strings.Join(p, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(p, "\n"), strings.Join(want, "\n"))
	}
}
