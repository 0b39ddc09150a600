package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
)

var _ repo.Management = (*Repo)(nil)

// lockKeys returns the sorted, distinct advisory lock keys of
// conversations and title lineages: one array taken in one statement, in
// key order, so that no two writers wait on each other in a cycle.
func (r *Repo) lockKeys(convs, titleBases []string) []int64 {
	keys := make([]int64, 0, len(convs)+len(titleBases))
	for _, c := range convs {
		keys = append(keys, r.lockKey("conversation", c))
	}
	for _, b := range titleBases {
		keys = append(keys, r.lockKey("title", b))
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return slices.Compact(keys)
}

// Forks and lineage.

// branch is a branch's link in its lineage.
type branch struct {
	parent string
	at     int64
}

// lineageOf builds the segments of a conversation's history from its
// ancestry, nearest first (see repo.Management).
func lineageOf(conv string, links []branch) []repo.Segment {
	segs := []repo.Segment{{ConversationID: conv}}
	for _, l := range links {
		segs[len(segs)-1].AfterSeq = l.at
		segs = append(segs, repo.Segment{ConversationID: l.parent, UntilSeq: l.at})
	}
	slices.Reverse(segs)
	for i := 0; i+1 < len(segs); i++ {
		segs[i].UntilSeq = segs[i+1].AfterSeq
	}
	return segs
}

// readLinks reads a conversation's ancestry, nearest first, in one
// recursive query.
func readLinks(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, conv string) ([]branch, error) {
	rows, err := q.Query(ctx, qAncestry, conv, int32(repo.MaxLineageDepth+1))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var links []branch
	for rows.Next() {
		var b branch
		if err := rows.Scan(&b.parent, &b.at); err != nil {
			return nil, err
		}
		links = append(links, b)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(links) > repo.MaxLineageDepth {
		return nil, fmt.Errorf("postgres: lineage of %q is deeper than %d", conv, repo.MaxLineageDepth)
	}
	return links, nil
}

// Lineage implements repo.Management.
func (r *Repo) Lineage(ctx context.Context, conversationID string) ([]repo.Segment, error) {
	var segs []repo.Segment
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		links, err := readLinks(ctx, c, conversationID)
		segs = lineageOf(conversationID, links)
		return err
	})
	return segs, err
}

// links returns a conversation's ancestry as the transaction sees it:
// forks staged in it, then the branches table.
func (t *txn) links(conv string) ([]branch, error) {
	var links []branch
	for id := conv; ; {
		if b, ok := t.branches[id]; ok {
			links = append(links, b)
			id = b.parent
		} else {
			more, err := readLinks(t.ctx, t.conn, id)
			if err != nil {
				return nil, t.readFailed(err)
			}
			links = append(links, more...)
			break
		}
		if len(links) > repo.MaxLineageDepth {
			return nil, fmt.Errorf("postgres: lineage of %q is deeper than %d", conv, repo.MaxLineageDepth)
		}
	}
	return links, nil
}

// readFailed marks the transaction broken by a failed read inside it (the
// server aborted it) and returns the error to give up with.
func (t *txn) readFailed(err error) error {
	if t.conn.IsClosed() {
		err = &connLostError{err}
	}
	if t.broken == nil {
		t.broken = err
	}
	return err
}

// forkSeq checks a conversation_forked event about to be stored as its
// conversation's first and returns its seq: the parent's seq + 1, so the
// branch's seqs continue its inherited history.
func (t *txn) forkSeq(ev *events.Event, keepSeq bool, head int64) (int64, error) {
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
	ph := t.heads[parent]
	if ph == 0 {
		return 0, fmt.Errorf("fork parent %q has no events: %w", parent, repo.ErrNotFound)
	}
	if at > ph {
		return 0, &events.FieldError{Field: "extra.parent_seq", Reason: fmt.Sprintf(
			"is %d, beyond the head of %q (%d)", at, parent, ph)}
	}
	links, err := t.links(parent)
	if err != nil {
		return 0, err
	}
	if len(links)+1 >= repo.MaxLineageDepth {
		return 0, &events.FieldError{Field: "extra.parent_id", Reason: fmt.Sprintf(
			"forks may nest %d deep at most", repo.MaxLineageDepth)}
	}
	return at + 1, nil
}

