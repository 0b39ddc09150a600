package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"
	"golang.org/x/term"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/logfile"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/postgres"
)

var benchCommand = &command{
	name:    "bench",
	args:    "[--quick] [--workloads W,W,...] [--dir DIR] [--json]",
	summary: "measure this machine: run the standard workloads on a scratch database and print one table (ops, rate, p50, p99, p999); never touches --db's data (with a PostgreSQL --db, the scratch database is a schema of its own there, dropped afterwards)",
	example: "chatlog bench --quick --workloads parallel-appends,process-appends   # add --dir /data/bench to measure the disk a SQLite database will live on, or --db postgres://... to measure that server",
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			quick     = fs.Bool("quick", false, "a short run (about 15 s instead of about 60 s): fewer operations, shorter time bounds")
			workloads optionalString
			dir       = fs.String("dir", "", "create the scratch SQLite database in `DIR` and keep it (default: a temporary directory, removed afterwards)")
			asJSON    = fs.Bool("json", false, "print one JSON document instead of the table")
			worker    = fs.String("worker", "", "internal: run as one of the processes of the process-appends workload, as `SPEC` (JSON) says")
		)
		fs.Var(&workloads, "workloads", "comma-separated `NAMES` of the workloads to run (default all): "+strings.Join(benchNames(), ", "))
		return func(ctx context.Context, env *env, args []string) error {
			if *worker != "" {
				return benchWorker(ctx, env, *worker)
			}
			if *dir != "" && postgres.IsURL(env.dbPath) {
				return usageErr("--dir places a SQLite scratch database; with a PostgreSQL --db the scratch database is a schema in that database")
			}
			selected, err := selectWorkloads(workloads)
			if err != nil {
				return err
			}
			scale := benchFull
			if *quick {
				scale = benchQuick
			}
			report, err := runBench(ctx, env, selected, scale.shrunk(benchShrink), *dir)
			if err != nil {
				return err
			}
			report.Quick = *quick
			if *asJSON {
				return writeJSON(env, report)
			}
			return report.writeTable(env.stdout)
		}
	},
}

// benchWorkload is one entry of the workload table: run measures it on
// the scratch store and returns its rows (most workloads have one).
type benchWorkload struct {
	name string
	run  func(ctx context.Context, be *benchEnv) ([]benchRow, error)
}

// benchWorkloads is the workload table, in the order they run: rebuild and
// search come last so they work over what the others wrote.
var benchWorkloads = []benchWorkload{
	{"sequential-appends", benchSequentialAppends},
	{"parallel-appends", benchParallelAppends},
	{"process-appends", benchProcessAppends},
	{"duplicate-retries", benchDuplicateRetries},
	{"streaming-chunks", benchStreamingChunks},
	{"turn-retries", benchTurnRetries},
	{"projection", benchProjection},
	{"ingest", benchIngest},
	{"rebuild", benchRebuild},
	{"search", benchSearch},
}

func benchNames() []string {
	names := make([]string, len(benchWorkloads))
	for i, w := range benchWorkloads {
		names[i] = w.name
	}
	return names
}

// selectWorkloads parses --workloads into table entries, in table order.
func selectWorkloads(list optionalString) ([]benchWorkload, error) {
	if !list.set {
		return benchWorkloads, nil
	}
	want := map[string]bool{}
	for name := range strings.SplitSeq(list.v, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(benchNames(), name) {
			return nil, usageErr("--workloads: unknown workload %q (known: %s)", name, strings.Join(benchNames(), ", "))
		}
		want[name] = true
	}
	var out []benchWorkload
	for _, w := range benchWorkloads {
		if want[w.name] {
			out = append(out, w)
		}
	}
	return out, nil
}

// benchScale bounds the workloads: each timed loop stops after its count
// or after budget, whichever comes first.
type benchScale struct {
	budget time.Duration

	seqAppends, parAppends int
	retryKeys, retries     int
	chunks, streamRounds   int // chunks per stream; rounds of 64 streams
	answered, turnRetries  int
	longConv, fullConv     int // events of the two projected conversations
	lastReads, fullReads   int
	ingest                 int // events in the generated log
	rebuildFloor           int // events the store should hold before a rebuild
	searchFloor, searches  int // messages the store should hold before searching
}

