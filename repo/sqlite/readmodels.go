package sqlite

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/internal/searchtext"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
)

// searchVersion is the version of what the search index holds; bump it
// when searchable_messages or the tokenizer changes.
const searchVersion = 1

// applyReadModels folds events just inserted (in this transaction) into the
// read models and moves their checkpoint to the transaction's last pos.
func (w *writer) applyReadModels(evs []events.Event) error {
	dirty := map[string]*repo.Summary{}
	messages := false
	for i := range evs {
		e := &evs[i]
		if e.Type == events.TypeAssistantDelta || !projection.Listed(e.ConversationID) {
			continue // chunks and account streams leave summaries alone (projection.Summarize)
		}
		switch e.Type {
		case events.TypeUserMessage, events.TypeAssistantMessage, events.TypeToolResult:
			messages = true
		}
		s, err := w.summary(e.ConversationID)
		if err != nil {
			return err
		}
		if err := projection.SummarizeWith(s, e, w.history); err != nil {
			return err
		}
		dirty[e.ConversationID] = s
	}
	for _, s := range dirty {
		if err := w.putSummary(s); err != nil {
			return err
		}
	}
	// One statement indexes the whole batch: FTS5 flushes its pending
	// terms to disk at every statement of a transaction, and one insert
	// per message made tiny segments and constant merging (costlier than
	// writing the events themselves). The index takes messages only,
	// which account streams cannot hold (events.Validate), so it never
	// needs projection.Listed.
	first, last := evs[0].Pos, evs[len(evs)-1].Pos
	if messages { // a commit of chunks alone has nothing to index
		if err := w.exec(qSearchIndexRange, first, last); err != nil {
			return fmt.Errorf("sqlite: index messages for search: %w", err)
		}
	}
	return w.exec(qProjectionsSet, last)
}

// summary returns the cached (or stored) read model of a conversation.
func (w *writer) summary(conv string) (*repo.Summary, error) {
	if s, ok := w.summaries[conv]; ok {
		return s, nil
	}
	if w.summaries == nil || len(w.summaries) > 1<<14 {
		w.summaries = make(map[string]*repo.Summary)
	}
	st, err := w.c.stmt(qSummaryGet)
	if err != nil {
		return nil, err
	}
	defer st.Reset()
	st.BindText(1, conv)
	s := &repo.Summary{}
	if st.Step() {
		if err := json.Unmarshal(st.ColumnRawText(0), s); err != nil {
			return nil, fmt.Errorf("sqlite: decode summary of %q: %w", conv, err)
		}
	} else if err := st.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read summary: %w", err)
	}
	w.summaries[conv] = s
	return s, nil
}

func (w *writer) putSummary(s *repo.Summary) error {
	// MarshalJSON directly: json.Marshal would validate and compact its
	// output a second time, on the writer, once per conversation per commit.
	b, err := s.MarshalJSON()
	if err != nil {
		return err
	}
	ended := int64(0)
	if s.Ended {
		ended = 1
	}
	st, err := w.c.stmt(qSummaryPut)
	if err != nil {
		return err
	}
	bind(st, s.ConversationID, s.LastActiveAt.UnixNano(), s.User, s.Source, s.Title, ended)
	st.BindRawText(7, b)
	if err := st.Exec(); err != nil {
		return fmt.Errorf("sqlite: write summary of %q: %w", s.ConversationID, err)
	}
	return nil
}

// checkpoint is a projections row.
type checkpoint struct {
	version int
	pos     int64
}

func readCheckpoints(c *conn) (map[string]checkpoint, error) {
	s, err := c.stmt(qProjections)
	if err != nil {
		return nil, err
	}
	defer s.Reset()
	out := map[string]checkpoint{}
	for s.Step() {
		out[s.ColumnText(0)] = checkpoint{version: s.ColumnInt(1), pos: s.ColumnInt64(2)}
	}
	return out, s.Err()
}

// catchUp brings the read models up to the log at Open: rebuilt when built
// by another version of the code (or never), else fed the events after
// their checkpoint (a database written before they existed).
func (r *Repo) catchUp(ctx context.Context) error {
	var cps map[string]checkpoint
	var last int64
	err := r.run(ctx, func(w *writer) error {
		var err error
		if cps, err = readCheckpoints(w.c); err != nil {
			return err
		}
		last = w.txnPos
		return nil
	})
	if err != nil {
		return err
	}
	conv, search := cps["conversations"], cps["search"]
	if conv.version != projection.SummaryVersion || search.version != searchVersion || conv.pos != search.pos {
		if last > 0 {
			r.opts.Logger.Info("rebuilding read models", "reason", "built by another version", "events_up_to_pos", last)
		}
		return r.RebuildReadModels(ctx, nil)
	}
	const page = 2048
	for from, more := conv.pos, conv.pos < last; more; {
		err := r.run(ctx, func(w *writer) error {
			evs, err := w.scan(qAfterPos, func(events.Event) bool { return true }, from, int64(page))
			if err != nil || len(evs) == 0 {
				more = false
				return err
			}
			more = len(evs) == page
			from = evs[len(evs)-1].Pos
			return w.applyReadModels(evs)
		})
		if err != nil {
			return fmt.Errorf("sqlite: catch read models up: %w", err)
		}
	}
	return nil
}

