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
// every backend's VerifyReadModels reads it: pos strictly increasing, and
// each conversation's seqs contiguous from 1 (from its parent's seq + 1
// for a branch).
type LogChecker struct {
	heads   map[string]int64
	lastPos int64
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
}

// LastPos is the pos of the last event checked.
func (c *LogChecker) LastPos() int64 { return c.lastPos }
