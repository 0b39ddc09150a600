package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
)

var _ repo.Management = (*Repo)(nil)

// Fork implements repo.Management.
func (r *Repo) Fork(ctx context.Context, parentID string, atSeq int64, newID string) (repo.Result, error) {
	return repo.ForkWith(ctx, r, parentID, atSeq, newID)
}

// forkSeq checks a conversation_forked event about to be stored as its
// conversation's first and returns its seq: the parent's seq + 1, so the
// branch's seqs continue its inherited history.
func (w *writer) forkSeq(ev *events.Event, keepSeq bool, head int64) (int64, error) {
	if head > 0 {
		return 0, fmt.Errorf("%w: %q has events; a conversation_forked must be its first",
			repo.ErrConversationExists, ev.ConversationID)
	}
	parent, _ := ev.ExtraString("parent_id")
	at, _ := ev.ExtraInt("parent_seq")
	if keepSeq && ev.Seq != at+1 {
		return 0, &events.FieldError{Field: "seq", Reason: fmt.Sprintf(
			"a conversation_forked is stored at its parent_seq + 1 (%d), not %d", at+1, ev.Seq)}
	}
	ph, err := w.head(parent)
	if err != nil {
		return 0, err
	}
	if ph == 0 {
		return 0, fmt.Errorf("fork parent %q has no events: %w", parent, repo.ErrNotFound)
	}
	if at > ph {
		return 0, &events.FieldError{Field: "extra.parent_seq", Reason: fmt.Sprintf(
			"is %d, beyond the head of %q (%d)", at, parent, ph)}
	}
	segs, err := w.c.lineage(parent)
	if err != nil {
		return 0, err
	}
	if len(segs) >= repo.MaxLineageDepth {
		return 0, &events.FieldError{Field: "extra.parent_id", Reason: fmt.Sprintf(
			"forks may nest %d deep at most", repo.MaxLineageDepth)}
	}
	return at + 1, nil
}

// recordBranch stores a branch's lineage after its conversation_forked.
func (w *writer) recordBranch(ev *events.Event) error {
	parent, _ := ev.ExtraString("parent_id")
	at, _ := ev.ExtraInt("parent_seq")
	return w.exec(qBranchPut, ev.ConversationID, parent, at)
}

// checkTitle refuses a title another conversation holds, as committed or
// as set earlier in this transaction (the read model is written at
// commit).
func (w *writer) checkTitle(conv, title string) error {
	if title == "" {
		return nil
	}
	if holder, ok := w.txnTitles[title]; ok {
		if holder != conv {
			return &repo.TitleTakenError{Title: title, ConversationID: holder}
		}
		return nil
	}
	s, err := w.c.stmt(qTitleHolder)
	if err != nil {
		return err
	}
	defer s.Reset()
	bind(s, title, conv)
	if s.Step() {
		holder := s.ColumnText(0)
		if t, ok := w.txnTitleOf[holder]; ok && t != title {
			return nil // renamed earlier in this transaction
		}
		return &repo.TitleTakenError{Title: title, ConversationID: holder}
	}
	return s.Err()
}

// noteTitle records a title set in this transaction.
func (w *writer) noteTitle(conv, title string) {
	if old, ok := w.txnTitleOf[conv]; ok && w.txnTitles[old] == conv {
		delete(w.txnTitles, old)
	}
	w.txnTitleOf[conv] = title
	if title != "" {
		w.txnTitles[title] = conv
	}
}

// currentTitle is the conversation's title as this transaction sees it.
func (w *writer) currentTitle(conv string) (string, error) {
	if t, ok := w.txnTitleOf[conv]; ok {
		return t, nil
	}
	s, err := w.c.stmt(qTitleOf)
	if err != nil {
		return "", err
	}
	defer s.Reset()
	s.BindText(1, conv)
	if s.Step() {
		return s.ColumnText(0), nil
	}
	return "", s.Err()
}

// SetTitle implements repo.Management.
func (r *Repo) SetTitle(ctx context.Context, conversationID, title string, opts repo.TitleOptions) (repo.Result, error) {
	if conversationID == "" {
		return repo.Result{}, &events.FieldError{Field: "conversation_id", Reason: "is required"}
	}
	title = events.SanitizeTitle(title)
	if opts.Next && title == "" {
		return repo.Result{}, &events.FieldError{Field: "title", Reason: "the next title of a lineage needs a title to start from"}
	}
	var res repo.Result
	err := r.run(ctx, func(w *writer) error {
		cur, err := w.currentTitle(conversationID)
		if err != nil {
			return err
		}
		if opts.Next {
			if title, err = w.nextTitle(conversationID, title, cur); err != nil {
				return err
			}
		}
		if title == cur {
			ev, found, err := lookupRow(w.c, qLatestTitleSet, conversationID)
			if err != nil {
				return err
			}
			if t, _ := repo.TitleSetBy(&ev); found && t == title {
				res = repo.Result{Event: ev, Outcome: repo.Duplicate}
				return nil
			}
			if !found && title == "" {
				res = repo.Result{Event: events.Event{ConversationID: conversationID}, Outcome: repo.Duplicate}
				return nil // no title to clear
			}
		}
		p := w.repo.prepare(events.Event{
			ConversationID: conversationID,
			Type:           events.TypeTitleSet,
			Extra:          map[string]any{"title": title},
		}, false)
		res, err = w.appendOne(&p, repo.AppendOptions{})
		return err
	})
	return res, err
}