// Summary implements repo.ReadModels.
func (r *Repo) Summary(ctx context.Context, conversationID string) (repo.Summary, error) {
	var s repo.Summary
	found := false
	err := r.read(ctx, func(c *conn) error {
		st, err := c.stmt(qSummaryGet)
		if err != nil {
			return err
		}
		defer st.Reset()
		st.BindText(1, conversationID)
		if !st.Step() {
			return st.Err()
		}
		found = true
		return json.Unmarshal(st.ColumnRawText(0), &s)
	})
	if err == nil && !found {
		err = fmt.Errorf("conversation %q: %w", conversationID, repo.ErrNotFound)
	}
	return s, err
}

// ListConversations implements repo.ReadModels.
func (r *Repo) ListConversations(ctx context.Context, q repo.ListQuery) (repo.ListPage, error) {
	limit := q.Limit
	switch {
	case limit <= 0:
		limit = 50
	case limit > 1000:
		limit = 1000
	}
	var hasCursor, curTime int64
	var curID string
	if q.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		t, id, ok := strings.Cut(string(b), ":")
		n, perr := strconv.ParseInt(t, 10, 64)
		if err != nil || !ok || perr != nil {
			return repo.ListPage{}, &events.FieldError{Field: "cursor", Reason: "is not a cursor this store returned"}
		}
		hasCursor, curTime, curID = 1, n, id
	}
	page := repo.ListPage{Conversations: []repo.Summary{}}
	err := r.read(ctx, func(c *conn) error {
		st, err := c.stmt(qList)
		if err != nil {
			return err
		}
		defer st.Reset()
		bind(st, q.User, q.Source, hasCursor, curTime, curID, int64(limit+1))
		for st.Step() {
			if len(page.Conversations) == limit {
				last := page.Conversations[limit-1]
				page.NextCursor = base64.RawURLEncoding.EncodeToString(
					[]byte(strconv.FormatInt(last.LastActiveAt.UnixNano(), 10) + ":" + last.ConversationID))
				break
			}
			var s repo.Summary
			if err := json.Unmarshal(st.ColumnRawText(0), &s); err != nil {
				return fmt.Errorf("sqlite: decode summary: %w", err)
			}
			page.Conversations = append(page.Conversations, s)
		}
		return st.Err()
	})
	return page, err
}

// SearchTerms turns anything a user types into an FTS5 query that cannot
// fail: the words (letters, numbers and the accents FTS5 keeps in a word,
// see searchtext) each quoted as a string, so no character is read as
// query syntax. It returns "" when there are none.
func SearchTerms(q string) string {
	return quoteTerms(strings.FieldsFunc(q, func(r rune) bool { return !termRune(r) }))
}

func termRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || searchtext.InWordMark(r)
}

// quoteTerms quotes the first 32 words that hold a letter or number.
func quoteTerms(words []string) string {
	var quoted []string
	for _, w := range words {
		if len(quoted) == 32 {
			break
		}
		if strings.IndexFunc(w, func(r rune) bool { return !searchtext.InWordMark(r) }) >= 0 {
			quoted = append(quoted, `"`+w+`"`)
		}
	}
	return strings.Join(quoted, " ")
}

// errPhrase is how FTS5 refuses a quoted word it splits in two: the index
// keeps no positions, so it cannot match a phrase.
const errPhrase = "phrase queries are not supported"

// termsLikeIndex splits q where FTS5 does, asking it: Go's Unicode tables
// are newer than SQLite's, so a rune Go takes for a letter (a script added
// since, a mark reclassified) can be a separator to FTS5, making a quoted
// word a phrase. Each rune of q beyond ASCII is tried alone between two
// letters; the ones FTS5 refuses that way split the words.
func termsLikeIndex(c *conn, q string) (string, error) {
	st, err := c.stmt(qSearchProbe)
	if err != nil {
		return "", err
	}
	separates := map[rune]bool{}
	for _, r := range q {
		if r < utf8.RuneSelf || !termRune(r) {
			continue
		}
		if _, tried := separates[r]; tried {
			continue
		}
		st.BindText(1, `"a`+string(r)+`b"`)
		st.Step()
		err := st.Err()
		st.Reset()
		separates[r] = err != nil && strings.Contains(err.Error(), errPhrase)
		if err != nil && !separates[r] {
			return "", err
		}
	}
	return quoteTerms(strings.FieldsFunc(q, func(r rune) bool { return !termRune(r) || separates[r] })), nil
}

