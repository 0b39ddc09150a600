package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatlog/chatlog/internal/storetest"
)

// The command line and the server on PostgreSQL: --db takes a URL
// wherever it takes a file, logs move between the backends with nothing
// lost, and replicas serving one database behave as one store.

// buildOnce builds the chatlog binary once per test process.
var buildOnce struct {
	sync.Once
	dir, bin string
	err      error
}

// chatlogBinary returns the path of a chatlog binary built from this
// package, skipping when there is no go tool.
func chatlogBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	buildOnce.Do(func() {
		if buildOnce.dir, buildOnce.err = os.MkdirTemp("", "chatlog-bin-"); buildOnce.err != nil {
			return
		}
		buildOnce.bin = filepath.Join(buildOnce.dir, "chatlog")
		out, err := exec.Command(goTool, "build", "-o", buildOnce.bin, ".").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.bin
}

// TestPostgres_CLI: the commands take a PostgreSQL URL as --db or
// $CHATLOG_DB, as they take a file.
func TestPostgres_CLI(t *testing.T) {
	db := storetest.Postgres(t).New(t)
	log := writeFile(t, "log.jsonl", goodLog)
	r := run(t, "", "--db", db, "ingest", log)
	wantCode(t, r, exitOK)
	if strings.TrimSpace(r.stdout) != `{"read":5,"appended":5,"duplicates":0,"conflicts":0,"invalid":0}` {
		t.Fatalf("ingest: %s", r.stdout)
	}
	wantCode(t, run(t, "", "--db", db, "ingest", log), exitOK)
	r = run(t, "", "--db", db, "append", "--conversation", "c", "--type", "user_message", "--content", "another question", "--request-id", "u1")
	wantCode(t, r, exitConflict)
	wantOneLine(t, r.stderr, "stored seq 1")

	// $CHATLOG_DB selects it as --db does.
	m := &Main{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{},
		Getenv: func(k string) string {
			if k == "CHATLOG_DB" {
				return db
			}
			return ""
		}}
	if code := m.Run(context.Background(), []string{"replay", "--conversation", "c"}); code != exitOK {
		t.Fatalf("replay through $CHATLOG_DB: exit %d: %s", code, m.Stderr)
	}
	r = run(t, "", "--db", db, "replay", "--conversation", "c")
	wantCode(t, r, exitOK)
	if got := m.Stdout.(*bytes.Buffer).String(); got != r.stdout || strings.Count(got, "\n") < 2 {
		t.Errorf("replay through $CHATLOG_DB:\n%s\nwith --db:\n%s", got, r.stdout)
	}

	wantCode(t, run(t, "", "--db", db, "verify"), exitOK)
	r = run(t, "", "--db", db, "stats")
	wantCode(t, r, exitOK)
	var st struct {
		Events        int64            `json:"events"`
		Conversations int64            `json:"conversations"`
		DBBytes       *int64           `json:"db_bytes"`
		GroupCommit   map[string]any   `json:"group_commit"`
		ByType        map[string]int64 `json:"by_type"`
		Payload       struct {
			StoredBytes int64 `json:"stored_bytes"`
			RawBytes    int64 `json:"raw_bytes"`
		} `json:"payload"`
	}
	decodeDoc(t, r.stdout, &st)
	if st.Events != 5 || st.Conversations != 2 || st.ByType["user_message"] != 2 || st.DBBytes == nil || *st.DBBytes <= 0 ||
		st.GroupCommit == nil || st.Payload.RawBytes <= 0 || st.Payload.StoredBytes < st.Payload.RawBytes {
		t.Errorf("stats = %s; want 5 events in 2 conversations, their payload, the tables' size and the writers' totals", r.stdout)
	}
	// A table prefix is SQLite's: on PostgreSQL it is a usage error.
	r = run(t, "", "--db", db, "--table-prefix", "app1_", "stats")
	wantCode(t, r, exitUsage)
	wantOneLine(t, r.stderr, "search_path")
	// The password of a URL never appears in a message (nothing listens
	// on port 1).
	r = run(t, "", "--db", "postgres://postgres:hunter2@127.0.0.1:1/chatlog_test?sslmode=disable&connect_timeout=5", "stats")
	wantCode(t, r, exitFailure)
	if strings.Contains(r.stderr, "hunter2") || !strings.Contains(r.stderr, "open database postgres://postgres:") {
		t.Errorf("the error shows the password, or not the database: %s", r.stderr)
	}
}

// TestExportImport_AcrossBackends moves a log with forks, titles, turns
// (a failed attempt, a finished one, an open stream) and usage from
// SQLite to PostgreSQL and back: every event keeps its id, seq, time and
// payload, branches keep their lineage, and each store verifies.
func TestExportImport_AcrossBackends(t *testing.T) {
	pg := storetest.Postgres(t).New(t)
	src, back := tempDB(t), tempDB(t)
	for _, args := range [][]string{
		{"ingest", writeFile(t, "log.jsonl", goodLog)},
		{"start", "--conversation", "trip", "--user", "ann", "--source", "cli", "--title", "Oslo trip"},
		{"append", "--conversation", "trip", "--type", "user_message", "--content", "Plan a day in Oslo", "--request-id", "q1"},
		{"turn", "--conversation", "trip", "--request-id", "q2", "--content", "And the evening?", "--lease", "1ms"},
		{"delta", "--conversation", "trip", "--user-request-id", "q2", "--attempt", "1", "--index", "0", "--content", "lost chunk"},
	} {
		wantCode(t, run(t, "", append([]string{"--db", src}, args...)...), exitOK)
	}
	time.Sleep(10 * time.Millisecond) // attempt 1's lease lapses
	for _, args := range [][]string{
		{"turn", "--conversation", "trip", "--request-id", "q2", "--content", "And the evening?"},
		{"delta", "--conversation", "trip", "--user-request-id", "q2", "--attempt", "2", "--index", "0", "--content", "Dinner at "},
		{"delta", "--conversation", "trip", "--user-request-id", "q2", "--attempt", "2", "--index", "1", "--content", "Maaemo."},
		{"finish", "--conversation", "trip", "--user-request-id", "q2", "--attempt", "2", "--stop-reason", "stop"},
		{"fork", "--conversation", "trip", "--at-seq", "2", "--new-id", "trip-b"},
		{"append", "--conversation", "trip-b", "--type", "user_message", "--content", "Plan Bergen instead", "--request-id", "b1"},
		{"fork", "--conversation", "trip-b", "--new-id", "trip-c"},
		{"title", "--conversation", "trip-c", "--next", "Oslo trip"},
		{"usage", "--conversation", "trip", "--input", "120", "--output", "45", "--cost", "0.0031", "--request-id", "u-1"},
		{"delta", "--conversation", "trip", "--user-request-id", "q3", "--index", "0", "--content", "an open stream"},
	} {
		wantCode(t, run(t, "", append([]string{"--db", src}, args...)...), exitOK)
	}
	export := func(db string) string {
		t.Helper()
		r := run(t, "", "--db", db, "export")
		wantCode(t, r, exitOK)
		return r.stdout
	}
	importInto := func(db, log string) {
		t.Helper()
		r := run(t, log, "--db", db, "import", "-")
		wantCode(t, r, exitOK)
		wantCode(t, run(t, "", "--db", db, "verify"), exitOK)
	}
	first := export(src)
	importInto(pg, first)
	second := export(pg)
	importInto(back, second)
	third := export(back)
	if n := strings.Count(first, "\n"); n < 15 {
		t.Fatalf("the source log holds %d events, want the whole scenario", n)
	}
	// Positions are each store's own; everything else is the event.
	for i, got := range []string{withoutPos(second), withoutPos(third)} {
		if want := withoutPos(first); got != want {
			t.Errorf("export %d differs from the source's:\n got %s\nwant %s", i+2, got, want)
		}
	}
	// The branch reads through its parents on every store, and the
	// turns are where they were: answered, and still open.
	for _, db := range []string{src, pg, back} {
		r := run(t, "", "--db", db, "replay", "--conversation", "trip-c")
		wantCode(t, r, exitOK)
		if got := convSeqs(t, r.stdout); got != "trip/1 trip/2 trip-b/3 trip-b/4 trip-c/5 trip-c/6" {
			t.Errorf("%s: replay of trip-c = %s", storetest.Describe(db), got)
		}
		r = run(t, "", "--db", db, "turn", "--conversation", "trip", "--request-id", "q2", "--content", "And the evening?")
		wantCode(t, r, exitOK)
		if !strings.HasPrefix(r.stdout, `{"status":"completed","attempt":2,`) || !strings.Contains(r.stdout, `Dinner at Maaemo.`) {
			t.Errorf("%s: the turn after the move: %s", storetest.Describe(db), r.stdout)
		}
		r = run(t, "", "--db", db, "title", "--conversation", "trip-c")
		wantCode(t, r, exitOK)
		if strings.TrimSpace(r.stdout) != `"Oslo trip #2"` {
			t.Errorf("%s: title of trip-c = %s", storetest.Describe(db), r.stdout)
		}
	}
}

// convSeqs lists the conversation/seq of each event of a JSONL stream.
func convSeqs(t *testing.T, out string) string {
	t.Helper()
	var parts []string
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		var e struct {
			ConversationID string `json:"conversation_id"`
			Seq            int64  `json:"seq"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("event line %q: %v", line, err)
		}
		parts = append(parts, fmt.Sprintf("%s/%d", e.ConversationID, e.Seq))
	}
	return strings.Join(parts, " ")
}

// TestBench_Postgres: bench with a PostgreSQL --db runs in a scratch
// schema of that database and drops it afterwards.
func TestBench_Postgres(t *testing.T) {
	shrinkBench(t)
	db := storetest.Postgres(t).New(t)
	r := run(t, "", "--db", db, "bench", "--quick", "--workloads", "parallel-appends,process-appends", "--json")
	wantCode(t, r, exitOK)
	var rep benchJSON
	decodeDoc(t, r.stdout, &rep)
	var names []string
	for _, res := range rep.Results {
		names = append(names, res.Workload)
		if res.Ops <= 0 || res.Rate <= 0 || res.P50 <= 0 {
			t.Errorf("%s: ops %d rate %v p50 %v, want all set", res.Workload, res.Ops, res.Rate, res.P50)
		}
	}
	if !slices.Equal(names, []string{"parallel-appends", "process-appends"}) {
		t.Errorf("workloads %q", names)
	}
	u, err := url.Parse(rep.Database)
	schema := ""
	if err == nil {
		schema = u.Query().Get("search_path")
	}
	if !strings.HasPrefix(schema, "chatlog_bench_") {
		t.Fatalf("database %q, want the URL of a scratch schema chatlog_bench_...", rep.Database)
	}
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("the scratch schema %s is still there", schema)
	}
	r = run(t, "", "--db", db, "bench", "--quick", "--dir", t.TempDir())
	wantCode(t, r, exitUsage)
}

// sseEvent is one event a follower read from a server-sent stream.
type sseEvent struct {
	Seq       int64  `json:"seq"`
	ID        string `json:"id"`
	RequestID string `json:"request_id"`
}

// followSSE follows a conversation's events on a server until ctx ends,
// sending each to out.
func followSSE(ctx context.Context, base, conv string, out chan<- sseEvent) error {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/conversations/"+conv+"/events", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("follow %s: status %d", conv, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var e sseEvent
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			return fmt.Errorf("follow %s: %q: %w", conv, data, err)
		}
		select {
		case out <- e:
		case <-ctx.Done():
			return nil
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// postJSON posts body to url and returns the status and the decoded
// response.
func postJSON(c *http.Client, url, body string) (int, map[string]any, error) {
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &out)
	return resp.StatusCode, out, nil
}

// TestReplicas_Serve runs two chatlog serve processes on one PostgreSQL
// database and sends them a storm of overlapping requests: each key to
// one replica, a third of them again to the other at the same moment.
// Every key is stored once, with seqs 1..n in every conversation, and
// server-sent followers on either replica see every event, in order.
func TestReplicas_Serve(t *testing.T) {
	pg := storetest.Postgres(t)
	bin := chatlogBinary(t)
	db := pg.New(t)
	replicas := []*servedProcess{startServe(t, bin, db), startServe(t, bin, db)}
	const convs, clients = 4, 16
	keysPer := 40
	if raceEnabled {
		keysPer = 15
	}
	conv := func(k int) string { return fmt.Sprintf("r%d", k%convs) }

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type follower struct {
		replica int
		conv    string
		got     chan sseEvent
	}
	var followers []*follower
	var fwg sync.WaitGroup
	for ri, rep := range replicas {
		for c := range convs {
			f := &follower{replica: ri, conv: conv(c), got: make(chan sseEvent, 4096)}
			followers = append(followers, f)
			fwg.Go(func() {
				if err := followSSE(ctx, rep.base, f.conv, f.got); err != nil {
					t.Errorf("replica %d: %v", ri, err)
				}
			})
		}
	}
	defer fwg.Wait()
	defer cancel()

	client := &http.Client{Timeout: 30 * time.Second}
	type answer struct {
		key    int
		status int
		seq    int64
		id     string
	}
	answers := make(chan answer, clients*keysPer*2)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for i := range keysPer {
				k := c*keysPer + i
				body := fmt.Sprintf(`{"type":"user_message","content":"payload of k%d","request_id":"k%d"}`, k, k)
				first := rng.IntN(len(replicas))
				targets := []int{first}
				if rng.IntN(3) == 0 {
					targets = append(targets, 1-first) // the same key, at once, to the other replica
				}
				var twg sync.WaitGroup
				for _, ri := range targets {
					twg.Go(func() {
						code, out, err := postJSON(client, replicas[ri].base+"/v1/conversations/"+conv(k)+"/events", body)
						if err != nil {
							t.Errorf("key %d on replica %d: %v", k, ri, err)
							return
						}
						seq, _ := out["seq"].(float64)
						id, _ := out["id"].(string)
						answers <- answer{k, code, int64(seq), id}
					})
				}
				twg.Wait()
			}
		})
	}
	wg.Wait()
	close(answers)
	created := map[int]int{}
	stored := map[int]answer{}
	for a := range answers {
		switch a.status {
		case http.StatusCreated:
			created[a.key]++
		case http.StatusOK:
		default:
			t.Errorf("key %d: status %d", a.key, a.status)
			continue
		}
		if prev, ok := stored[a.key]; ok && (prev.id != a.id || prev.seq != a.seq) {
			t.Errorf("key %d answered as id %s seq %d and id %s seq %d", a.key, prev.id, prev.seq, a.id, a.seq)
		}
		stored[a.key] = a
	}
	total := clients * keysPer
	for k := range total {
		if created[k] != 1 {
			t.Errorf("key %d was created %d times, want exactly once", k, created[k])
		}
	}

	// The log, read from one replica: every key once, seqs 1..n.
	perConv := map[string][]sseEvent{}
	for c := range convs {
		var after int64
		for {
			resp, err := client.Get(fmt.Sprintf("%s/v1/conversations/%s/events?after_seq=%d&limit=1000", replicas[0].base, conv(c), after))
			if err != nil {
				t.Fatal(err)
			}
			var page struct {
				Events []sseEvent `json:"events"`
			}
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Events) == 0 {
				break
			}
			perConv[conv(c)] = append(perConv[conv(c)], page.Events...)
			after = page.Events[len(page.Events)-1].Seq
		}
	}
	n := 0
	for c, evs := range perConv {
		for i, e := range evs {
			if e.Seq != int64(i+1) {
				t.Fatalf("conversation %s: seq %d at index %d", c, e.Seq, i)
			}
		}
		n += len(evs)
	}
	if n != total {
		t.Errorf("the log holds %d events, want one per key: %d", n, total)
	}

	// Every follower, on either replica, saw its conversation's events
	// exactly, in order.
	for _, f := range followers {
		want := perConv[f.conv]
		var got []sseEvent
		deadline := time.After(30 * time.Second)
		for len(got) < len(want) {
			select {
			case e := <-f.got:
				got = append(got, e)
			case <-deadline:
				t.Fatalf("follower of %s on replica %d saw %d of %d events", f.conv, f.replica, len(got), len(want))
			}
		}
		for i := range want {
			if got[i].ID != want[i].ID || got[i].Seq != want[i].Seq {
				t.Fatalf("follower of %s on replica %d: event %d is %s seq %d, the log has %s seq %d",
					f.conv, f.replica, i, got[i].ID, got[i].Seq, want[i].ID, want[i].Seq)
			}
		}
	}
	t.Logf("%d keys over %d conversations through 2 replicas; %d followers saw every event", total, convs, len(followers))
}

// TestReplicas_TurnHandoff: a client streaming a reply through one
// replica loses it (SIGKILL) mid-stream. Asking the other replica for the
// turn answers that it is in flight until the dead attempt's lease
// expires, then hands the turn over as attempt 2; the reply is folded
// from attempt 2's chunks only, and a late chunk of attempt 1 is refused.
func TestReplicas_TurnHandoff(t *testing.T) {
	pg := storetest.Postgres(t)
	bin := chatlogBinary(t)
	db := pg.New(t)
	a, b := startServe(t, bin, db), startServe(t, bin, db)
	client := &http.Client{Timeout: 30 * time.Second}
	post := func(base, path, body string) (int, map[string]any) {
		t.Helper()
		code, out, err := postJSON(client, base+"/v1/conversations/h"+path, body)
		if err != nil {
			t.Fatal(err)
		}
		return code, out
	}
	const lease = 1500 // ms
	turn := fmt.Sprintf(`{"request_id":"u1","content":"Tell me about fjords","lease_ms":%d}`, lease)
	if code, out := post(a.base, "/turns", turn); code != http.StatusCreated || out["attempt"] != float64(1) {
		t.Fatalf("begin on replica a: %d %v", code, out)
	}
	for i, text := range []string{"Fjords are ", "deep "} {
		if code, out := post(a.base, "/deltas", fmt.Sprintf(`{"user_request_id":"u1","index":%d,"content":%q,"attempt":1}`, i, text)); code != http.StatusCreated {
			t.Fatalf("chunk %d on replica a: %d %v", i, code, out)
		}
	}
	begun := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.cmd.Wait()

	// The other replica: in flight while the lease is live, then the
	// turn is its caller's as attempt 2.
	var out map[string]any
	sawInFlight := false
	for {
		code, o := post(b.base, "/turns", turn)
		if code == http.StatusCreated {
			out = o
			break
		}
		if code != http.StatusConflict {
			t.Fatalf("begin on replica b: %d %v", code, o)
		}
		if time.Since(begun) > time.Duration(lease)*time.Millisecond+30*time.Second {
			t.Fatal("replica b never took the turn over")
		}
		sawInFlight = true
		time.Sleep(50 * time.Millisecond)
	}
	if out["attempt"] != float64(2) {
		t.Fatalf("take-over on replica b: %v, want attempt 2", out)
	}
	if !sawInFlight && time.Since(begun) < time.Duration(lease)*time.Millisecond {
		t.Errorf("replica b took the turn over %v after the kill, within the dead attempt's lease", time.Since(begun))
	}
	if code, o := post(b.base, "/deltas", `{"user_request_id":"u1","index":2,"content":"late","attempt":1}`); code != http.StatusConflict {
		t.Errorf("a late chunk of attempt 1: %d %v, want 409 stale_attempt", code, o)
	}
	for i, text := range []string{"Fjords are ", "long sea inlets."} {
		if code, o := post(b.base, "/deltas", fmt.Sprintf(`{"user_request_id":"u1","index":%d,"content":%q,"attempt":2}`, i, text)); code != http.StatusCreated {
			t.Fatalf("chunk %d of attempt 2: %d %v", i, code, o)
		}
	}
	code, msg := post(b.base, "/finish", `{"user_request_id":"u1","attempt":2,"stop_reason":"stop"}`)
	if code/100 != 2 || msg["content"] != "Fjords are long sea inlets." {
		t.Fatalf("finish on replica b: %d %v", code, msg)
	}
	if code, o := post(b.base, "/turns", turn); code != http.StatusOK || o["status"] != "completed" {
		t.Errorf("begin after the finish: %d %v, want 200 completed", code, o)
	}
	// The dead attempt's chunks stay in the log, as acknowledged.
	r := run(t, "", "--db", db, "replay", "--conversation", "h", "--with-deltas")
	wantCode(t, r, exitOK)
	for _, want := range []string{`"content":"Fjords are "`, `"content":"deep "`, `"content":"Fjords are long sea inlets."`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the log lacks %s:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, `"late"`) {
		t.Errorf("the refused chunk is in the log")
	}
}