var (
	benchFull = benchScale{
		budget:     4 * time.Second,
		seqAppends: 5_000, parAppends: 50_000,
		retryKeys: 10_000, retries: 200_000,
		chunks: 200, streamRounds: 3,
		answered: 256, turnRetries: 100_000,
		longConv: 50_000, fullConv: 10_000,
		lastReads: 5_000, fullReads: 500,
		ingest:       50_000,
		rebuildFloor: 100_000,
		searchFloor:  20_000, searches: 5_000,
	}
	benchQuick = benchScale{
		budget:     time.Second,
		seqAppends: 1_000, parAppends: 10_000,
		retryKeys: 2_000, retries: 50_000,
		chunks: 50, streamRounds: 1,
		answered: 64, turnRetries: 20_000,
		longConv: 10_000, fullConv: 10_000,
		lastReads: 2_000, fullReads: 100,
		ingest:       10_000,
		rebuildFloor: 20_000,
		searchFloor:  5_000, searches: 2_000,
	}
)

// benchShrink divides every count and time bound of a run. It is a knob
// for tests only (1 for users): it keeps "bench --quick" to about a
// second.
var benchShrink = 1

// shrunk divides s's counts and budget by k, keeping each count useful.
func (s benchScale) shrunk(k int) benchScale {
	if k <= 1 {
		return s
	}
	div := func(n, least int) int { return max(least, n/k) }
	return benchScale{
		budget:     s.budget / time.Duration(k),
		seqAppends: div(s.seqAppends, 10), parAppends: div(s.parAppends, 64),
		retryKeys: div(s.retryKeys, 10), retries: div(s.retries, 32),
		chunks: div(s.chunks, 2), streamRounds: 1,
		answered: div(s.answered, 4), turnRetries: div(s.turnRetries, 32),
		longConv: div(s.longConv, 100), fullConv: div(s.fullConv, 100),
		lastReads: div(s.lastReads, 10), fullReads: div(s.fullReads, 2),
		ingest:       div(s.ingest, 100),
		rebuildFloor: div(s.rebuildFloor, 100),
		searchFloor:  div(s.searchFloor, 100), searches: div(s.searches, 10),
	}
}

// benchEnv is what a workload runs against.
type benchEnv struct {
	r store
	// loc is where r lives (a file path or a PostgreSQL URL), for the
	// processes of process-appends to open.
	loc   string
	scale benchScale
	// messages counts the messages written that carry benchWords, for
	// search.
	messages atomic.Int64
}

