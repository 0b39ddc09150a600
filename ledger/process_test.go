package ledger_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatlog/chatlog/repo/sqlite"
)

// The process test runs copies of the test binary as child processes: the
// child side is TestMain, selected by an environment variable. A child
// prints one JSON line per post, so the parent learns what every post
// was told.

const (
	envChild = "CHATLOG_LEDGER_CHILD" // "storm": stormChild
	envDB    = "CHATLOG_LEDGER_CHILD_DB"
	envSpec  = "CHATLOG_LEDGER_CHILD_SPEC"
)

func TestMain(m *testing.M) {
	switch mode := os.Getenv(envChild); mode {
	case "":
		os.Exit(m.Run())
	case "storm":
		os.Exit(stormChild())
	default:
		fmt.Fprintf(os.Stderr, "child: unknown mode %q\n", mode)
		os.Exit(2)
	}
}

// childLine is a line a child prints: "ready", an outcome, or "stats"
// with the appends that lost a race.
type childLine struct {
	outcome
	Line         string `json:"line,omitempty"`
	SeqConflicts int64  `json:"seq_conflicts,omitempty"`
}

// stormChild opens the database, says ready, waits for a line on stdin,
// then runs its part of the storm.
func stormChild() int {
	var spec stormSpec
	if err := json.Unmarshal([]byte(os.Getenv(envSpec)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "child: bad spec:", err)
		return 1
	}
	store, err := sqlite.Open(context.Background(), os.Getenv(envDB), &sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer store.Close()
	var mu sync.Mutex
	emit := func(l childLine) {
		b, err := json.Marshal(l)
		if err != nil {
			panic(err)
		}
		mu.Lock()
		defer mu.Unlock()
		os.Stdout.Write(append(b, '\n'))
	}
	emit(childLine{Line: "ready"})
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "child: waiting for the start:", err)
		return 1
	}
	// A bound on a hung store: the parent would wait for the child forever.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := &countingRepo{Repo: store}
	storm(ctx, r, spec, func(o outcome) { emit(childLine{outcome: o}) })
	emit(childLine{Line: "stats", SeqConflicts: r.seqConflicts.Load()})
	return 0
}

// TestLedger_Post_processes runs the storm of TestLedger_Post_concurrent
// across three child processes and the parent, each with its own handle
// on one SQLite file, its own Ledger and 8 goroutines, all posting the
// same keys at once to one user. Only the store's expected-seq check,
// taken in each process's own write transaction, keeps them from
// overdrawing or applying a key twice.
func TestLedger_Post_processes(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	sd := seed(t)
	const procs, workers = 3, 8
	db := filepath.Join(t.TempDir(), "shared.db")
	parent := &countingRepo{Repo: openRepo(t, db)} // creates the schema before the children race

	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		lines chan []byte
	}
	children := make([]*child, procs)
	for p := range children {
		spec, _ := json.Marshal(stormSpec{Proc: p + 1, User: "shared", Keys: processStormKeys, Workers: workers, Seed: sd, Shared: true})
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envChild+"=storm", envDB+"="+db, envSpec+"="+string(spec))
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
		children[p] = c
	}
	for p, c := range children {
		select {
		case l := <-c.lines:
			if !strings.Contains(string(l), `"ready"`) {
				t.Fatalf("process %d: first line %q, want ready", p+1, l)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("process %d did not get ready", p+1)
		}
	}

	var mu sync.Mutex
	var outcomes []outcome
	collect := func(o outcome) {
		mu.Lock()
		outcomes = append(outcomes, o)
		mu.Unlock()
	}
	var conflicts int64
	began := time.Now()
	for _, c := range children {
		io.WriteString(c.stdin, "go\n")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		storm(t.Context(), parent, stormSpec{Proc: 0, User: "shared", Keys: processStormKeys, Workers: workers, Seed: sd, Shared: true}, collect)
	})
	for p, c := range children {
		wg.Go(func() {
			for b := range c.lines {
				var l childLine
				if err := json.Unmarshal(b, &l); err != nil {
					t.Errorf("process %d: bad line %q", p+1, b)
					continue
				}
				if l.Line == "stats" {
					mu.Lock()
					conflicts += l.SeqConflicts
					mu.Unlock()
					continue
				}
				collect(l.outcome)
			}
		})
	}
	wg.Wait()
	for p, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("process %d: %v", p+1, err)
		}
	}
	t.Logf("%d processes x %d goroutines + %d in the parent, %d keys: %v", procs, workers, workers, processStormKeys, time.Since(began))
	if want := (procs + 1) * workers * processStormKeys; len(outcomes) != want {
		t.Fatalf("%d outcomes, want %d", len(outcomes), want)
	}
	checkStorm(t, parent, "shared", processStormKeys, outcomes)
	conflicts += parent.seqConflicts.Load()
	t.Logf("%d appends lost a race to another process and were retried", conflicts)
	if conflicts == 0 {
		t.Error("four processes on one user never lost a race: the storm did not test the guard")
	}
}
