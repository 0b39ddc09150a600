package dedupe_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/internal/storetest"
	"github.com/chatlog/chatlog/repo"
)

// These tests run copies of the test binary as child processes: the child
// side is TestMain, selected by environment variables. A child prints one
// JSON line per thing it did, written at once, so the parent knows what was
// acknowledged when it kills the child.

const (
	envChild = "CHATLOG_DEDUPE_CHILD" // "turns": turnsChild; "stream": streamChild
	envDB    = "CHATLOG_DEDUPE_CHILD_DB"
	envSpec  = "CHATLOG_DEDUPE_CHILD_SPEC"
)

func TestMain(m *testing.M) {
	switch mode := os.Getenv(envChild); mode {
	case "":
		os.Exit(m.Run())
	case "turns":
		os.Exit(turnsChild())
	case "stream":
		os.Exit(streamChild())
	default:
		fmt.Fprintf(os.Stderr, "child: unknown mode %q\n", mode)
		os.Exit(2)
	}
}

// emitter prints JSON lines to stdout, one write per line.
type emitter struct{ mu sync.Mutex }

func (e *emitter) emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

func childSetup(spec any) (storetest.Store, error) {
	if err := json.Unmarshal([]byte(os.Getenv(envSpec)), spec); err != nil {
		return nil, fmt.Errorf("bad spec: %w", err)
	}
	return storetest.OpenLocation(context.Background(), os.Getenv(envDB))
}

// --- Many processes, the same requests ---

// turnsSpec tells a "turns" child which requests to ask for.
type turnsSpec struct {
	// Proc numbers the process (the parent is 0); it is in the text the
	// process's runs write.
	Proc int `json:"proc"`
	// Requests are 0..Requests-1, in conversations "c"+(i % Convs).
	Requests int `json:"requests"`
	Convs    int `json:"convs"`
	// Workers goroutines each ask for every request: those with an even
	// number in order, the others in an order of their own from Seed.
	Workers int           `json:"workers"`
	Seed    uint64        `json:"seed"`
	Lease   time.Duration `json:"lease"`
	Poll    time.Duration `json:"poll"`
}

// turnLine is what a "turns" process did: a Turn call's outcome (Kind
// "reply") or a call of its RunFunc (Kind "run", with the text it wrote).
type turnLine struct {
	Kind    string `json:"kind"`
	Proc    int    `json:"proc"`
	Worker  int    `json:"worker"`
	Req     int    `json:"req"`
	ID      string `json:"id,omitempty"`
	Text    string `json:"text,omitempty"`
	Attempt int    `json:"attempt"`
	Ran     bool   `json:"ran"`
	Err     string `json:"err,omitempty"`
}

func (s turnsSpec) conv(i int) string { return "c" + strconv.Itoa(i%s.Convs) }
func urid(i int) string               { return "u" + strconv.Itoa(i) }

