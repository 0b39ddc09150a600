package repo

import (
	"fmt"

	"github.com/chatlog/chatlog/events"
)

// MaxProblems caps the problems a verify lists.
const MaxProblems = 1000

// Problems collects what a verify finds, up to MaxProblems.
type Problems []string

// Report adds a problem.
func (p *Problems) Report(format string, args ...any) {
	if len(*p) < MaxProblems {
		*p = append(*p, fmt.Sprintf(format, args...))
	}
}

// LogChecker checks the log's invariants event by event, in pos order, as
// every backend's VerifyReadModels reads it: pos strictly increasing, each
// conversation's seqs contiguous from 1 (from its parent's seq + 1 for a
// branch), and each user's credit ledger a chain of running balances:
// every entry's balance is the one before it (0 before the first) plus a
// credit or minus a debit, never below zero.
type LogChecker struct {
	heads    map[string]int64
	balances map[string]int64
	lastPos  int64
}

// Check reports what is wrong with e, the next event in pos order.
func (c *LogChecker) Check(e *events.Event, p *Problems) {
	if c.heads == nil {
		c.heads = map[string]int64{}
	}
	if e.Pos <= c.lastPos {
		p.Report("pos %d follows pos %d", e.Pos, c.lastPos)
	}
	c.lastPos = e.Pos
	head, seen := c.heads[e.ConversationID]
	if at, ok := e.ExtraInt("parent_seq"); !seen && ok && e.Type == events.TypeConversationForked {
		head = at // a branch's seqs continue its parent's
	}
	if want := head + 1; e.Seq != want {
		p.Report("conversation %q: seq %d where %d was expected", e.ConversationID, e.Seq, want)
	}
	c.heads[e.ConversationID] = e.Seq
	if e.Type == events.TypeLedgerEntry {
		c.checkEntry(e, p)
	}
}

// checkEntry follows a ledger's running balance. An entry that breaks the
// chain is reported once; the chain goes on from the balance it states, so
// one bad entry does not make every later one look wrong.
func (c *LogChecker) checkEntry(e *events.Event, p *Problems) {
	if c.balances == nil {
		c.balances = map[string]int64{}
	}
	kind, _ := e.ExtraString("kind")
	amount, okAmount := e.ExtraInt("amount")
	stated, okBalance := e.ExtraInt("balance")
	before := c.balances[e.ConversationID]
	want := before
	switch kind {
	case "credit":
		want += amount
	case "debit":
		want -= amount
	}
	switch {
	case !okAmount || amount <= 0 || !okBalance || (kind != "credit" && kind != "debit"):
		p.Report("ledger %q: seq %d is not a well-formed entry (kind %q, amount %v, balance %v)",
			e.ConversationID, e.Seq, kind, e.Extra["amount"], e.Extra["balance"])
	case stated != want || stated < 0:
		p.Report("ledger %q: seq %d (%s of %d) states balance %d; the entries before it make %d",
			e.ConversationID, e.Seq, kind, amount, stated, want)
	}
	c.balances[e.ConversationID] = stated
}

// LastPos is the pos of the last event checked.
func (c *LogChecker) LastPos() int64 { return c.lastPos }
