package postgres

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// pageSize is how many events a read fetches per query: iterators hold a
// connection only while fetching a page, never while the caller works.
const pageSize = 256

// Append implements repo.Repo. Every append goes through the writer, which
// answers retries from the same look-up that checks new keys: a
// duplicate costs no query of its own.
func (r *Repo) Append(ctx context.Context, e events.Event, opts repo.AppendOptions) (repo.Result, error) {
	if err := ctx.Err(); err != nil {
		return repo.Result{}, err
	}
	p := r.prepare(e, opts.KeepSeq)
	if p.err != nil {
		return repo.Result{}, p.err
	}
	req := &request{ctx: ctx, mode: modeSingle, opts: opts, evs: []prepared{p}}
	if err := r.submit(req); err != nil {
		return repo.Result{}, err
	}
	if req.err != nil {
		return repo.Result{}, req.err
	}
	return req.items[0].Result, nil
}

// AppendBatch implements repo.Repo.
func (r *Repo) AppendBatch(ctx context.Context, evs []events.Event, opts repo.AppendOptions) ([]repo.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, nil
	}
	ps := make([]prepared, len(evs))
	for i, e := range evs {
		ps[i] = r.prepare(e, opts.KeepSeq)
		if ps[i].err != nil {
			return nil, &repo.BatchError{Index: i, Err: ps[i].err}
		}
		if _, ok := opts.Expected.Seq(); ok && e.ConversationID != evs[0].ConversationID {
			return nil, &repo.BatchError{Index: i, Err: &events.FieldError{
				Field: "conversation_id", Reason: "a batch with an expected seq must hold one conversation"}}
		}
	}
	req := &request{ctx: ctx, mode: modeAtomic, opts: opts, evs: ps}
	if err := r.submit(req); err != nil {
		return nil, err
	}
	if req.err != nil {
		return nil, req.err
	}
	out := make([]repo.Result, len(req.items))
	for i, it := range req.items {
		out[i] = it.Result
	}
	return out, nil
}

// AppendEach implements repo.Repo.
func (r *Repo) AppendEach(ctx context.Context, evs []events.Event, opts repo.AppendOptions) []repo.Item {
	items := make([]repo.Item, len(evs))
	fail := func(err error) []repo.Item {
		for i := range items {
			items[i].Err = err
		}
		return items
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if _, ok := opts.Expected.Seq(); ok {
		return fail(&events.FieldError{Field: "expected_seq", Reason: "AppendEach takes no expected seq; use AppendBatch"})
	}
	// Chunks are queued as soon as they are prepared, all to one writer:
	// it takes requests in order, so seqs follow the input while the
	// next chunk's encoding overlaps the previous chunk's write.
	ps := make([]prepared, len(evs))
	var queued []*request
	var w *writer
	if len(evs) > 0 {
		w = r.writerFor(evs[0].ConversationID)
	}
	for start := 0; start < len(ps); start += eachChunk {
		end := min(start+eachChunk, len(ps))
		for i := start; i < end; i++ {
			ps[i] = r.prepare(evs[i], opts.KeepSeq)
			items[i].Err = ps[i].err
		}
		req := &request{ctx: ctx, mode: modeEach, opts: opts, evs: ps[start:end], items: items[start:end]}
		if err := r.enqueueTo(w, req); err != nil {
			for i := start; i < len(items); i++ {
				if items[i].Err == nil {
					items[i] = repo.Item{Err: err}
				}
			}
			break
		}
		queued = append(queued, req)
	}
	for _, req := range queued {
		<-req.done
	}
	return items
}

// eachChunk is how many events AppendEach prepares before queueing them.
const eachChunk = 128

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
				query := qRange
				if rg.Reverse {
					query = qRangeDesc
				}
				page, err := r.page(ctx, query, sp.ConversationID, sp.AfterSeq, sp.UntilSeq, int64(n))
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
		if err := r.enter(ctx); err != nil {
			return nil, err
		}
		r.ops.Done()
		return []events.Event{}, nil
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

// ByRequestID implements repo.Repo.
func (r *Repo) ByRequestID(ctx context.Context, conversationID, requestID string) (events.Event, error) {
	page, err := r.page(ctx, qByRequestID, conversationID, requestID)
	if err != nil {
		return events.Event{}, err
	}
	if len(page) == 0 {
		return events.Event{}, fmt.Errorf("request_id %q in conversation %q: %w", requestID, conversationID, repo.ErrNotFound)
	}
	return page[0], nil
}

// ContextMarkers implements repo.Repo: the newest segment of the lineage
// holding a marker wins.
func (r *Repo) ContextMarkers(ctx context.Context, conversationID string, untilSeq int64) (repo.ContextMarkers, error) {
	var m repo.ContextMarkers
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		m = repo.ContextMarkers{}
		links, err := readLinks(ctx, c, conversationID)
		if err != nil {
			return err
		}
		clearFound := false
		for _, sp := range repo.Spans(lineageOf(conversationID, links), repo.Range{UntilSeq: untilSeq, Reverse: true}) {
			b := &pgx.Batch{}
			b.Queue(qLatestStartedIn, sp.ConversationID, sp.AfterSeq, sp.UntilSeq)
			b.Queue(qLatestPromptSetIn, sp.ConversationID, sp.AfterSeq, sp.UntilSeq)
			b.Queue(qLatestClearIn, sp.ConversationID, sp.AfterSeq, sp.UntilSeq)
			br := c.SendBatch(ctx, b)
			err := func() error {
				var latest *events.Event // the span's latest prompt-setting event
				for range 2 {
					rows, err := br.Query()
					if err != nil {
						return err
					}
					evs, err := collectEvents(rows)
					if err != nil {
						return err
					}
					if len(evs) > 0 && (latest == nil || evs[0].Seq > latest.Seq) {
						latest = &evs[0]
					}
				}
				if m.Prompt == nil {
					m.Prompt = latest
				}
				var seq int64
				switch err := br.QueryRow().Scan(&seq); {
				case err == pgx.ErrNoRows:
				case err != nil:
					return err
				case !clearFound:
					m.ClearSeq, clearFound = seq, true
				}
				return nil
			}()
			if cerr := br.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if m.Prompt != nil && clearFound {
				break
			}
		}
		return nil
	})
	return m, err
}