// recordBranch stores a branch's link after its conversation_forked.
func (t *txn) recordBranch(ev *events.Event) {
	parent, _ := ev.ExtraString("parent_id")
	at, _ := ev.ExtraInt("parent_seq")
	conv := ev.ConversationID
	t.queue(conv, qBranchPut, conv, parent, at)
	if t.branches == nil {
		t.branches = map[string]branch{}
	}
	t.branches[conv] = branch{parent: parent, at: at}
	t.record(func() { delete(t.branches, conv) })
}

// history folds a branch's inherited events (its parent's lineage up to
// the seq it forks at) into a summary, for the branch's read model: the
// events stored, and those staged in this transaction.
func (t *txn) history(parent string, until int64) (repo.Summary, error) {
	links, err := t.links(parent)
	if err != nil {
		return repo.Summary{}, err
	}
	var s repo.Summary
	for _, sp := range repo.Spans(lineageOf(parent, links), repo.Range{UntilSeq: until}) {
		evs, err := t.query(t.ctx, qRange, sp.ConversationID, sp.AfterSeq, sp.UntilSeq, int64(math.MaxInt64))
		if err != nil {
			return repo.Summary{}, t.readFailed(err)
		}
		for _, st := range t.staged {
			if st.ev.ConversationID == sp.ConversationID && st.ev.Seq > sp.AfterSeq && st.ev.Seq <= sp.UntilSeq {
				evs = append(evs, st.ev)
			}
		}
		slices.SortFunc(evs, func(a, b events.Event) int { return int(a.Seq - b.Seq) })
		for i := range evs {
			projection.Summarize(&s, &evs[i])
		}
	}
	return s, nil
}

// Fork implements repo.Management.
func (r *Repo) Fork(ctx context.Context, parentID string, atSeq int64, newID string) (repo.Result, error) {
	return repo.ForkWith(ctx, r, parentID, atSeq, newID)
}

// Titles.

