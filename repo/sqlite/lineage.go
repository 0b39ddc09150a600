package sqlite

import (
	"context"
	"fmt"
	"iter"
	"slices"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// lineage returns the segments a conversation's history is made of, root
// first (see repo.Management): one probe of branches per ancestor, and a
// single segment for a conversation that is no branch.
func (c *conn) lineage(conv string) ([]repo.Segment, error) {
	segs := []repo.Segment{{ConversationID: conv}}
	for id := conv; ; {
		s, err := c.stmt(qBranchOf)
		if err != nil {
			return nil, err
		}
		s.BindText(1, id)
		if !s.Step() {
			err := s.Err()
			s.Reset()
			if err != nil {
				return nil, fmt.Errorf("sqlite: read lineage of %q: %w", conv, err)
			}
			break
		}
		parent, at := s.ColumnText(0), s.ColumnInt64(1)
		s.Reset()
		if len(segs) > repo.MaxLineageDepth {
			return nil, fmt.Errorf("sqlite: lineage of %q is deeper than %d", conv, repo.MaxLineageDepth)
		}
		segs[len(segs)-1].AfterSeq = at
		segs = append(segs, repo.Segment{ConversationID: parent, UntilSeq: at})
		id = parent
	}
	slices.Reverse(segs)
	// Each ancestor is cut at the seq its child forks at.
	for i := 0; i+1 < len(segs); i++ {
		segs[i].UntilSeq = segs[i+1].AfterSeq
	}
	return segs, nil
}

// Lineage implements repo.Management.
func (r *Repo) Lineage(ctx context.Context, conversationID string) ([]repo.Segment, error) {
	var segs []repo.Segment
	err := r.read(ctx, func(c *conn) error {
		var err error
		segs, err = c.lineage(conversationID)
		return err
	})
	return segs, err
}

// Events implements repo.Repo. A branch's history runs through its
// ancestors (repo.Management): their events come first, each cut at the
// seq its child forks at.
func (r *Repo) Events(ctx context.Context, conversationID string, rg repo.Range) iter.Seq2[events.Event, error] {
	return func(yield func(events.Event, error) bool) {
		segs, err := r.Lineage(ctx, conversationID)
		if err != nil {
			yield(events.Event{}, err)
			return
		}
		left := rg.Limit
		for _, sp := range repo.Spans(segs, rg) {
			for {
				n := pageSize
				if rg.Limit > 0 {
					if left <= 0 {
						return
					}
					n = min(n, left)
				}
				var page []events.Event
				if rg.Reverse {
					page, err = r.page(ctx, qRangeDesc, sp.ConversationID, sp.AfterSeq, sp.UntilSeq, int64(n))
				} else {
					page, err = r.page(ctx, qRange, sp.ConversationID, sp.AfterSeq, sp.UntilSeq, int64(n))
				}
				if err != nil {
					yield(events.Event{}, err)
					return
				}
				for _, e := range page {
					if !yield(e, nil) {
						return
					}
					if rg.Reverse {
						sp.UntilSeq = e.Seq - 1
					} else {
						sp.AfterSeq = e.Seq
					}
					left--
				}
				if len(page) < n {
					break
				}
			}
		}
	}
}

// Last implements repo.Repo.
func (r *Repo) Last(ctx context.Context, conversationID string, n int) ([]events.Event, error) {
	if n <= 0 {
		return []events.Event{}, ctx.Err()
	}
	out := make([]events.Event, 0, min(n, pageSize))
	for e, err := range r.Events(ctx, conversationID, repo.Range{Limit: n, Reverse: true}) {
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	slices.Reverse(out)
	return out, nil
}

// ContextMarkers implements repo.Repo: the newest segment of the lineage
// holding a marker wins.
func (r *Repo) ContextMarkers(ctx context.Context, conversationID string, untilSeq int64) (repo.ContextMarkers, error) {
	var m repo.ContextMarkers
	err := r.read(ctx, func(c *conn) error {
		segs, err := c.lineage(conversationID)
		if err != nil {
			return err
		}
		clearFound := false
		for _, sp := range repo.Spans(segs, repo.Range{UntilSeq: untilSeq, Reverse: true}) {
			if m.Prompt == nil {
				for _, q := range []string{qLatestStartedIn, qLatestPromptSetIn} {
					ev, found, err := lookupRow(c, q, sp.ConversationID, sp.AfterSeq, sp.UntilSeq)
					if err != nil {
						return err
					}
					if found && (m.Prompt == nil || ev.Seq > m.Prompt.Seq) {
						m.Prompt = &ev
					}
				}
			}
			if !clearFound {
				s, err := c.stmt(qLatestClearIn)
				if err != nil {
					return err
				}
				bind(s, sp.ConversationID, sp.AfterSeq, sp.UntilSeq)
				if s.Step() {
					m.ClearSeq, clearFound = s.ColumnInt64(0), true
				}
				err = s.Err()
				s.Reset()
				if err != nil {
					return err
				}
			}
			if m.Prompt != nil && clearFound {
				break
			}
		}
		return nil
	})
	return m, err
}