// Head implements repo.Repo.
func (r *Repo) Head(ctx context.Context, conversationID string) (int64, error) {
	var seq int64
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		err := c.QueryRow(ctx, qHead, conversationID).Scan(&seq)
		if err == pgx.ErrNoRows {
			return nil
		}
		return err
	})
	return seq, err
}

// All implements repo.Repo. pos grows with seq within a conversation;
// across conversations, writers in several processes commit positions
// out of order (see the package documentation), so an iteration that
// runs while they write may miss an event committed behind a position it
// has passed. Whatever was committed before the iteration started, it
// yields.
func (r *Repo) All(ctx context.Context, afterPos int64) iter.Seq2[events.Event, error] {
	return func(yield func(events.Event, error) bool) {
		for {
			page, err := r.page(ctx, qAfterPos, afterPos, int64(pageSize))
			if err != nil {
				yield(events.Event{}, err)
				return
			}
			for _, e := range page {
				if !yield(e, nil) {
					return
				}
				afterPos = e.Pos
			}
			if len(page) < pageSize {
				return
			}
		}
	}
}

// Follow implements repo.Repo. Appends through this Repo wake followers at
// once; other replicas' appends wake them when their notification
// arrives, or at the next poll (Options.PollInterval) if it is lost.
func (r *Repo) Follow(ctx context.Context, conversationID string, afterSeq int64) iter.Seq2[events.Event, error] {
	return func(yield func(events.Event, error) bool) {
		poll := time.NewTimer(r.opts.PollInterval)
		defer poll.Stop()
		for {
			// Take the wake-up channel before reading, so a commit
			// landing between the read and the wait is not missed.
			woken := r.notify.wait(conversationID)
			for e, err := range r.Events(ctx, conversationID, repo.Range{AfterSeq: afterSeq}) {
				if err != nil {
					if ctx.Err() == nil {
						yield(events.Event{}, err)
					}
					return
				}
				if !yield(e, nil) {
					return
				}
				afterSeq = e.Seq
			}
			poll.Reset(r.opts.PollInterval)
			select {
			case <-ctx.Done():
				return
			case <-r.closing:
				return
			case <-woken:
			case <-poll.C:
			}
		}
	}
}

// page runs a read query and decodes every row into an event.
func (r *Repo) page(ctx context.Context, query string, args ...any) ([]events.Event, error) {
	var out []events.Event
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		rows, err := c.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		out, err = collectEvents(rows)
		return err
	})
	return out, err
}

// collectEvents decodes every row (eventColumns) and closes rows.
func collectEvents(rows pgx.Rows) ([]events.Event, error) {
	defer rows.Close()
	var out []events.Event
	for rows.Next() {
		e, err := scanEvent(rows, nil, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// scanEvent decodes the event columns (eventColumns order) of the row,
// and the fingerprint or the search vector after them when fp or search
// is not nil.
func scanEvent(rows pgx.Rows, fp *[]byte, search *pgtype.Text) (events.Event, error) {
	var (
		e       events.Event
		typ     string
		role    string
		created int64
		content pgtype.Text
		body    []byte
		extra   []byte
		version int32
	)
	dest := []any{&e.Pos, &e.ID, &e.ConversationID, &e.Seq, &typ, &version, &created, &role, &content, &body, &extra}
	if fp != nil {
		dest = append(dest, fp)
	}
	if search != nil {
		dest = append(dest, search)
	}
	if err := rows.Scan(dest...); err != nil {
		return events.Event{}, fmt.Errorf("postgres: read event: %w", err)
	}
	e.Type, e.Role, e.SchemaVersion = events.Type(typ), events.Role(role), int(version)
	e.CreatedAt = time.Unix(0, created).UTC()
	if err := e.DecodeStored(content.String, content.Valid, body, extra); err != nil {
		return events.Event{}, fmt.Errorf("postgres: event pos %d: %w", e.Pos, err)
	}
	return e, nil
}