// holders returns the conversations holding title as this transaction
// sees it.
func (t *txn) holders(title string) []string {
	var out []string
	if conv, ok := t.txnTitles[title]; ok {
		out = append(out, conv)
	}
	for _, h := range t.titles[title] {
		// A holder renamed (or erased) in this transaction holds it no
		// more.
		if nt, ok := t.txnTitleOf[h]; ok && nt != title {
			continue
		}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// checkTitle refuses a title another conversation holds.
func (t *txn) checkTitle(conv, title string) error {
	if title == "" {
		return nil
	}
	for _, h := range t.holders(title) {
		if h != conv {
			return &repo.TitleTakenError{Title: title, ConversationID: h}
		}
	}
	return nil
}

// noteTitle records a title set (or cleared) in this transaction.
func (t *txn) noteTitle(conv, title string) {
	if t.txnTitleOf == nil {
		t.txnTitles, t.txnTitleOf = map[string]string{}, map[string]string{}
	}
	oldOf, hadOf := t.txnTitleOf[conv]
	oldHolder, hadHolder := t.txnTitles[title]
	var freed string
	if hadOf && t.txnTitles[oldOf] == conv {
		freed = oldOf
		delete(t.txnTitles, oldOf)
	}
	t.txnTitleOf[conv] = title
	if title != "" {
		t.txnTitles[title] = conv
	}
	t.record(func() {
		if title != "" {
			if hadHolder {
				t.txnTitles[title] = oldHolder
			} else {
				delete(t.txnTitles, title)
			}
		}
		if freed != "" {
			t.txnTitles[freed] = conv
		}
		if hadOf {
			t.txnTitleOf[conv] = oldOf
		} else {
			delete(t.txnTitleOf, conv)
		}
	})
}

// currentTitle is the conversation's title as this transaction sees it.
func (t *txn) currentTitle(conv string) string {
	if title, ok := t.txnTitleOf[conv]; ok {
		return title
	}
	if s := t.sums[conv]; s != nil {
		return s.Title
	}
	return ""
}

// nextTitle is the next free title of title's lineage, or the
// conversation's current title when that is in the lineage already.
func (t *txn) nextTitle(conv, title string) string {
	base, _ := repo.TitleLineage(title)
	if cur := t.currentTitle(conv); cur != "" {
		if cb, _ := repo.TitleLineage(cur); cb == base {
			return cur
		}
	}
	top := int64(0)
	for existing := range t.titles {
		if b, n := repo.TitleLineage(existing); b == base && len(t.holders(existing)) > 0 {
			top = max(top, n)
		}
	}
	for existing := range t.txnTitles {
		if b, n := repo.TitleLineage(existing); b == base {
			top = max(top, n)
		}
	}
	return repo.TitleInLineage(base, top+1)
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
	var pl plan
	pl.conv(conversationID)
	pl.title(title)
	var res repo.Result
	pos, err := r.run(ctx, &pl, func(t *txn) error {
		res = repo.Result{}
		if opts.Next {
			title = t.nextTitle(conversationID, title)
		}
		if cur := t.currentTitle(conversationID); title == cur {
			rows, err := t.query(t.ctx, qLatestTitleSet, conversationID)
			if err != nil {
				return t.readFailed(err)
			}
			if len(rows) > 0 {
				if tt, _ := repo.TitleSetBy(&rows[0]); tt == title {
					res = repo.Result{Event: rows[0], Outcome: repo.Duplicate}
					return nil
				}
			} else if title == "" {
				res = repo.Result{Event: events.Event{ConversationID: conversationID}, Outcome: repo.Duplicate}
				return nil // no title to clear
			}
		}
		p := r.prepare(events.Event{
			ConversationID: conversationID,
			Type:           events.TypeTitleSet,
			Extra:          map[string]any{"title": title},
		}, false)
		var err error
		res, err = t.appendOne(&p, repo.AppendOptions{})
		return answer(err)
	})
	if err != nil {
		return repo.Result{}, err
	}
	if res.Event.Pos == 0 {
		res.Event.Pos = pos[res.Event.ID]
	}
	return res, nil
}

// Resolve implements repo.Management.
func (r *Repo) Resolve(ctx context.Context, ref string) (string, error) {
	if ref == "" {
		return "", &events.FieldError{Field: "ref", Reason: "is empty (give an id, an id prefix or a title)"}
	}
	var id string
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		id = ""
		var n int64
		if err := c.QueryRow(ctx, qConversationExists, ref).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			id = ref
			return nil
		}
		if t := events.SanitizeTitle(ref); t != "" {
			base, want := repo.TitleLineage(t)
			rows, err := c.Query(ctx, qTitleLineages, []string{base})
			if err != nil {
				return err
			}
			best := int64(0)
			for rows.Next() {
				var holder, title string
				if err := rows.Scan(&holder, &title); err != nil {
					rows.Close()
					return err
				}
				b, m := repo.TitleLineage(title)
				switch {
				case b != base:
				case want > 1 && m == want: // "t #2" names that one
					id, best = holder, math.MaxInt64
				case want == 1 && m > best: // "t" names the newest of its lineage
					id, best = holder, m
				}
			}
			if err := rows.Err(); err != nil || id != "" {
				return err
			}
		}
		// Every id starting with ref sorts below ref followed by the
		// highest code point (bytewise: the column is COLLATE "C");
		// starts_with settles the rest.
		rows, err := c.Query(ctx, qIDPrefix, ref, ref+"\U0010FFFF")
		if err != nil {
			return err
		}
		matches, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		switch len(matches) {
		case 0:
			return &fnError{fmt.Errorf("no conversation has the id, id prefix or title %q: %w", ref, repo.ErrNotFound)}
		case 1:
			id = matches[0]
			return nil
		}
		return &fnError{&repo.AmbiguousError{Ref: ref, Matches: matches}}
	})
	var fe *fnError
	if errors.As(err, &fe) {
		return "", fe.err
	}
	return id, err
}