// askAll runs spec's workers, each asking for every request, reporting
// every reply and every run through out.
func askAll(ctx context.Context, runner *dedupe.Runner, spec turnsSpec, out func(turnLine)) {
	run := func(i int) dedupe.RunFunc {
		return func(ctx context.Context, s *dedupe.Stream) (compact.Options, error) {
			var text strings.Builder
			for j := range 2 + i%3 {
				chunk := fmt.Sprintf("<p%d u%d a%d #%d>", spec.Proc, i, s.Attempt(), j)
				if _, err := s.Write(ctx, chunk); err != nil {
					return compact.Options{}, err
				}
				text.WriteString(chunk)
				time.Sleep(time.Millisecond) // give other processes time to collide with the run
			}
			out(turnLine{Kind: "run", Proc: spec.Proc, Req: i, Attempt: s.Attempt(), Text: text.String()})
			return compact.Options{StopReason: "stop"}, nil
		}
	}
	var wg sync.WaitGroup
	for w := range spec.Workers {
		order := make([]int, spec.Requests)
		for i := range order {
			order[i] = i
		}
		if w%2 == 1 {
			rng := rand.New(rand.NewPCG(spec.Seed, uint64(spec.Proc*1000+w)))
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		wg.Go(func() {
			for _, i := range order {
				rep, err := runner.Turn(ctx, userMessage(spec.conv(i), urid(i)), run(i))
				l := turnLine{Kind: "reply", Proc: spec.Proc, Worker: w, Req: i}
				if err != nil {
					l.Err = err.Error()
				} else {
					l.ID, l.Text, l.Attempt, l.Ran = rep.Message.ID, rep.Message.Text(), rep.Attempt, rep.Ran
				}
				out(l)
			}
		})
	}
	wg.Wait()
}

// countingStore counts the begins that found a turn in flight elsewhere.
type countingStore struct {
	repo.Repo
	inFlight atomic.Int64
}

func (s *countingStore) BeginTurn(ctx context.Context, req repo.BeginTurn) (repo.TurnState, error) {
	st, err := s.Repo.BeginTurn(ctx, req)
	if err == nil && st.Status == repo.TurnInFlight {
		s.inFlight.Add(1)
	}
	return st, err
}

// turnsChild opens the database, says "ready", waits for a line on stdin,
// then asks for the requests of its spec.
func turnsChild() int {
	var spec turnsSpec
	r, err := childSetup(&spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer r.Close()
	var e emitter
	e.emit(turnLine{Kind: "ready", Proc: spec.Proc})
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "child: waiting for the start:", err)
		return 1
	}
	store := &countingStore{Repo: r}
	runner := &dedupe.Runner{Store: store, Owner: "proc" + strconv.Itoa(spec.Proc), Lease: spec.Lease, Wait: true, PollInterval: spec.Poll}
	// A bound on a hung store: the parent would wait for the child forever.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	askAll(ctx, runner, spec, func(l turnLine) { e.emit(l) })
	e.emit(turnLine{Kind: "stats", Proc: spec.Proc, Attempt: int(store.inFlight.Load())})
	return 0
}

// child is a running child process and the lines it printed.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan []byte // closed at EOF
}

func startChild(t *testing.T, mode, db string, spec any) *child {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+mode, envDB+"="+db, envSpec+"="+string(b))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, lines: make(chan []byte, 1024)}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- append([]byte(nil), sc.Bytes()...)
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // not waited for: still running
			cmd.Process.Kill()
			for range c.lines {
			}
			cmd.Wait()
		}
	})
	return c
}

// next returns the child's next line, false at EOF; it fails the test when
// none comes within d.
func (c *child) next(t *testing.T, d time.Duration) ([]byte, bool) {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		return l, ok
	case <-time.After(d):
		t.Fatalf("child %d printed nothing for %v", c.cmd.Process.Pid, d)
		return nil, false
	}
}

// kill sends SIGKILL and returns the lines the child printed before it
// died; it fails the test unless the child died of the signal.
func (c *child) kill(t *testing.T) [][]byte {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	var rest [][]byte
	for l := range c.lines {
		rest = append(rest, l)
	}
	err := c.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed by SIGKILL", err)
	}
	return rest
}

// TestRunner_Turn_Processes has three child processes, each with its own
// database handle on one file and 32 goroutines, and the parent with 8
// more, ask for the same requests at once. Each request's model runs
// exactly once across all of them, every caller gets the same reply, and
// the log holds one reply per request folded from one attempt's chunks.
func TestRunner_Turn_Processes(t *testing.T) { storetest.Run(t, testRunner_Turn_Processes) }