// Search implements repo.ReadModels.
func (r *Repo) Search(ctx context.Context, q repo.SearchQuery) ([]repo.SearchHit, error) {
	hits := []repo.SearchHit{}
	match := SearchTerms(q.Query)
	if match == "" {
		return hits, ctx.Err()
	}
	limit := q.Limit
	switch {
	case limit <= 0:
		limit = 20
	case limit > 200:
		limit = 200
	}
	err := r.read(ctx, func(c *conn) error {
		err := search(c, match, q, limit, &hits)
		if err != nil && strings.Contains(err.Error(), errPhrase) {
			if match, err = termsLikeIndex(c, q.Query); err == nil && match != "" {
				err = search(c, match, q, limit, &hits)
			}
		}
		if err != nil {
			return fmt.Errorf("sqlite: search: %w", err)
		}
		for i := range hits {
			h := &hits[i]
			if h.Before, err = neighbour(c, qNeighbourBefore, h.ConversationID, h.Seq); err != nil {
				return err
			}
			if h.After, err = neighbour(c, qNeighbourAfter, h.ConversationID, h.Seq); err != nil {
				return err
			}
		}
		return nil
	})
	return hits, err
}

// search runs the search query for match into hits.
func search(c *conn, match string, q repo.SearchQuery, limit int, hits *[]repo.SearchHit) error {
	st, err := c.stmt(qSearch)
	if err != nil {
		return err
	}
	defer st.Reset()
	bind(st, match, q.ConversationID, string(q.Role), q.Source, q.User, int64(limit))
	*hits = (*hits)[:0]
	for st.Step() {
		h := repo.SearchHit{ConversationID: st.ColumnText(0), Seq: st.ColumnInt64(1),
			Role: events.Role(st.ColumnText(2)), Snippet: st.ColumnText(3)}
		if h.Snippet == "" {
			h.Snippet = projection.Preview(st.ColumnText(4))
		}
		*hits = append(*hits, h)
	}
	return st.Err()
}

func neighbour(c *conn, query, conv string, seq int64) (*repo.Neighbour, error) {
	st, err := c.stmt(query)
	if err != nil {
		return nil, err
	}
	defer st.Reset()
	bind(st, conv, seq)
	if !st.Step() {
		return nil, st.Err()
	}
	return &repo.Neighbour{Seq: st.ColumnInt64(0), Role: events.Role(st.ColumnText(1)),
		Text: projection.Preview(st.ColumnText(2))}, nil
}

// fold replays the log (on a read connection, a page at a time) into
// summaries, returning them and the last pos replayed.
func (r *Repo) fold(ctx context.Context, progress func(int64), check func(e *events.Event)) (projection.Summaries, int64, error) {
	sums := projection.Summaries{}
	var n, last int64
	for e, err := range r.All(ctx, 0) {
		if err != nil {
			return nil, 0, err
		}
		if check != nil {
			check(&e)
		}
		if err := sums.Apply(&e, func(parent string, until int64) (repo.Summary, error) {
			return r.history(ctx, parent, until)
		}); err != nil {
			return nil, 0, err
		}
		last = e.Pos
		if n++; progress != nil && n%10000 == 0 {
			progress(n)
		}
	}
	if progress != nil {
		progress(n)
	}
	return sums, last, nil
}

// history folds a branch's inherited events, read on read connections.
func (r *Repo) history(ctx context.Context, parent string, until int64) (repo.Summary, error) {
	var s repo.Summary
	for e, err := range r.Events(ctx, parent, repo.Range{UntilSeq: until}) {
		if err != nil {
			return repo.Summary{}, err
		}
		projection.Summarize(&s, &e)
	}
	return s, nil
}

// foldLate folds into sums, inside the write transaction, the events a
// fold on a read connection ended before (pos > upTo), and returns the
// last pos folded.
func (w *writer) foldLate(sums projection.Summaries, upTo int64, check func(e *events.Event)) (int64, error) {
	late, err := w.scan(qAfterPos, func(events.Event) bool { return true }, upTo, int64(1<<62))
	if err != nil {
		return 0, err
	}
	for i := range late {
		if check != nil {
			check(&late[i])
		}
		if err := sums.Apply(&late[i], w.history); err != nil {
			return 0, err
		}
		upTo = late[i].Pos
	}
	return upTo, nil
}

