package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
)

// searchVersion is the version of what the search index holds; bump it
// (with a migration that changes events_search) when the indexed text or
// the text search configuration changes.
const searchVersion = 2

// checkpoint is a projections row.
type checkpoint struct {
	version int
	pos     int64
}

func readCheckpoints(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) (map[string]checkpoint, error) {
	rows, err := q.Query(ctx, qProjections)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]checkpoint{}
	for rows.Next() {
		var name string
		var cp checkpoint
		var version int32
		if err := rows.Scan(&name, &version, &cp.pos); err != nil {
			return nil, err
		}
		cp.version = int(version)
		out[name] = cp
	}
	return out, rows.Err()
}

// catchUp rebuilds, at Open, the read models that another version of the
// code built (or none did). Replicas opening at once rebuild once: the
// rebuild holds the write lock exclusively and checks the versions again
// under it.
func (r *Repo) catchUp(ctx context.Context) error {
	var cps map[string]checkpoint
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		var err error
		cps, err = readCheckpoints(ctx, c)
		return err
	})
	if err != nil {
		return err
	}
	var stale []repo.ReadModel
	if cps["conversations"].version != projection.SummaryVersion {
		stale = append(stale, repo.ReadModelConversations)
	}
	if cps["search"].version != searchVersion {
		stale = append(stale, repo.ReadModelSearch)
	}
	if len(stale) == 0 {
		return nil
	}
	return r.rebuild(ctx, nil, stale, true)
}

// Summary implements repo.ReadModels.
func (r *Repo) Summary(ctx context.Context, conversationID string) (repo.Summary, error) {
	var s repo.Summary
	var raw []byte
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		err := c.QueryRow(ctx, qSummaryGet, conversationID).Scan(&raw)
		if err == pgx.ErrNoRows {
			return nil
		}
		return err
	})
	if err != nil {
		return s, err
	}
	if raw == nil {
		return s, fmt.Errorf("conversation %q: %w", conversationID, repo.ErrNotFound)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("postgres: decode summary of %q: %w", conversationID, err)
	}
	return s, nil
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
	var hasCursor bool
	var curTime int64
	var curID string
	if q.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		t, id, ok := strings.Cut(string(b), ":")
		n, perr := strconv.ParseInt(t, 10, 64)
		if err != nil || !ok || perr != nil {
			return repo.ListPage{}, &events.FieldError{Field: "cursor", Reason: "is not a cursor this store returned"}
		}
		hasCursor, curTime, curID = true, n, id
	}
	var page repo.ListPage
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		page = repo.ListPage{Conversations: []repo.Summary{}}
		var rows pgx.Rows
		var err error
		if q.User == "" {
			rows, err = c.Query(ctx, qList, noNUL(q.Source), hasCursor, curTime, noNUL(curID), int64(limit+1))
		} else {
			rows, err = c.Query(ctx, qListUser, noNUL(q.User), noNUL(q.Source), hasCursor, curTime, noNUL(curID), int64(limit+1))
		}
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var raw []byte
			var at int64
			var id string
			if err := rows.Scan(&raw, &at, &id); err != nil {
				return err
			}
			if len(page.Conversations) == limit {
				last := page.Conversations[limit-1]
				page.NextCursor = base64.RawURLEncoding.EncodeToString(
					[]byte(strconv.FormatInt(last.LastActiveAt.UnixNano(), 10) + ":" + last.ConversationID))
				break
			}
			var s repo.Summary
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("postgres: decode summary: %w", err)
			}
			page.Conversations = append(page.Conversations, s)
		}
		return rows.Err()
	})
	return page, err
}

// Search implements repo.ReadModels.
func (r *Repo) Search(ctx context.Context, q repo.SearchQuery) ([]repo.SearchHit, error) {
	hits := []repo.SearchHit{}
	query, ok := searchQuery(q.Query)
	terms := strings.Fields(searchWords(q.Query))
	if !ok {
		if err := r.enter(ctx); err != nil {
			return nil, err
		}
		r.ops.Done()
		return hits, nil
	}
	limit := q.Limit
	switch {
	case limit <= 0:
		limit = 20
	case limit > 200:
		limit = 200
	}
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		hits = hits[:0]
		rows, err := c.Query(ctx, qSearch, query, noNUL(q.ConversationID), string(q.Role), noNUL(q.Source), noNUL(q.User), int64(limit))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var h repo.SearchHit
			var role, text string
			if err := rows.Scan(&h.ConversationID, &h.Seq, &role, &text); err != nil {
				return err
			}
			h.Role = events.Role(role)
			h.Snippet = snippet(text, terms)
			if h.Snippet == "" {
				h.Snippet = projection.Preview(text)
			}
			hits = append(hits, h)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(hits) == 0 {
			return nil
		}
		b := &pgx.Batch{}
		for _, h := range hits {
			b.Queue(qNeighbourBefore, h.ConversationID, h.Seq)
			b.Queue(qNeighbourAfter, h.ConversationID, h.Seq)
		}
		br := c.SendBatch(ctx, b)
		defer br.Close()
		for i := range hits {
			h := &hits[i]
			if h.Before, err = neighbour(br); err != nil {
				return err
			}
			if h.After, err = neighbour(br); err != nil {
				return err
			}
		}
		return nil
	})
	return hits, err
}

