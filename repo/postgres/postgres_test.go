package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/internal/storetest"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/postgres"
)

// open opens the store at loc with opts, closed when the test ends.
func open(t testing.TB, loc string, opts *postgres.Options) *postgres.Repo {
	t.Helper()
	r, err := postgres.Open(context.Background(), loc, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// raw connects to the store's schema directly, to look or damage behind
// the store's back.
func raw(t testing.TB, loc string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func exec(t testing.TB, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func mustAppend(t testing.TB, r repo.Repo, e events.Event) events.Event {
	t.Helper()
	res, err := r.Append(context.Background(), e, repo.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Event
}

func user(conv, rid, text string) events.Event {
	return events.Event{ConversationID: conv, Type: events.TypeUserMessage, RequestID: rid, Content: events.NewText(text)}
}

// TestReadModels_Tampered: verify names what is wrong with read models
// damaged behind the store's back, and a rebuild repairs them; a store
// whose conversation list was built by another version of the code is
// rebuilt at Open.
func TestReadModels_Tampered(t *testing.T) {
	ctx := context.Background()
	loc := storetest.Postgres(t).New(t)
	r := open(t, loc, nil)
	for i := range 300 {
		mustAppend(t, r, events.Event{ConversationID: fmt.Sprintf("c%d", i%7), Type: events.TypeUserMessage,
			Content: events.NewText(fmt.Sprintf("message %d about topic%d", i, i%11))})
	}
	db := raw(t, loc)
	exec(t, db, `UPDATE conversations SET summary = jsonb_set(summary::jsonb, '{messages}', '999')::text WHERE conversation_id = 'c3'`)
	problems, err := r.VerifyReadModels(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], `"c3"`) || !strings.Contains(problems[0], "messages is 999") {
		t.Errorf("verify on a tampered store: %q, want one problem naming c3's messages", problems)
	}
	if err := r.RebuildReadModels(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if p, _ := r.VerifyReadModels(ctx, nil); len(p) != 0 {
		t.Errorf("verify after rebuild: %v", p)
	}
	r.Close()

	// Built by another version (here: never): Open rebuilds it.
	exec(t, db, `DELETE FROM conversations`)
	exec(t, db, `UPDATE projections SET version = 0 WHERE name = 'conversations'`)
	r = open(t, loc, nil)
	s, err := r.Summary(ctx, "c0")
	if err != nil {
		t.Fatal(err)
	}
	if s.Events != 43 { // i = 0, 7, ..., 294
		t.Errorf("c0 after the rebuild at Open has %d events, want 43", s.Events)
	}
	if p, _ := r.VerifyReadModels(ctx, nil); len(p) != 0 {
		t.Errorf("verify after the rebuild at Open: %v", p)
	}
}

// TestReadModels_RebuildOne: each read model rebuilds on its own.
func TestReadModels_RebuildOne(t *testing.T) {
	ctx := context.Background()
	loc := storetest.Postgres(t).New(t)
	r := open(t, loc, nil)
	for i := range 50 {
		mustAppend(t, r, events.Event{ConversationID: fmt.Sprintf("c%d", i%3), Type: events.TypeUserMessage,
			Content: events.NewText(fmt.Sprintf("note %d about walruses", i))})
	}
	db := raw(t, loc)
	exec(t, db, `UPDATE conversations SET summary = jsonb_set(summary::jsonb, '{messages}', '7')::text`)
	exec(t, db, `UPDATE events SET search = NULL WHERE seq % 2 = 0`)
	problems, err := r.VerifyReadModels(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var conv, search int
	for _, p := range problems {
		switch {
		case strings.HasPrefix(p, "search index"):
			search++
		case strings.Contains(p, "messages is 7"):
			conv++
		}
	}
	if conv != 3 || search != 10+1 { // 10 named, then one line for the 24 in all
		t.Fatalf("verify: %q; want the 3 damaged summaries and the 24 messages missing from the search index", problems)
	}
	if hits, _ := r.Search(ctx, repo.SearchQuery{Query: "walruses", Limit: 100}); len(hits) != 26 {
		t.Fatalf("search after emptying half the index found %d, want 26", len(hits))
	}
	if err := r.RebuildReadModels(ctx, nil, repo.ReadModelSearch); err != nil {
		t.Fatal(err)
	}
	if hits, _ := r.Search(ctx, repo.SearchQuery{Query: "walruses", Limit: 100}); len(hits) != 50 {
		t.Errorf("search after rebuilding it: %d hits, want 50", len(hits))
	}
	if s, _ := r.Summary(ctx, "c0"); s.Messages != 7 {
		t.Errorf("rebuilding search touched the conversation list (c0 has %d messages)", s.Messages)
	}
	if err := r.RebuildReadModels(ctx, nil, repo.ReadModelConversations); err != nil {
		t.Fatal(err)
	}
	if p, _ := r.VerifyReadModels(ctx, nil); len(p) != 0 {
		t.Errorf("verify after rebuilding the conversation list: %q", p)
	}
	if err := r.RebuildReadModels(ctx, nil, "nonsense"); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("rebuilding an unknown read model: %v, want events.ErrInvalid", err)
	}
}

// TestRepo_NULText: text holding NUL bytes, which PostgreSQL text cannot
// store, round-trips exactly, stays searchable and deduplicates.
func TestRepo_NULText(t *testing.T) {
	ctx := context.Background()
	r := storetest.Postgres(t).Open(t)
	sent := []events.Event{
		user("c", "r1", "hello\x00world"),
		{ConversationID: "c", Type: events.TypeAssistantMessage, RequestID: "r2", Model: "m",
			Content: events.NewParts(events.TextPart("nul\x00part"), events.TextPart("plain"))},
		{ConversationID: "c", Type: events.TypeToolResult, ToolCallID: "t1", Content: events.NewText("\x00")},
	}
	for _, e := range sent {
		mustAppend(t, r, e)
	}
	var got []events.Event
	for e, err := range r.Events(ctx, "c", repo.Range{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if len(got) != len(sent) {
		t.Fatalf("read %d events, want %d", len(got), len(sent))
	}
	for i := range sent {
		if got[i].Text() != sent[i].Text() {
			t.Errorf("event %d reads back as %q, want %q", i, got[i].Text(), sent[i].Text())
		}
	}
	if res, err := r.Append(ctx, sent[0], repo.AppendOptions{}); err != nil || !res.Duplicate() {
		t.Errorf("retry of the NUL message: %v %v, want a duplicate", res.Outcome, err)
	}
	if _, err := r.Append(ctx, user("c", "r1", "hello world"), repo.AppendOptions{}); !errors.Is(err, repo.ErrIdempotencyConflict) {
		t.Errorf("the key with the NUL turned into a space: %v, want a conflict", err)
	}
	for _, q := range []string{"world", "nul part"} {
		if hits, err := r.Search(ctx, repo.SearchQuery{Query: q}); err != nil || len(hits) != 1 {
			t.Errorf("Search(%q) = %d hits, %v; want 1", q, len(hits), err)
		}
	}
}

// TestReplicas_Follow: a follower on one replica sees another replica's
// appends as they commit, through LISTEN/NOTIFY (the poll interval is far
// longer than the test waits), and through polling when notifications
// are off.
func TestReplicas_Follow(t *testing.T) {
	b := storetest.Postgres(t)
	for _, tc := range []struct {
		name string
		opts postgres.Options
	}{
		{"Notify", postgres.Options{PollInterval: time.Hour}},
		{"Poll", postgres.Options{NoNotify: true, PollInterval: 50 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := b.New(t)
			writer := open(t, loc, &tc.opts)
			follower := open(t, loc, &tc.opts)
			mustAppend(t, writer, user("c", "r0", "before"))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			seen := make(chan events.Event, 100)
			go func() {
				for e, err := range follower.Follow(ctx, "c", 0) {
					if err != nil {
						t.Errorf("Follow: %v", err)
						return
					}
					seen <- e
				}
			}()
			next := func(want int64) {
				t.Helper()
				select {
				case e := <-seen:
					if e.Seq != want {
						t.Fatalf("followed seq %d, want %d", e.Seq, want)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("the follower on the other replica did not see seq %d", want)
				}
			}
			next(1)
			for i := 2; i <= 20; i++ {
				mustAppend(t, writer, user("c", fmt.Sprintf("r%d", i), "more"))
				next(int64(i))
			}
			if tc.opts.NoNotify {
				return
			}
			if st := follower.Stats(); st.Heard == 0 {
				t.Errorf("the follower's replica heard no notification: %+v", st)
			}
		})
	}
}

// TestReplicas_RebuildWhileWriting: a rebuild on one replica while another
// appends leaves read models that equal the log.
func TestReplicas_RebuildWhileWriting(t *testing.T) {
	ctx := context.Background()
	loc := storetest.Postgres(t).New(t)
	a, b := open(t, loc, nil), open(t, loc, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var appended atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := a.Append(ctx, user(fmt.Sprintf("c%d", i%5), fmt.Sprintf("w%d-%d", w, i), "text"), repo.AppendOptions{}); err != nil {
					t.Errorf("append during the rebuild: %v", err)
					return
				}
				appended.Add(1)
			}
		})
	}
	for range 3 {
		time.Sleep(100 * time.Millisecond)
		if err := b.RebuildReadModels(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if appended.Load() == 0 {
		t.Fatal("nothing was appended")
	}
	if p, err := b.VerifyReadModels(ctx, nil); err != nil || len(p) != 0 {
		t.Errorf("verify after rebuilds under appends: %v %v", p, err)
	}
}

// TestOpen_Concurrent: replicas that open a new schema at once agree on
// its migrations.
func TestOpen_Concurrent(t *testing.T) {
	loc := storetest.Postgres(t).New(t)
	var wg sync.WaitGroup
	repos := make([]*postgres.Repo, 4)
	errs := make([]error, 4)
	for i := range repos {
		wg.Go(func() { repos[i], errs[i] = postgres.Open(context.Background(), loc, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
			continue
		}
		mustAppend(t, repos[i], user("c", fmt.Sprintf("r%d", i), "hi"))
		repos[i].Close()
	}
}

// TestRepo_WriterKilled: the server ends the writer's connection again
// and again while appends stream in. An append that reports success is
// stored, one that reports an error is not, and retrying the failed ones
// stores them exactly once.
func TestRepo_WriterKilled(t *testing.T) {
	ctx := context.Background()
	// Its own application name: the test ends its sessions only, not
	// those of tests running beside it on the same server.
	const app = "chatlog_writer_killed"
	loc := storetest.Postgres(t).New(t) + "&application_name=" + app
	// The store logs each settled commit; the test makes dozens.
	r := open(t, loc, &postgres.Options{Logger: slog.New(slog.DiscardHandler)})
	admin := raw(t, loc)
	const workers = 8
	perWorker := 80
	if raceEnabled {
		perWorker = 25
	}
	type outcome struct {
		ev  events.Event
		err error
	}
	results := make([][]outcome, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				e := user(fmt.Sprintf("c%d", w%4), fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("payload %d %d", w, i))
				res, err := r.Append(ctx, e, repo.AppendOptions{})
				results[w] = append(results[w], outcome{res.Event, err})
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	kills := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-time.After(25 * time.Millisecond):
			// Every other connection of the store: the writer's among
			// them, whatever it is doing.
			tag, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE pid <> pg_backend_pid() AND application_name = $1`, app)
			if err != nil {
				t.Fatal(err)
			}
			kills += int(tag.RowsAffected())
		}
	}
	failed := 0
	for w := range workers {
		for i, o := range results[w] {
			rid := fmt.Sprintf("w%d-%d", w, i)
			stored, err := r.ByRequestID(ctx, fmt.Sprintf("c%d", w%4), rid)
			switch {
			case o.err == nil && err != nil:
				t.Errorf("%s was acknowledged (seq %d) but is not stored: %v", rid, o.ev.Seq, err)
			case o.err == nil && (stored.ID != o.ev.ID || stored.Seq != o.ev.Seq):
				t.Errorf("%s acknowledged as id %s seq %d, stored as id %s seq %d", rid, o.ev.ID, o.ev.Seq, stored.ID, stored.Seq)
			case o.err != nil && err == nil:
				t.Errorf("%s failed (%v) but is stored at seq %d", rid, o.err, stored.Seq)
			case o.err != nil:
				failed++
				res, err := r.Append(ctx, user(fmt.Sprintf("c%d", w%4), rid, fmt.Sprintf("payload %d %d", w, i)), repo.AppendOptions{})
				if err != nil || res.Outcome != repo.Appended {
					t.Errorf("retry of the failed %s: %v %v, want appended", rid, res.Outcome, err)
				}
			}
		}
	}
	st := r.Stats()
	t.Logf("%d connections ended; %d transactions ran again, %d commits settled after their connection broke; %d of %d appends failed and were retried",
		kills, st.Retries, st.Settled, failed, workers*perWorker)
	if kills == 0 || st.Retries == 0 {
		t.Errorf("%d connections ended, %d transactions ran again: the test did not break the writer's connection", kills, st.Retries)
	}
	if p, err := r.VerifyReadModels(ctx, nil); err != nil || len(p) != 0 {
		t.Errorf("verify: %v %v", p, err)
	}
	for c := range 4 {
		var seqs []int64
		for e, err := range r.Events(ctx, fmt.Sprintf("c%d", c), repo.Range{}) {
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, e.Seq)
		}
		for i, s := range seqs {
			if s != int64(i+1) {
				t.Fatalf("conversation c%d: seq %d at index %d", c, s, i)
			}
		}
		if len(seqs) != workers/4*perWorker {
			t.Errorf("conversation c%d holds %d events, want %d", c, len(seqs), workers/4*perWorker)
		}
	}
}

// FuzzSearch: no input makes search fail, and a word of a stored message
// always finds it.
func FuzzSearch(f *testing.F) {
	for _, s := range []string{"penguins", `"`, `AND OR NOT`, `penguins*`, `(((`, `col:value`, `NEAR(a b)`, "\x00",
		`'; DROP TABLE events; --`, ``, `^-+`, `{"json": 1}`, "émoji 🐧 penguins", strings.Repeat("a ", 100), `!&|<->:*`} {
		f.Add(s)
	}
	ctx := context.Background()
	r := storetest.Postgres(f).Open(f)
	mustAppend(f, r, user("c", "", "emperor penguins huddle in antarctica"))
	f.Fuzz(func(t *testing.T, q string) {
		if _, err := r.Search(ctx, repo.SearchQuery{Query: q}); err != nil {
			t.Fatalf("Search(%q): %v", q, err)
		}
		hits, err := r.Search(ctx, repo.SearchQuery{Query: q + " penguins"})
		if err != nil {
			t.Fatalf("Search(%q + penguins): %v", q, err)
		}
		if postgres.SearchWords(q) == "" && len(hits) != 1 {
			t.Fatalf("Search(%q + penguins) found %d, want the stored message", q, len(hits))
		}
	})
}

// TestReplicas_TitlesUnique: replicas giving titles at the same moment
// never give one title to two conversations: of those asking for one
// title, exactly one gets it, and "next" titles of one lineage are all
// different.
func TestReplicas_TitlesUnique(t *testing.T) {
	ctx := context.Background()
	loc := storetest.Postgres(t).New(t)
	replicas := []*postgres.Repo{open(t, loc, nil), open(t, loc, nil), open(t, loc, nil)}
	const per = 4
	type outcome struct {
		conv, title string
		err         error
	}
	race := func(next bool) []outcome {
		var wg sync.WaitGroup
		out := make([]outcome, len(replicas)*per)
		gate := make(chan struct{})
		for i := range out {
			wg.Go(func() {
				<-gate
				conv := fmt.Sprintf("c%d-%v", i, next)
				res, err := replicas[i%len(replicas)].SetTitle(ctx, conv, "Weekly report", repo.TitleOptions{Next: next})
				title, _ := res.Event.ExtraString("title")
				out[i] = outcome{conv, title, err}
			})
		}
		close(gate)
		wg.Wait()
		return out
	}
	won := 0
	for _, o := range race(false) {
		switch {
		case o.err == nil:
			won++
		case !errors.Is(o.err, repo.ErrTitleTaken):
			t.Errorf("SetTitle(%s): %v, want success or ErrTitleTaken", o.conv, o.err)
		}
	}
	if won != 1 {
		t.Errorf("%d conversations got the title \"Weekly report\", want exactly 1", won)
	}
	seen := map[string]string{}
	for _, o := range race(true) {
		if o.err != nil {
			t.Errorf("SetTitle(%s, next): %v", o.conv, o.err)
			continue
		}
		if other, dup := seen[o.title]; dup {
			t.Errorf("%s and %s both got the title %q", other, o.conv, o.title)
		}
		seen[o.title] = o.conv
	}
	if len(seen) != len(replicas)*per {
		t.Errorf("next titles %v, want %d different ones", seen, len(replicas)*per)
	}
}

// TestReplicas_ForkDelete: a fork on one replica and the deletion of its
// parent on another, at the same moment, never leave a branch whose
// parent is gone: either the deletion sees the branch (and refuses), or
// the fork finds no parent.
func TestReplicas_ForkDelete(t *testing.T) {
	ctx := context.Background()
	loc := storetest.Postgres(t).New(t)
	a, b := open(t, loc, nil), open(t, loc, nil)
	forked, deleted := 0, 0
	defer func() { t.Logf("%d rounds forked first, %d deleted first", forked, deleted) }()
	for round := range 20 {
		parent, branch := fmt.Sprintf("p%d", round), fmt.Sprintf("b%d", round)
		mustAppend(t, a, user(parent, "r1", "hello"))
		var forkErr, delErr error
		var wg sync.WaitGroup
		gate := make(chan struct{})
		wg.Go(func() { <-gate; _, forkErr = a.Fork(ctx, parent, 1, branch) })
		wg.Go(func() { <-gate; _, delErr = b.Delete(ctx, parent, repo.DeleteOptions{}) })
		close(gate)
		wg.Wait()
		switch {
		case forkErr == nil && delErr == nil:
			t.Fatalf("round %d: the fork and the deletion of its parent both succeeded", round)
		case forkErr == nil && !errors.Is(delErr, repo.ErrHasBranches):
			t.Errorf("round %d: deletion after the fork: %v, want ErrHasBranches", round, delErr)
		case delErr == nil && !errors.Is(forkErr, repo.ErrNotFound):
			t.Errorf("round %d: fork after the deletion: %v, want ErrNotFound", round, forkErr)
		}
		if delErr == nil {
			deleted++
		}
		if forkErr == nil {
			forked++
			evs, err := collectAll(b.Events(ctx, branch, repo.Range{}))
			if err != nil || len(evs) != 2 || evs[0].ConversationID != parent {
				t.Errorf("round %d: the branch reads %d events (%v), want its parent's first and its fork", round, len(evs), err)
			}
		}
	}
}

func collectAll(seq func(func(events.Event, error) bool)) ([]events.Event, error) {
	var out []events.Event
	for e, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
	return out, nil
}

// TestOpen_NewerSchema: a schema a newer chatlog migrated is refused at
// Open, before anything is read or written.
func TestOpen_NewerSchema(t *testing.T) {
	loc := storetest.Postgres(t).New(t)
	r := open(t, loc, nil)
	r.Close()
	exec(t, raw(t, loc), `INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_from_the_future.sql', 0)`)
	_, err := postgres.Open(context.Background(), loc, nil)
	if !errors.Is(err, postgres.ErrNewerSchema) {
		t.Fatalf("Open of a schema at migration 9999: %v, want ErrNewerSchema", err)
	}
}