// RebuildReadModels implements repo.ReadModels. The log is folded into
// summaries on a read connection while the writer, in the transaction
// that will swap them in, rebuilds the search index: the two take the two
// halves of the work in parallel. The swap then applies whatever the fold
// did not see and replaces the conversation table, atomically with the
// new index. Appends wait for the swap.
func (r *Repo) RebuildReadModels(ctx context.Context, progress func(int64), only ...repo.ReadModel) error {
	conversations, search := len(only) == 0, len(only) == 0
	for _, m := range only {
		switch m {
		case repo.ReadModelConversations:
			conversations = true
		case repo.ReadModelSearch:
			search = true
		default:
			return &events.FieldError{Field: "projection", Reason: fmt.Sprintf("%q is not a read model (conversations, search)", m)}
		}
	}
	if !conversations {
		// The search index alone: FTS5 rebuilds it from the log itself.
		return r.run(ctx, func(w *writer) error {
			if err := w.exec(qSearchRebuild); err != nil {
				return fmt.Errorf("sqlite: rebuild search index: %w", err)
			}
			return w.exec(qProjectionsInit, int64(searchVersion), w.txnPos, "search")
		})
	}
	type folded struct {
		sums projection.Summaries
		upTo int64
		err  error
	}
	foldCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan folded, 1)
	go func() {
		sums, upTo, err := r.fold(foldCtx, progress, nil)
		done <- folded{sums, upTo, err}
	}()
	consumed := false
	err := r.run(ctx, func(w *writer) error {
		if search {
			if err := w.exec(qSearchRebuild); err != nil {
				return fmt.Errorf("sqlite: rebuild search index: %w", err)
			}
		}
		f := <-done
		consumed = true
		if f.err != nil {
			return fmt.Errorf("sqlite: rebuild read models: %w", f.err)
		}
		sums := f.sums
		upTo, err := w.foldLate(sums, f.upTo, nil)
		if err != nil {
			return err
		}
		if err := w.exec(qSummaryClear); err != nil {
			return err
		}
		for _, id := range slices.Sorted(maps.Keys(sums)) {
			if err := w.putSummary(sums[id]); err != nil {
				return err
			}
		}
		w.summaries = nil
		if upTo < w.txnPos {
			upTo = w.txnPos // events erased after being applied leave no trace
		}
		if err := w.exec(qProjectionsInit, int64(projection.SummaryVersion), upTo, "conversations"); err != nil {
			return err
		}
		if !search {
			return nil
		}
		return w.exec(qProjectionsInit, int64(searchVersion), upTo, "search")
	})
	if err != nil && !consumed {
		// The fold is still running or its result unread: stop it and
		// wait, so no read outlives the call.
		cancel()
		if f := <-done; f.err != nil && !errors.Is(f.err, context.Canceled) {
			err = errors.Join(err, f.err)
		}
	}
	return err
}

// VerifyReadModels implements repo.ReadModels.
func (r *Repo) VerifyReadModels(ctx context.Context, progress func(int64)) ([]string, error) {
	var (
		problems repo.Problems
		log      repo.LogChecker
	)
	report := problems.Report
	check := func(e *events.Event) { log.Check(e, &problems) }
	// The live state is read in the same write transaction that ends the
	// replay, so no append slips between the two.
	sums, upTo, err := r.fold(ctx, progress, check)
	if err != nil {
		return nil, fmt.Errorf("sqlite: verify: %w", err)
	}
	err = r.run(ctx, func(w *writer) error {
		if _, err := w.foldLate(sums, upTo, check); err != nil {
			return err
		}
		cps, err := readCheckpoints(w.c)
		if err != nil {
			return err
		}
		for name, cp := range cps {
			if cp.pos < log.LastPos() {
				report("read model %s: checkpoint pos %d is behind the log (pos %d)", name, cp.pos, log.LastPos())
			}
		}
		if v := cps["conversations"].version; v != projection.SummaryVersion {
			report("read model conversations: built by version %d, the code is version %d (run rebuild)", v, projection.SummaryVersion)
		}
		live := map[string][]byte{}
		st, err := w.c.stmt(qSummaryAll)
		if err != nil {
			return err
		}
		for st.Step() {
			live[st.ColumnText(0)] = append([]byte(nil), st.ColumnRawText(1)...)
		}
		if err := st.Reset(); err != nil {
			return err
		}
		for _, id := range slices.Sorted(maps.Keys(sums)) {
			want, _ := json.Marshal(sums[id])
			got, ok := live[id]
			switch {
			case !ok:
				report("conversation %q: no read model row (the log has %d events)", id, sums[id].Events)
			case string(got) != string(want):
				report("conversation %q: read model differs from the log: %s", id, projection.DiffSummaries(got, want))
			}
			delete(live, id)
		}
		for _, id := range slices.Sorted(maps.Keys(live)) {
			report("conversation %q: read model row without events", id)
		}
		if err := w.exec(qSearchCheck); err != nil {
			report("search index: %v", err)
		}
		return nil
	})
	return problems, err
}