// benchRow is one line of the table: ops done at rate, and the latency
// percentiles of the operation named by What.
type benchRow struct {
	Workload string `json:"workload"`
	// What is the operation each latency sample times, and its setting.
	What    string  `json:"what"`
	Ops     int64   `json:"ops"`
	Unit    string  `json:"unit"` // of Rate: "events/s", "retries/s", ...
	Rate    float64 `json:"rate"`
	Seconds float64 `json:"seconds"`
	Samples int     `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	// P999 is set from 1,000 samples on.
	P999 *float64 `json:"p999_ms,omitempty"`
}

// newRow summarises a measurement: ops units done in wall time, with one
// latency sample per operation timed.
func newRow(workload, what string, ops int64, unit string, wall time.Duration, lat []time.Duration) benchRow {
	row := benchRow{Workload: workload, What: what, Ops: ops, Unit: unit, Seconds: seconds(wall), Samples: len(lat)}
	if wall > 0 {
		row.Rate = math.Round(float64(ops)/wall.Seconds()*10) / 10
	}
	slices.Sort(lat)
	pct := func(q float64) float64 {
		i := max(0, int(math.Ceil(q*float64(len(lat))))-1) // nearest rank
		return math.Round(float64(lat[i])/1e3) / 1e3       // ms, to the µs
	}
	if len(lat) > 0 {
		row.P50, row.P99 = pct(0.50), pct(0.99)
	}
	if len(lat) >= 1000 {
		p := pct(0.999)
		row.P999 = &p
	}
	return row
}

// benchMachine is what the numbers were measured on.
type benchMachine struct {
	GOOS   string `json:"goos"`
	GOARCH string `json:"goarch"`
	CPUs   int    `json:"cpus"`
	Go     string `json:"go"`
}

// benchReport is what bench prints: with --json as it is.
type benchReport struct {
	Machine benchMachine `json:"machine"`
	Quick   bool         `json:"quick"`
	// Database is the scratch database, kept when --dir was given: a
	// file, or a PostgreSQL URL (without password) and schema.
	Database string `json:"database"`
	Kept     bool   `json:"kept"`
	// Durability is the sync setting acknowledged appends wait for.
	Durability string     `json:"durability"`
	Seconds    float64    `json:"seconds"`
	Results    []benchRow `json:"results"`
}

// runBench creates the scratch database, runs the workloads on it in turn
// and removes it (unless it lives in keepDir).
func runBench(ctx context.Context, env *env, workloads []benchWorkload, scale benchScale, keepDir string) (_ *benchReport, err error) {
	report := &benchReport{
		Machine: benchMachine{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version()},
		Results: []benchRow{},
	}
	var loc string
	switch {
	case postgres.IsURL(env.dbPath):
		// A schema of its own: a database left by an earlier run would
		// turn appends into retries, and the user's tables stay
		// untouched.
		schema := "chatlog_bench_" + strings.ToLower(rand.Text()[:12])
		if loc, err = postgres.WithSchema(env.dbPath, schema); err != nil {
			return nil, err
		}
		report.Database = dbName(loc)
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if derr := postgres.DropSchema(dctx, env.dbPath, schema); err == nil && derr != nil {
				err = fmt.Errorf("drop the scratch schema: %w", derr)
			}
		}()
	case keepDir != "":
		if err := os.MkdirAll(keepDir, 0o755); err != nil {
			return nil, fmt.Errorf("--dir: %w", err)
		}
		// A fresh file each run: a database left by an earlier run would
		// turn appends into retries. SQLite takes an empty file as new.
		f, err := os.CreateTemp(keepDir, "chatlog-bench-*.db")
		if err != nil {
			return nil, fmt.Errorf("--dir: %w", err)
		}
		report.Database, report.Kept = f.Name(), true
		if err := errors.Join(f.Chmod(0o644), f.Close()); err != nil {
			return nil, fmt.Errorf("--dir: %w", err)
		}
		loc = report.Database
	default:
		tmp, err := os.MkdirTemp("", "chatlog-bench-")
		if err != nil {
			return nil, err
		}
		defer func() {
			if rerr := os.RemoveAll(tmp); err == nil && rerr != nil {
				err = fmt.Errorf("remove the scratch database: %w", rerr)
			}
		}()
		report.Database = filepath.Join(tmp, "bench.db")
		loc = report.Database
	}

	r, err := openStore(ctx, loc, "")
	if err != nil {
		return nil, fmt.Errorf("open the scratch database %s: %w", report.Database, err)
	}
	defer func() {
		if cerr := r.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close the scratch database: %w", cerr)
		}
	}()
	report.Durability = "synchronous=FULL"
	if pg, ok := r.(*postgres.Repo); ok {
		v, err := pg.Setting(ctx, "synchronous_commit")
		if err != nil {
			return nil, err
		}
		report.Durability = "synchronous_commit=" + v
	}
	be := &benchEnv{r: r, loc: loc, scale: scale}
	status := newBenchStatus(env.stderr)
	defer status.clear()
	start := time.Now()
	for i, w := range workloads {
		status.show(fmt.Sprintf("bench: %s (%d of %d)...", w.name, i+1, len(workloads)))
		rows, err := w.run(ctx, be)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", w.name, err)
		}
		report.Results = append(report.Results, rows...)
	}
	report.Seconds = seconds(time.Since(start))
	return report, nil
}

// Workload data: ~200-byte messages, each carrying two of benchWords, so
// that every pair of them occurs in one message in a hundred.

var benchWords = []string{"penguins", "antarctica", "weather", "oslo", "soup", "leeks", "loop", "closure", "tool", "call"}

func benchText(n int) string {
	return fmt.Sprintf("message %d about %s and %s: the quick brown fox jumps over the lazy dog while the model streams its answer back to a browser that may retry",
		n, benchWords[n%10], benchWords[n/10%10])
}

// benchMessage is message n: a user message when n is even, else an
// assistant message.
func benchMessage(conv, requestID string, n int) events.Event {
	e := events.Event{ConversationID: conv, Type: events.TypeUserMessage, RequestID: requestID, Content: events.NewText(benchText(n))}
	if n%2 == 1 {
		e.Type, e.Model = events.TypeAssistantMessage, "bench-model"
	}
	return e
}

// load appends n messages (untimed setup) in 1,000-event batches; conv
// names message i's conversation.
func (be *benchEnv) load(ctx context.Context, prefix string, n int, conv func(i int) string) error {
	batch := make([]events.Event, 0, 1000)
	for i := range n {
		batch = append(batch, benchMessage(conv(i), fmt.Sprintf("%s-%d", prefix, i), i))
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := be.r.AppendBatch(ctx, batch, repo.AppendOptions{}); err != nil {
				return err
			}
			be.messages.Add(int64(len(batch)))
			batch = batch[:0]
		}
	}
	return nil
}

// timed calls op(ctx, i) for i = 0, 1, ... from workers goroutines until
// limit calls were made or budget has passed, timing each call. It returns
// the latencies and the wall time; the first error stops it.
func timed(ctx context.Context, workers, limit int, budget time.Duration, op func(ctx context.Context, i int) error) ([]time.Duration, time.Duration, error) {
	g, ctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	lat := make([][]time.Duration, workers)
	start := time.Now()
	deadline := start.Add(budget)
	for w := range workers {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= limit {
					return nil
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				t := time.Now()
				if t.After(deadline) {
					return nil
				}
				if err := op(ctx, i); err != nil {
					return err
				}
				lat[w] = append(lat[w], time.Since(t))
			}
		})
	}
	err := g.Wait()
	return slices.Concat(lat...), time.Since(start), err
}

// forever is the budget of setup loops, which are bounded by count only.
const forever = 24 * time.Hour

// The workloads.

func benchSequentialAppends(ctx context.Context, be *benchEnv) ([]benchRow, error) {
	return benchAppends(ctx, be, "sequential-appends", 1, be.scale.seqAppends)
}

func benchParallelAppends(ctx context.Context, be *benchEnv) ([]benchRow, error) {
	return benchAppends(ctx, be, "parallel-appends", 64, be.scale.parAppends)
}

// benchAppends appends new messages, one Append each, from appenders
// goroutines over 64 conversations.
func benchAppends(ctx context.Context, be *benchEnv, name string, appenders, limit int) ([]benchRow, error) {
	lat, wall, err := timed(ctx, appenders, limit, be.scale.budget, func(ctx context.Context, i int) error {
		e := benchMessage(fmt.Sprintf("%s-%02d", name, i%64), fmt.Sprintf("r%d", i), i)
		res, err := be.r.Append(ctx, e, repo.AppendOptions{})
		if err == nil && res.Outcome != repo.Appended {
			err = fmt.Errorf("append %d: %s, want appended", i, res.Outcome)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	be.messages.Add(int64(len(lat)))
	what := fmt.Sprintf("Append, %d appenders", appenders)
	if appenders == 1 {
		what = "Append, 1 appender"
	}
	return []benchRow{newRow(name, what, int64(len(lat)), "events/s", wall, lat)}, nil
}

// benchDuplicateRetries retries Appends of stored events from 32
// goroutines: each is answered as a duplicate.
func benchDuplicateRetries(ctx context.Context, be *benchEnv) ([]benchRow, error) {
	const name = "duplicate-retries"
	keys := be.scale.retryKeys
	conv := func(i int) string { return fmt.Sprintf("%s-%02d", name, i%16) }
	if err := be.load(ctx, name, keys, conv); err != nil {
		return nil, err
	}
	lat, wall, err := timed(ctx, 32, be.scale.retries, be.scale.budget, func(ctx context.Context, i int) error {
		k := i % keys
		res, err := be.r.Append(ctx, benchMessage(conv(k), fmt.Sprintf("%s-%d", name, k), k), repo.AppendOptions{})
		if err == nil && !res.Duplicate() {
			err = fmt.Errorf("retry of key %d: %s, want duplicate", k, res.Outcome)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return []benchRow{newRow(name, "Append of a stored key, 32 goroutines", int64(len(lat)), "retries/s", wall, lat)}, nil
}

// benchStreamingChunks streams replies as a backend does: 64 turns at
// once, each chunk its own Append; then each stream is finished, folding
// its chunks into the final message. Rounds repeat within the budget.
func benchStreamingChunks(ctx context.Context, be *benchEnv) ([]benchRow, error) {
	const (
		name    = "streaming-chunks"
		streams = 64
	)
	perStream := be.scale.chunks
	var (
		chunkLat, finishLat   []time.Duration
		chunkWall, finishWall time.Duration
	)
	start := time.Now()
	for round := 0; round < be.scale.streamRounds && (round == 0 || time.Since(start) < be.scale.budget); round++ {
		conv := func(s int) string { return fmt.Sprintf("%s-%02d", name, s) }
		urid := fmt.Sprintf("u%d", round)
		attempts := make([]int, streams)
		_, _, err := timed(ctx, streams, streams, forever, func(ctx context.Context, s int) error {
			user := events.Event{ConversationID: conv(s), Type: events.TypeUserMessage, RequestID: urid, Content: events.NewText("tell me a long story")}
			st, err := be.r.BeginTurn(ctx, repo.BeginTurn{UserMessage: user, Owner: "chatlog-bench", Lease: time.Hour})
			if err == nil && st.Status != repo.TurnStarted {
				err = fmt.Errorf("begin turn: %s, want started", st.Status)
			}
			attempts[s] = st.Attempt
			return err
		})
		if err != nil {
			return nil, err
		}

		// Each goroutine writes one stream's chunks in order.
		lat := make([][]time.Duration, streams)
		g, gctx := errgroup.WithContext(ctx)
		t0 := time.Now()
		for s := range streams {
			g.Go(func() error {
				for j := range perStream {
					t := time.Now()
					chunk := compact.Chunk(conv(s), urid, attempts[s], j, fmt.Sprintf(" tok%04d", j))
					if _, err := be.r.Append(gctx, chunk, repo.AppendOptions{}); err != nil {
						return fmt.Errorf("chunk %d of stream %d: %w", j, s, err)
					}
					lat[s] = append(lat[s], time.Since(t))
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		chunkWall += time.Since(t0)
		chunkLat = append(chunkLat, slices.Concat(lat...)...)

		fl, wall, err := timed(ctx, streams, streams, forever, func(ctx context.Context, s int) error {
			res, err := compact.Finish(ctx, be.r, conv(s), urid, attempts[s], compact.Options{StopReason: "stop"})
			if err == nil && res.Outcome != repo.Appended {
				err = fmt.Errorf("finish stream %d: %s, want appended", s, res.Outcome)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		finishWall += wall
		finishLat = append(finishLat, fl...)
	}
	return []benchRow{
		newRow(name, fmt.Sprintf("Append of a chunk, %d streams", streams), int64(len(chunkLat)), "chunks/s", chunkWall, chunkLat),
		newRow(name, fmt.Sprintf("compact.Finish, %d streams x %d chunks", streams, perStream), int64(len(finishLat)), "finishes/s", finishWall, finishLat),
	}, nil
}

// benchTurnRetries retries answered requests through dedupe.Runner.Turn
// from 32 goroutines: each gets the recorded reply, the model never runs.
func benchTurnRetries(ctx context.Context, be *benchEnv) ([]benchRow, error) {
	const name = "turn-retries"
	runner := &dedupe.Runner{Store: be.r, Owner: "chatlog-bench"}
	n := be.scale.answered
	msgs := make([]events.Event, n)
	for i := range msgs {
		msgs[i] = events.Event{ConversationID: fmt.Sprintf("%s-%02d", name, i%16), Type: events.TypeUserMessage,
			RequestID: fmt.Sprintf("u%d", i), Content: events.NewText(fmt.Sprintf("question %d", i))}
	}
	answer := func(ctx context.Context, s *dedupe.Stream) (compact.Options, error) {
		for _, c := range []string{"Hello", ", ", "world"} {
			if _, err := s.Write(ctx, c); err != nil {
				return compact.Options{}, err
			}
		}
		return compact.Options{StopReason: "stop"}, nil
	}
	if _, _, err := timed(ctx, 32, n, forever, func(ctx context.Context, i int) error {
		_, err := runner.Turn(ctx, msgs[i], answer)
		return err
	}); err != nil {
		return nil, err
	}
	mustNotRun := func(context.Context, *dedupe.Stream) (compact.Options, error) {
		return compact.Options{}, errors.New("the model ran for an answered turn")
	}
	lat, wall, err := timed(ctx, 32, be.scale.turnRetries, be.scale.budget, func(ctx context.Context, i int) error {
		rep, err := runner.Turn(ctx, msgs[i%n], mustNotRun)
		if err == nil && rep.Ran {
			err = errors.New("the model ran for an answered turn")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return []benchRow{newRow(name, "Runner.Turn, answered, 32 goroutines", int64(len(lat)), "retries/s", wall, lat)}, nil
}

// benchProjection reads what the model sees: the last 50 messages of a
// long conversation, and the whole of a ~10,000-event one in OpenAI shape.
func benchProjection(ctx context.Context, be *benchEnv) ([]benchRow, error) {
	const name = "projection"
	long, full := be.scale.longConv, be.scale.fullConv
	if err := be.load(ctx, name+"-long", long, func(int) string { return name + "-long" }); err != nil {
		return nil, err
	}
	if err := be.load(ctx, name+"-full", full, func(int) string { return name + "-full" }); err != nil {
		return nil, err
	}
	lastLat, lastWall, err := timed(ctx, 1, be.scale.lastReads, be.scale.budget, func(ctx context.Context, _ int) error {
		c, err := projection.Read(ctx, be.r, name+"-long", projection.Options{MaxMessages: 50})
		if err == nil && len(c.Messages) != min(50, long) {
			err = fmt.Errorf("read %d messages, want %d", len(c.Messages), min(50, long))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	fullLat, fullWall, err := timed(ctx, 1, be.scale.fullReads, be.scale.budget, func(ctx context.Context, _ int) error {
		c, err := projection.Read(ctx, be.r, name+"-full", projection.Options{})
		if n := len(c.OpenAI()); err == nil && n != full {
			err = fmt.Errorf("projected %d messages, want %d", n, full)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return []benchRow{
		newRow(name, fmt.Sprintf("Read, last 50 of %s events", thousands(int64(long))), int64(len(lastLat)), "reads/s", lastWall, lastLat),
		newRow(name, fmt.Sprintf("Read + OpenAI, all %s events", thousands(int64(full))), int64(len(fullLat)), "reads/s", fullWall, fullLat),
	}, nil
}

// benchIngest ingests a generated JSONL log held in memory: user and
// assistant messages over 16 conversations, every event keyed. Latency is
// per batch the store takes (about 1,000 lines).
func benchIngest(ctx context.Context, be *benchEnv) ([]benchRow, error) {
	const name = "ingest"
	n := be.scale.ingest
	var log bytes.Buffer
	for i := range n {
		conv := fmt.Sprintf("%s-%02d", name, i%16)
		if i%2 == 0 {
			fmt.Fprintf(&log, `{"conversation_id":%q,"type":"user_message","request_id":"u%d","content":%q}`+"\n", conv, i, benchText(i))
		} else {
			fmt.Fprintf(&log, `{"conversation_id":%q,"type":"assistant_message","request_id":"assistant:u%d","content":%q,"model":"bench-model","usage":{"input":120,"output":45}}`+"\n", conv, i-1, benchText(i))
		}
	}
	var lat []time.Duration
	start := time.Now()
	last := start
	st, err := logfile.Ingest(ctx, be.r, &log, logfile.IngestOptions{OnProgress: func(int) {
		now := time.Now()
		lat = append(lat, now.Sub(last))
		last = now
	}})
	wall := time.Since(start)
	if err != nil {
		return nil, err
	}
	if st.Appended != n {
		return nil, fmt.Errorf("appended %d of %d events: %+v", st.Appended, n, st)
	}
	be.messages.Add(int64(n))
	return []benchRow{newRow(name, "Ingest, per ~1,000-line batch", int64(n), "events/s", wall, lat)}, nil
}

// benchRebuild rebuilds the read models from the whole scratch log, first
// topping it up to the scale's floor when the workloads run before wrote
// less.
func benchRebuild(ctx context.Context, be *benchEnv) ([]benchRow, error) {
	const name = "rebuild"
	if short := be.scale.rebuildFloor - int(appended(be.r)); short > 0 {
		if err := be.load(ctx, name, short, func(i int) string { return fmt.Sprintf("%s-%03d", name, i%256) }); err != nil {
			return nil, err
		}
	}
	var replayed int64
	start := time.Now()
	if err := be.r.RebuildReadModels(ctx, func(n int64) { replayed = n }); err != nil {
		return nil, err
	}
	wall := time.Since(start)
	return []benchRow{newRow(name, fmt.Sprintf("RebuildReadModels, %s events", thousands(replayed)), replayed, "events/s", wall, []time.Duration{wall})}, nil
}

// benchSearch runs two-word searches over the messages written, first
// topping them up to the scale's floor.
func benchSearch(ctx context.Context, be *benchEnv) ([]benchRow, error) {
	const name = "search"
	if short := be.scale.searchFloor - int(be.messages.Load()); short > 0 {
		if err := be.load(ctx, name, short, func(i int) string { return fmt.Sprintf("%s-%03d", name, i%256) }); err != nil {
			return nil, err
		}
	}
	var hits atomic.Int64
	lat, wall, err := timed(ctx, 1, be.scale.searches, be.scale.budget, func(ctx context.Context, i int) error {
		a, b := i%10, (i%10+1+i/10%9)%10 // two different words
		res, err := be.r.Search(ctx, repo.SearchQuery{Query: benchWords[a] + " " + benchWords[b]})
		hits.Add(int64(len(res)))
		return err
	})
	if err != nil {
		return nil, err
	}
	if hits.Load() == 0 {
		return nil, errors.New("no search found anything")
	}
	what := fmt.Sprintf("Search, 2 words, %s messages", thousands(be.messages.Load()))
	return []benchRow{newRow(name, what, int64(len(lat)), "searches/s", wall, lat)}, nil
}

// Output.

// writeTable writes the report: the machine and the run, then one table,
// names flush left and numbers flush right.
func (rep *benchReport) writeTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "machine:  %s/%s, %d CPUs, %s\n", rep.Machine.GOOS, rep.Machine.GOARCH, rep.Machine.CPUs, rep.Machine.Go)
	kept := "removed afterwards"
	if rep.Kept {
		kept = "kept"
	}
	mode := "full"
	if rep.Quick {
		mode = "quick"
	}
	fmt.Fprintf(&b, "database: %s (%s, %s)\n", rep.Database, rep.Durability, kept)
	fmt.Fprintf(&b, "run:      %s, %.1f s\n\n", mode, rep.Seconds)

	// The rate's unit gets a column of its own, flush left, so that the
	// rates line up.
	right := []bool{false, false, true, true, false, true, true, true}
	rows := [][]string{{"WORKLOAD", "LATENCY OF", "OPS", "RATE", "", "P50", "P99", "P999"}}
	for _, r := range rep.Results {
		p999 := "-"
		if r.P999 != nil {
			p999 = fmtMillis(*r.P999)
		}
		rows = append(rows, []string{r.Workload, r.What, thousands(r.Ops), fmtRate(r.Rate), r.Unit,
			fmtMillis(r.P50), fmtMillis(r.P99), p999})
	}
	widths := make([]int, len(right))
	for _, row := range rows {
		for c, cell := range row {
			widths[c] = max(widths[c], utf8.RuneCountInString(cell))
		}
	}
	for _, row := range rows {
		for c, cell := range row {
			pad := strings.Repeat(" ", widths[c]-utf8.RuneCountInString(cell))
			if c > 0 {
				b.WriteString("  ")
			}
			if right[c] {
				b.WriteString(pad + cell)
			} else {
				b.WriteString(cell + pad)
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// thousands writes n with comma separators: 12,345.
func thousands(n int64) string {
	if n < 0 {
		return "-" + thousands(-n)
	}
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// fmtRate writes a rate with three significant digits or more: 8,412 or
// 41.7.
func fmtRate(r float64) string {
	if r >= 100 {
		return thousands(int64(math.Round(r)))
	}
	return strconv.FormatFloat(r, 'f', 1, 64)
}

// fmtMillis writes a latency given in milliseconds in a unit that suits
// it: 85µs, 1.42ms, 27.3ms, 2.61s.
func fmtMillis(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.0fµs", ms*1000)
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}

// benchStatus shows which workload runs, on a terminal only, on one line
// that it clears at the end.
type benchStatus struct{ w io.Writer }

func newBenchStatus(w io.Writer) *benchStatus {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &benchStatus{w: w}
	}
	return &benchStatus{}
}

func (s *benchStatus) show(msg string) {
	if s.w != nil {
		fmt.Fprintf(s.w, "\r\x1b[K%s", msg)
	}
}

func (s *benchStatus) clear() { s.show("") }