// UserUsage implements repo.Management.
func (r *Repo) UserUsage(ctx context.Context, user string) (events.Usage, error) {
	var total events.Usage
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		total = events.Usage{}
		query, args := qUserSummaries, []any{noNUL(user)}
		if user == "" {
			query, args = qNoUserSummaries, nil
		}
		rows, err := c.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var raw []byte
			if err := rows.Scan(&raw); err != nil {
				return err
			}
			var sum repo.Summary
			if err := json.Unmarshal(raw, &sum); err != nil {
				return fmt.Errorf("postgres: decode summary: %w", err)
			}
			total = total.Add(&sum.Usage)
		}
		return rows.Err()
	})
	return total, err
}

// Erasure.

// errReplan is a deletion that found, under its locks, conversations it
// had not locked (a branch forked, a conversation ended since it
// planned): it plans again.
var errReplan = errors.New("the conversations to erase changed while planning")

// descendants returns conv and every branch under it, conv first, as the
// committed branches table and this transaction's forks have them.
func (t *txn) descendants(conv string) ([]string, error) {
	rows, err := t.conn.Query(t.ctx, qDescendants, conv)
	if err != nil {
		return nil, t.readFailed(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, t.readFailed(err)
	}
	for i := 0; i < len(out); i++ {
		for b, l := range t.branches {
			if l.parent == out[i] && !slices.Contains(out, b) {
				out = append(out, b)
			}
		}
	}
	return out, nil
}

// eraseAll erases conversations (all locked by the transaction) and
// returns those that held anything, sorted.
func (t *txn) eraseAll(ids []string) []string {
	erased := []string{}
	for _, id := range ids {
		if t.heads[id] > 0 {
			erased = append(erased, id)
		}
		t.erase(id)
	}
	slices.Sort(erased)
	return erased
}

// erase removes one conversation and everything derived from it: its
// rows go first at commit, before the events this transaction stages
// for it after the erasure; what it staged or queued for it before goes
// now.
func (t *txn) erase(conv string) {
	oldStaged, oldQueued := t.staged, t.queued
	oldHead, oldSum := t.heads[conv], t.sums[conv]
	oldBranch, hadBranch := t.branches[conv]
	wasErased := t.erased[conv]
	keys, ids := map[convKey]*storedEvent{}, map[string]*storedEvent{}
	for k, s := range t.byKey {
		if k.conv == conv {
			keys[k] = s
			delete(t.byKey, k)
		}
	}
	for id, s := range t.byID {
		if s.ev.ConversationID == conv {
			ids[id] = s
			delete(t.byID, id)
		}
	}
	turns := map[convKey]*turn{}
	for k, tr := range t.turns {
		if k.conv == conv {
			turns[k] = tr
			t.turns[k] = nil
		}
	}
	if t.erased == nil {
		t.erased = map[string]bool{}
	}
	t.staged = slices.DeleteFunc(slices.Clone(t.staged), func(s *storedEvent) bool { return s.ev.ConversationID == conv })
	t.queued = slices.DeleteFunc(slices.Clone(t.queued), func(q queuedStmt) bool { return q.conv == conv })
	t.heads[conv], t.sums[conv] = 0, nil
	delete(t.branches, conv)
	t.erased[conv] = true
	t.record(func() {
		t.staged, t.queued = oldStaged, oldQueued
		t.heads[conv], t.sums[conv] = oldHead, oldSum
		if hadBranch {
			t.branches[conv] = oldBranch
		}
		if !wasErased {
			delete(t.erased, conv)
		}
		maps2(t.byKey, keys)
		maps2(t.byID, ids)
		maps2(t.turns, turns)
	})
	t.noteTitle(conv, "")
}

// maps2 copies src into dst.
func maps2[K comparable, V any](dst, src map[K]V) {
	for k, v := range src {
		dst[k] = v
	}
}

// erasePlan reads, outside any transaction, what erasing ids takes: the
// conversations and all their branches, to lock.
func (r *Repo) erasePlan(ctx context.Context, ids []string) (*plan, error) {
	var pl plan
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		pl = plan{}
		for _, id := range ids {
			rows, err := c.Query(ctx, qDescendants, id)
			if err != nil {
				return err
			}
			tree, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			for _, c := range tree {
				pl.conv(c)
			}
		}
		return nil
	})
	return &pl, err
}