// nextTitle is the next free title of base's lineage, or the
// conversation's current title when that is in the lineage already.
func (w *writer) nextTitle(conv, title, cur string) (string, error) {
	base, _ := repo.TitleLineage(title)
	if cb, _ := repo.TitleLineage(cur); cur != "" && cb == base {
		return cur, nil
	}
	top := int64(0)
	s, err := w.c.stmt(qTitleLineage)
	if err != nil {
		return "", err
	}
	bind(s, base)
	for s.Step() {
		holder, t := s.ColumnText(0), s.ColumnText(1)
		if nt, ok := w.txnTitleOf[holder]; ok && nt != t {
			continue
		}
		if b, n := repo.TitleLineage(t); b == base {
			top = max(top, n)
		}
	}
	err = s.Err()
	s.Reset()
	if err != nil {
		return "", err
	}
	for t := range w.txnTitles {
		if b, n := repo.TitleLineage(t); b == base {
			top = max(top, n)
		}
	}
	return repo.TitleInLineage(base, top+1), nil
}

// Resolve implements repo.Management.
func (r *Repo) Resolve(ctx context.Context, ref string) (string, error) {
	if ref == "" {
		return "", &events.FieldError{Field: "ref", Reason: "is empty (give an id, an id prefix or a title)"}
	}
	var id string
	err := r.read(ctx, func(c *conn) error {
		if _, found, err := scalar(c, qConversationExists, ref); err != nil || found {
			id = ref
			return err
		}
		if t := events.SanitizeTitle(ref); t != "" {
			base, n := repo.TitleLineage(t)
			best := int64(0)
			s, err := c.stmt(qTitleLineage)
			if err != nil {
				return err
			}
			bind(s, base)
			for s.Step() {
				holder, title := s.ColumnText(0), s.ColumnText(1)
				b, m := repo.TitleLineage(title)
				switch {
				case b != base:
				case n > 1 && m == n: // "t #2" names that one
					id, best = holder, math.MaxInt64
				case n == 1 && m > best: // "t" names the newest of its lineage
					id, best = holder, m
				}
			}
			err = s.Err()
			s.Reset()
			if err != nil || id != "" {
				return err
			}
		}
		s, err := c.stmt(qIDPrefix)
		if err != nil {
			return err
		}
		defer s.Reset()
		// Ids are UTF-8, which never holds the byte 0xff: every id
		// starting with ref sorts below ref+"\xff".
		bind(s, ref, ref+"\xff")
		var matches []string
		for s.Step() {
			matches = append(matches, s.ColumnText(0))
		}
		if err := s.Err(); err != nil {
			return err
		}
		switch len(matches) {
		case 0:
			return fmt.Errorf("no conversation has the id, id prefix or title %q: %w", ref, repo.ErrNotFound)
		case 1:
			id = matches[0]
			return nil
		}
		return &repo.AmbiguousError{Ref: ref, Matches: matches}
	})
	return id, err
}

// scalar runs a query returning at most one value.
func scalar(c *conn, query string, args ...any) (string, bool, error) {
	s, err := c.stmt(query)
	if err != nil {
		return "", false, err
	}
	defer s.Reset()
	if err := bind(s, args...); err != nil {
		return "", false, err
	}
	if s.Step() {
		return s.ColumnText(0), true, nil
	}
	return "", false, s.Err()
}

// UserUsage implements repo.Management.
func (r *Repo) UserUsage(ctx context.Context, user string) (events.Usage, error) {
	var total events.Usage
	err := r.read(ctx, func(c *conn) error {
		s, err := c.stmt(qUserSummaries)
		if err != nil {
			return err
		}
		defer s.Reset()
		s.BindText(1, user)
		for s.Step() {
			var sum repo.Summary
			if err := json.Unmarshal(s.ColumnRawText(0), &sum); err != nil {
				return fmt.Errorf("sqlite: decode summary: %w", err)
			}
			total = total.Add(&sum.Usage)
		}
		return s.Err()
	})
	return total, err
}