func testRunner_Turn_Processes(t *testing.T, b storetest.Backend) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	sd := seed(t)
	const procs, workers, parentWorkers, convs = 3, 32, 8, 5
	lease, poll := 2*time.Second, 10*time.Millisecond
	n := processRequests
	db := b.New(t)
	r := storetest.OpenAt(t, db) // creates the schema before the children race

	children := make([]*child, procs)
	for p := range procs {
		children[p] = startChild(t, "turns", db, turnsSpec{Proc: p + 1, Requests: n, Convs: convs, Workers: workers, Seed: sd, Lease: lease, Poll: poll})
	}
	for p, c := range children {
		l, ok := c.next(t, 30*time.Second)
		if !ok || !strings.Contains(string(l), `"ready"`) {
			t.Fatalf("process %d: first line %q, want ready", p+1, l)
		}
	}

	var mu sync.Mutex
	var lines []turnLine
	collect := func(l turnLine) {
		mu.Lock()
		lines = append(lines, l)
		mu.Unlock()
	}
	began := time.Now()
	for _, c := range children {
		io.WriteString(c.stdin, "go\n")
	}
	parentSpec := turnsSpec{Proc: 0, Requests: n, Convs: convs, Workers: parentWorkers, Seed: sd}
	store := &countingStore{Repo: r}
	runner := &dedupe.Runner{Store: store, Owner: "parent", Lease: lease, Wait: true, PollInterval: poll}
	var wg sync.WaitGroup
	wg.Go(func() { askAll(t.Context(), runner, parentSpec, collect) })
	for p, c := range children {
		wg.Go(func() {
			for b := range c.lines {
				var l turnLine
				if err := json.Unmarshal(b, &l); err != nil {
					t.Errorf("process %d: bad line %q", p+1, b)
					continue
				}
				collect(l)
			}
		})
	}
	wg.Wait()
	for p, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("process %d: %v", p+1, err)
		}
	}
	t.Logf("%d processes x %d goroutines + %d in the parent, %d requests: %v", procs, workers, parentWorkers, n, time.Since(began))

	// What the processes say.
	type request struct {
		runs            []turnLine // calls of a RunFunc
		replies         int
		ranIn           map[int]bool // processes where a reply said Ran
		first           *turnLine    // the first reply seen
		replyProcs      map[int]int  // replies per process
		mismatchCounted bool
	}
	reqs := make([]request, n)
	inFlight := store.inFlight.Load()
	for i := range reqs {
		reqs[i].ranIn, reqs[i].replyProcs = map[int]bool{}, map[int]int{}
	}
	for _, l := range lines {
		if l.Req < 0 || l.Req >= n {
			t.Fatalf("line for unknown request: %+v", l)
		}
		q := &reqs[l.Req]
		switch {
		case l.Kind == "stats":
			inFlight += int64(l.Attempt)
		case l.Kind == "run":
			q.runs = append(q.runs, l)
		case l.Kind != "reply":
			t.Errorf("unexpected line %+v", l)
		case l.Err != "":
			t.Errorf("process %d worker %d request %d: %s", l.Proc, l.Worker, l.Req, l.Err)
		default:
			q.replies++
			q.replyProcs[l.Proc]++
			if l.Ran {
				q.ranIn[l.Proc] = true
			}
			if q.first == nil {
				q.first = &l
			} else if (l.ID != q.first.ID || l.Text != q.first.Text || l.Attempt != q.first.Attempt) && !q.mismatchCounted {
				q.mismatchCounted = true
				t.Errorf("request %d: process %d got reply %s %q attempt %d, process %d got %s %q attempt %d", l.Req, l.Proc, l.ID, l.Text, l.Attempt, q.first.Proc, q.first.ID, q.first.Text, q.first.Attempt)
			}
		}
	}
	l := readTurnLog(t, r)
	for i, q := range reqs {
		if len(q.runs) != 1 {
			var who []string
			for _, run := range q.runs {
				who = append(who, fmt.Sprintf("process %d attempt %d", run.Proc, run.Attempt))
			}
			t.Errorf("request %d: the model ran %d times (%s), want exactly once across processes", i, len(q.runs), strings.Join(who, ", "))
			continue
		}
		run := q.runs[0]
		if q.replies != procs*workers+parentWorkers {
			t.Errorf("request %d: %d replies (%v by process), want %d", i, q.replies, q.replyProcs, procs*workers+parentWorkers)
			continue
		}
		if len(q.ranIn) != 1 || !q.ranIn[run.Proc] {
			t.Errorf("request %d: replies said Ran in processes %v; the run was in process %d", i, q.ranIn, run.Proc)
		}
		if q.first.Text != run.Text || q.first.Attempt != run.Attempt || run.Attempt != 1 {
			t.Errorf("request %d: replies say %q attempt %d; the run (process %d) wrote %q as attempt %d; want attempt 1", i, q.first.Text, q.first.Attempt, run.Proc, run.Text, run.Attempt)
		}
		u := urid(i)
		if len(l.users[u]) != 1 {
			t.Errorf("request %d: %d user messages in the log, want 1", i, len(l.users[u]))
		}
		if m, ok := l.oneMessage(t, u); ok && (m.ID != q.first.ID || m.Text() != run.Text || m.ConversationID != parentSpec.conv(i)) {
			t.Errorf("request %d: the log's message %s %q in %s; callers got %s, the run wrote %q", i, m.ID, m.Text(), m.ConversationID, q.first.ID, run.Text)
		}
		if as := l.attempts(u); len(as) != 1 || as[0] != run.Attempt {
			t.Errorf("request %d: chunks of attempts %v in the log, want only attempt %d's", i, as, run.Attempt)
		} else if got := text(l.chunks[u][run.Attempt]); got != run.Text {
			t.Errorf("request %d: the log's chunks say %q, the run wrote %q", i, got, run.Text)
		}
		if len(l.failures[u]) != 0 {
			t.Errorf("request %d: turn_failed in the log", i)
		}
	}
	ranBy := map[int]int{}
	for _, q := range reqs {
		if len(q.runs) > 0 {
			ranBy[q.runs[0].Proc]++
		}
	}
	t.Logf("runs by process (0 is the parent): %v; %d begins found the turn in flight in another process", ranBy, inFlight)
	if inFlight == 0 {
		t.Errorf("no process ever found a turn in flight in another: the processes did not collide")
	}
	if err := r.IntegrityCheck(t.Context()); err != nil {
		t.Error(err)
	}
}