// Delete implements repo.Management.
func (r *Repo) Delete(ctx context.Context, conversationID string, opts repo.DeleteOptions) ([]string, error) {
	if conversationID == "" {
		return nil, &events.FieldError{Field: "conversation_id", Reason: "is required"}
	}
	for {
		pl, err := r.erasePlan(ctx, []string{conversationID})
		if err != nil {
			return nil, err
		}
		var erased []string
		_, err = r.run(ctx, pl, func(t *txn) error {
			tree, err := t.descendants(conversationID)
			if err != nil {
				return err
			}
			if !t.lockedAll(tree) {
				return answer(errReplan)
			}
			if len(tree) > 1 && !opts.Cascade {
				return answer(&repo.HasBranchesError{ConversationID: conversationID, Branches: tree[1:]})
			}
			erased = t.eraseAll(tree)
			return nil
		})
		if errors.Is(err, errReplan) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return erased, nil
	}
}

func (t *txn) lockedAll(ids []string) bool {
	for _, id := range ids {
		if !t.locked[id] {
			return false
		}
	}
	return true
}

// Prune implements repo.Management.
func (r *Repo) Prune(ctx context.Context, q repo.PruneQuery) ([]string, error) {
	if q.Before.IsZero() {
		return nil, &events.FieldError{Field: "before", Reason: "is required (prune conversations last active before it)"}
	}
	for {
		var candidates []string
		err := r.read(ctx, func(c *pgxpool.Conn) error {
			rows, err := c.Query(ctx, qPruneCandidates, q.Before.UnixNano(), noNUL(q.Source))
			if err != nil {
				return err
			}
			candidates, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		if err != nil {
			return nil, err
		}
		pl, err := r.erasePlan(ctx, candidates)
		if err != nil {
			return nil, err
		}
		var erased []string
		_, err = r.run(ctx, pl, func(t *txn) error {
			rows, err := t.conn.Query(t.ctx, qPruneCandidates, q.Before.UnixNano(), noNUL(q.Source))
			if err != nil {
				return t.readFailed(err)
			}
			now, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return t.readFailed(err)
			}
			set := map[string]bool{}
			for _, id := range now {
				set[id] = true
			}
			var doomed []string
			seen := map[string]bool{}
			for _, id := range now {
				tree, err := t.descendants(id)
				if err != nil {
					return err
				}
				if !t.lockedAll(tree) {
					return answer(errReplan)
				}
				// A conversation goes only with all its branches: a live
				// branch still reads its history through it.
				if !allIn(tree, set) {
					continue
				}
				for _, c := range tree {
					if !seen[c] {
						seen[c] = true
						doomed = append(doomed, c)
					}
				}
			}
			erased = t.eraseAll(doomed)
			return nil
		})
		if errors.Is(err, errReplan) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return erased, nil
	}
}

func allIn(ids []string, set map[string]bool) bool {
	for _, id := range ids {
		if !set[id] {
			return false
		}
	}
	return true
}