// Delete implements repo.Management.
func (r *Repo) Delete(ctx context.Context, conversationID string, opts repo.DeleteOptions) ([]string, error) {
	if conversationID == "" {
		return nil, &events.FieldError{Field: "conversation_id", Reason: "is required"}
	}
	var erased []string
	err := r.run(ctx, func(w *writer) error {
		tree, err := w.descendants(conversationID)
		if err != nil {
			return err
		}
		if len(tree) > 1 && !opts.Cascade {
			return &repo.HasBranchesError{ConversationID: conversationID, Branches: tree[1:]}
		}
		erased, err = w.eraseAll(tree)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.checkpointAfterErase(ctx, len(erased))
	return erased, nil
}

// Prune implements repo.Management.
func (r *Repo) Prune(ctx context.Context, q repo.PruneQuery) ([]string, error) {
	if q.Before.IsZero() {
		return nil, &events.FieldError{Field: "before", Reason: "is required (prune conversations last active before it)"}
	}
	var erased []string
	err := r.run(ctx, func(w *writer) error {
		s, err := w.c.stmt(qPruneCandidates)
		if err != nil {
			return err
		}
		bind(s, q.Before.UnixNano(), q.Source)
		candidates := map[string]bool{}
		var order []string
		for s.Step() {
			id := s.ColumnText(0)
			candidates[id] = true
			order = append(order, id)
		}
		err = s.Err()
		s.Reset()
		if err != nil {
			return err
		}
		var doomed []string
		seen := map[string]bool{}
		for _, id := range order {
			tree, err := w.descendants(id)
			if err != nil {
				return err
			}
			// A conversation goes only with all its branches: a live
			// branch still reads its history through it.
			if !allIn(tree, candidates) {
				continue
			}
			for _, t := range tree {
				if !seen[t] {
					seen[t] = true
					doomed = append(doomed, t)
				}
			}
		}
		erased, err = w.eraseAll(doomed)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.checkpointAfterErase(ctx, len(erased))
	return erased, nil
}

func allIn(ids []string, set map[string]bool) bool {
	for _, id := range ids {
		if !set[id] {
			return false
		}
	}
	return true
}

// descendants returns conv and every branch under it, conv first.
func (w *writer) descendants(conv string) ([]string, error) {
	out := []string{conv}
	for i := 0; i < len(out); i++ {
		s, err := w.c.stmt(qBranchesOf)
		if err != nil {
			return nil, err
		}
		s.BindText(1, out[i])
		for s.Step() {
			out = append(out, s.ColumnText(0))
		}
		err = s.Err()
		s.Reset()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// eraseAll erases conversations and returns those that held anything.
// secure_delete overwrites the freed content, so erased text does not
// linger in the file's free pages.
func (w *writer) eraseAll(ids []string) ([]string, error) {
	if len(ids) == 0 {
		return []string{}, nil
	}
	if err := w.c.db.Exec(qSecureDeleteOn); err != nil {
		return nil, fmt.Errorf("sqlite: secure delete: %w", err)
	}
	defer w.c.db.Exec(qSecureDeleteOff)
	erased := []string{}
	for _, id := range ids {
		head, err := w.head(id)
		if err != nil {
			return nil, err
		}
		if head > 0 {
			erased = append(erased, id)
		}
		if err := w.erase(id); err != nil {
			return nil, err
		}
	}
	slices.Sort(erased)
	return erased, nil
}

// erase removes one conversation and everything derived from it.
func (w *writer) erase(conv string) error {
	if err := w.exec(qEraseSearch, conv, w.lastPos); err != nil {
		return fmt.Errorf("sqlite: erase %q from search: %w", conv, err)
	}
	for _, q := range []string{qEraseEvents, qEraseTurns, qEraseSummary, qEraseBranch} {
		if err := w.exec(q, conv); err != nil {
			return fmt.Errorf("sqlite: erase %q: %w", conv, err)
		}
	}
	// Events this transaction wrote for it are gone: the read models
	// must not take them in at commit.
	w.txnEvents = slices.DeleteFunc(w.txnEvents, func(e events.Event) bool { return e.ConversationID == conv })
	w.pending[conv] = 0
	delete(w.summaries, conv)
	w.noteTitle(conv, "")
	return nil
}

// checkpointAfterErase moves the WAL into the database file and truncates
// it, so erased content leaves the WAL too. Best effort: a reader holding
// an old snapshot makes it wait for the next checkpoint.
func (r *Repo) checkpointAfterErase(ctx context.Context, erased int) {
	if erased == 0 || r.memory {
		return
	}
	err := r.read(ctx, func(c *conn) error { return c.db.Exec(qCheckpoint) })
	if err != nil {
		r.opts.Logger.Debug("checkpoint after erasure", "err", err)
	}
}

// history folds a branch's inherited events (its parent's lineage up to
// the seq it forks at) into a summary, for the branch's read model.
func (w *writer) history(parent string, until int64) (repo.Summary, error) {
	segs, err := w.c.lineage(parent)
	if err != nil {
		return repo.Summary{}, err
	}
	var s repo.Summary
	for _, sp := range repo.Spans(segs, repo.Range{UntilSeq: until}) {
		evs, err := w.scan(qRange, func(events.Event) bool { return true }, sp.ConversationID, sp.AfterSeq, sp.UntilSeq, int64(math.MaxInt64))
		if err != nil {
			return repo.Summary{}, err
		}
		for i := range evs {
			projection.Summarize(&s, &evs[i])
		}
	}
	return s, nil
}