func neighbour(br pgx.BatchResults) (*repo.Neighbour, error) {
	var n repo.Neighbour
	var role, text string
	err := br.QueryRow().Scan(&n.Seq, &role, &text)
	if err == pgx.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	n.Role, n.Text = events.Role(role), projection.Preview(text)
	return &n, nil
}

// historyIn folds, inside tx, a branch's inherited events: its parent's
// lineage up to the seq it forks at.
func historyIn(ctx context.Context, tx pgx.Tx) func(parent string, until int64) (repo.Summary, error) {
	return func(parent string, until int64) (repo.Summary, error) {
		links, err := readLinks(ctx, tx, parent)
		if err != nil {
			return repo.Summary{}, err
		}
		var s repo.Summary
		for _, sp := range repo.Spans(lineageOf(parent, links), repo.Range{UntilSeq: until}) {
			rows, err := tx.Query(ctx, qRange, sp.ConversationID, sp.AfterSeq, sp.UntilSeq, int64(math.MaxInt64))
			if err != nil {
				return repo.Summary{}, err
			}
			evs, err := collectEvents(rows)
			if err != nil {
				return repo.Summary{}, err
			}
			for i := range evs {
				projection.Summarize(&s, &evs[i])
			}
		}
		return s, nil
	}
}

// fold replays the log, inside tx, a page at a time, calling each with
// every event and its stored search vector (as text, "" for none).
func fold(ctx context.Context, tx pgx.Tx, progress func(int64), each func(e *events.Event, search string) error) error {
	var n, last int64
	const page = 4096
	for {
		rows, err := tx.Query(ctx, qAfterPosSearch, last, int64(page))
		if err != nil {
			return err
		}
		// The page is read whole before each sees it: each may read
		// inside tx too (a branch's history).
		type row struct {
			e      events.Event
			search string
		}
		var got []row
		for rows.Next() {
			var search pgtype.Text
			e, err := scanEvent(rows, nil, &search)
			if err != nil {
				rows.Close()
				return err
			}
			got = append(got, row{e, search.String})
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for i := range got {
			if err := each(&got[i].e, got[i].search); err != nil {
				return err
			}
			last = got[i].e.Pos
			if n++; progress != nil && n%10000 == 0 {
				progress(n)
			}
		}
		if len(got) < page {
			break
		}
	}
	if progress != nil {
		progress(n)
	}
	return nil
}

// storedVector is the search vector the writer would store for e.
func storedVector(e *events.Event) (string, error) {
	st, err := e.EncodeStored()
	if err != nil {
		return "", err
	}
	if err := storable(&st); err != nil {
		return "", err
	}
	return eventVector(e.Type, &st), nil
}

// RebuildReadModels implements repo.ReadModels. The rebuild holds the
// write lock exclusively: appends in every replica wait until it commits
// (it is an offline operation), and it replays a log that nobody changes
// while it reads.
func (r *Repo) RebuildReadModels(ctx context.Context, progress func(int64), only ...repo.ReadModel) error {
	models := []repo.ReadModel{repo.ReadModelConversations, repo.ReadModelSearch}
	if len(only) > 0 {
		models = nil
		for _, m := range only {
			switch m {
			case repo.ReadModelConversations, repo.ReadModelSearch:
				if !slices.Contains(models, m) {
					models = append(models, m)
				}
			default:
				return &events.FieldError{Field: "projection", Reason: fmt.Sprintf("%q is not a read model (conversations, search)", m)}
			}
		}
	}
	return r.rebuild(ctx, progress, models, false)
}

// rebuild rebuilds models; onlyIfStale (at Open) skips those whose version
// is current once the lock is held, another replica having rebuilt them.
// Both are rebuilt in one pass over the log.
func (r *Repo) rebuild(ctx context.Context, progress func(int64), models []repo.ReadModel, onlyIfStale bool) error {
	return r.read(ctx, func(c *pgxpool.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, qLockOne, r.writeLockKey()); err != nil {
				return err
			}
			cps, err := readCheckpoints(ctx, tx)
			if err != nil {
				return err
			}
			var conversations, search bool
			for _, m := range models {
				switch m {
				case repo.ReadModelConversations:
					conversations = !onlyIfStale || cps["conversations"].version != projection.SummaryVersion
				case repo.ReadModelSearch:
					search = !onlyIfStale || cps["search"].version != searchVersion
				}
			}
			if !conversations && !search {
				return nil
			}
			var maxPos int64
			if err := tx.QueryRow(ctx, qMaxPos).Scan(&maxPos); err != nil {
				return err
			}
			if maxPos > 0 {
				r.opts.Logger.Info("rebuilding read models", "conversations", conversations, "search", search, "events_up_to_pos", maxPos)
			}
			if _, err := tx.Exec(ctx, qRebuildPlan); err != nil {
				return err
			}
			sums := projection.Summaries{}
			history := historyIn(ctx, tx)
			var poss []int64
			var vecs []string
			flush := func() error {
				if len(poss) == 0 {
					return nil
				}
				_, err := tx.Exec(ctx, qSetSearch, poss, vecs)
				poss, vecs = poss[:0], vecs[:0]
				return err
			}
			err = fold(ctx, tx, progress, func(e *events.Event, stored string) error {
				if conversations {
					if err := sums.Apply(e, history); err != nil {
						return err
					}
				}
				if !search {
					return nil
				}
				v, err := storedVector(e)
				if err != nil {
					return fmt.Errorf("event pos %d: %w", e.Pos, err)
				}
				if v == stored {
					return nil
				}
				poss, vecs = append(poss, e.Pos), append(vecs, v)
				if len(poss) == 1000 {
					return flush()
				}
				return nil
			})
			if err == nil {
				err = flush()
			}
			if err != nil {
				return err
			}
			if conversations {
				if _, err := tx.Exec(ctx, qSummaryClear); err != nil {
					return err
				}
				if err := putSummaries(ctx, tx, sums); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, qProjectionsInit, int32(projection.SummaryVersion), maxPos, "conversations"); err != nil {
					return err
				}
			}
			if search {
				if _, err := tx.Exec(ctx, qProjectionsInit, int32(searchVersion), maxPos, "search"); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// putSummaries writes summaries, a thousand per statement.
func putSummaries(ctx context.Context, tx pgx.Tx, sums projection.Summaries) error {
	ids := slices.Sorted(maps.Keys(sums))
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		convs, users, sources, titles, jsons := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		actives, ended := make([]int64, n), make([]bool, n)
		for i, id := range ids[:n] {
			s := sums[id]
			j, err := json.Marshal(s)
			if err != nil {
				return err
			}
			convs[i], users[i], sources[i], titles[i] = id, noNUL(s.User), noNUL(s.Source), noNUL(s.Title)
			actives[i], ended[i], jsons[i] = s.LastActiveAt.UnixNano(), s.Ended, string(j)
		}
		if _, err := tx.Exec(ctx, qSummaryPuts, convs, actives, users, sources, titles, ended, jsons); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// VerifyReadModels implements repo.ReadModels. It reads the log and the
// read models in one repeatable-read snapshot, in which both are as one
// commit left them (they are written in the same transactions), so it
// blocks no writer.
func (r *Repo) VerifyReadModels(ctx context.Context, progress func(int64)) ([]string, error) {
	var (
		problems repo.Problems
		log      repo.LogChecker
	)
	report := problems.Report
	check := func(e *events.Event) { log.Check(e, &problems) }
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		return pgx.BeginTxFunc(ctx, c, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
			sums := projection.Summaries{}
			history := historyIn(ctx, tx)
			badSearch := 0
			err := fold(ctx, tx, progress, func(e *events.Event, stored string) error {
				check(e)
				if err := sums.Apply(e, history); err != nil {
					return err
				}
				want, err := storedVector(e)
				if err != nil {
					return fmt.Errorf("event pos %d: %w", e.Pos, err)
				}
				if !slices.Equal(vectorWords(stored), vectorWords(want)) {
					if badSearch++; badSearch <= 10 {
						report("search index: conversation %q seq %d: the indexed words differ from the message's (run rebuild --projection search)", e.ConversationID, e.Seq)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			if badSearch > 10 {
				report("search index: %d messages in all are indexed with other words than theirs", badSearch)
			}
			cps, err := readCheckpoints(ctx, tx)
			if err != nil {
				return err
			}
			if v := cps["conversations"].version; v != projection.SummaryVersion {
				report("read model conversations: built by version %d, the code is version %d (run rebuild)", v, projection.SummaryVersion)
			}
			if v := cps["search"].version; v != searchVersion {
				report("read model search: built by version %d, the code is version %d (run rebuild)", v, searchVersion)
			}
			rows, err := tx.Query(ctx, qSummaryAll)
			if err != nil {
				return err
			}
			live := map[string][]byte{}
			for rows.Next() {
				var id string
				var raw []byte
				if err := rows.Scan(&id, &raw); err != nil {
					rows.Close()
					return err
				}
				live[id] = raw
			}
			if err := rows.Err(); err != nil {
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
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: verify: %w", err)
	}
	return problems, nil
}