// --- A holder that dies mid-stream ---

// streamSpec tells a "stream" child to answer requests, streaming many
// chunks slowly, until it is killed.
type streamSpec struct {
	// Tag marks the text of the chunks this process writes.
	Tag  string   `json:"tag"`
	Conv string   `json:"conv"`
	Reqs []string `json:"reqs"`
	// Lease, Poll and Wait configure the Runner.
	Lease time.Duration `json:"lease"`
	Poll  time.Duration `json:"poll"`
	Wait  bool          `json:"wait"`
	// Chunks per reply, each written after a pause in [MinGap, MaxGap).
	Chunks int           `json:"chunks"`
	MinGap time.Duration `json:"min_gap"`
	MaxGap time.Duration `json:"max_gap"`
	Seed   uint64        `json:"seed"`
}

// streamLine is what a "stream" process did: began an attempt ("begin"),
// wrote a chunk ("chunk"), finished the turn ("reply") or failed ("error";
// Lost when the error is dedupe.ErrLostTurn).
type streamLine struct {
	Kind    string `json:"kind"`
	Req     string `json:"req"`
	Attempt int    `json:"attempt"`
	Index   int    `json:"index"`
	Text    string `json:"text,omitempty"`
	ID      string `json:"id,omitempty"`
	Err     string `json:"err,omitempty"`
	Lost    bool   `json:"lost,omitempty"`
}

func chunkText(tag string, attempt, index int) string {
	return fmt.Sprintf("[%s a%d #%d]", tag, attempt, index)
}

func streamChild() int {
	var spec streamSpec
	r, err := childSetup(&spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer r.Close()
	var e emitter
	runner := &dedupe.Runner{Store: r, Owner: "child-" + spec.Tag, Lease: spec.Lease, Wait: spec.Wait, PollInterval: spec.Poll}
	var wg sync.WaitGroup
	for k, u := range spec.Reqs {
		rng := rand.New(rand.NewPCG(spec.Seed, uint64(k)))
		run := func(ctx context.Context, s *dedupe.Stream) (compact.Options, error) {
			e.emit(streamLine{Kind: "begin", Req: u, Attempt: s.Attempt()})
			for j := range spec.Chunks {
				gap := spec.MinGap + time.Duration(rng.Int64N(int64(spec.MaxGap-spec.MinGap)))
				select {
				case <-ctx.Done():
					return compact.Options{}, context.Cause(ctx)
				case <-time.After(gap):
				}
				chunk := chunkText(spec.Tag, s.Attempt(), j)
				ev, err := s.Write(ctx, chunk)
				if err != nil {
					return compact.Options{}, err
				}
				e.emit(streamLine{Kind: "chunk", Req: u, Attempt: s.Attempt(), Index: j, Text: chunk, ID: ev.ID})
			}
			return compact.Options{StopReason: "stop"}, nil
		}
		wg.Go(func() {
			rep, err := runner.Turn(context.Background(), userMessage(spec.Conv, u), run)
			if err != nil {
				e.emit(streamLine{Kind: "error", Req: u, Err: err.Error(), Lost: errors.Is(err, dedupe.ErrLostTurn)})
				return
			}
			e.emit(streamLine{Kind: "reply", Req: u, Attempt: rep.Attempt, ID: rep.Message.ID, Text: rep.Message.Text()})
		})
	}
	wg.Wait()
	return 0
}

func parseStreamLine(b []byte) (streamLine, bool) {
	var l streamLine
	if err := json.Unmarshal(b, &l); err != nil {
		return l, false // a line cut in half by a kill acknowledges nothing
	}
	return l, true
}
