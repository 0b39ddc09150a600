package repo_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/internal/storetest"
	"github.com/chatlog/chatlog/repo"
)

// These tests run copies of the test binary as child processes: the child
// side is TestMain, selected by environment variables. Each runs against
// every backend (internal/storetest).

const (
	envChild = "CHATLOG_REPO_CHILD" // "append": run appendChild
	envDB    = "CHATLOG_REPO_CHILD_DB"
	envSpec  = "CHATLOG_REPO_CHILD_SPEC"
)

var seedFlag = flag.Uint64("repo.seed", 0, "seed for randomised process tests (0: pick one and log it)")

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "append" {
		os.Exit(appendChild())
	}
	os.Exit(m.Run())
}

// childSpec tells a child what to append.
type childSpec struct {
	// Keys are appended in order by Workers goroutines (key i by worker
	// i % Workers); each key's event goes to conversation "c"+(key % Convs)
	// with content derived from the key, so every process sending a key
	// sends the same payload.
	Keys    []int `json:"keys"`
	Workers int   `json:"workers"`
	Convs   int   `json:"convs"`
	// Forever makes the child loop over Keys until it is killed.
	Forever bool `json:"forever"`
}

func keyEvent(key, convs int) events.Event {
	return events.Event{
		ConversationID: "c" + strconv.Itoa(key%convs),
		Type:           events.TypeUserMessage,
		RequestID:      "k" + strconv.Itoa(key),
		Content:        events.NewText("payload of key " + strconv.Itoa(key)),
	}
}

// ack is what a child prints for each acknowledged append.
type ack struct {
	Key  int    `json:"key"`
	Conv string `json:"conv"`
	Seq  int64  `json:"seq"`
	ID   string `json:"id"`
	Dup  bool   `json:"dup"`
	Err  string `json:"err,omitempty"`
}

// appendChild appends the keys of its spec and prints one JSON ack line per
// acknowledged append, flushed at once, so the parent knows exactly what was
// acknowledged when it kills the child.
func appendChild() int {
	var spec childSpec
	if err := json.Unmarshal([]byte(os.Getenv(envSpec)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "child: bad spec:", err)
		return 2
	}
	ctx := context.Background()
	r, err := storetest.OpenLocation(ctx, os.Getenv(envDB))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		return 1
	}
	defer r.Close()
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	failed := false
	for w := range spec.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				for i := w; i < len(spec.Keys); i += spec.Workers {
					key := spec.Keys[i]
					res, err := r.Append(ctx, keyEvent(key, spec.Convs), repo.AppendOptions{})
					a := ack{Key: key}
					if err != nil {
						a.Err = err.Error()
					} else {
						a.Conv, a.Seq, a.ID, a.Dup = res.Event.ConversationID, res.Event.Seq, res.Event.ID, res.Duplicate()
					}
					line, _ := json.Marshal(a)
					mu.Lock()
					out.Write(append(line, '\n'))
					out.Flush()
					if err != nil {
						failed = true
					}
					mu.Unlock()
				}
				if !spec.Forever {
					return
				}
			}
		}()
	}
	wg.Wait()
	if failed {
		return 1
	}
	return 0
}

func childCmd(t *testing.T, db string, spec childSpec) *exec.Cmd {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=append", envDB+"="+db, envSpec+"="+string(b))
	cmd.Stderr = os.Stderr
	return cmd
}

func seed(t *testing.T) uint64 {
	t.Helper()
	s := *seedFlag
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -repo.seed=%d)", s, s)
	return s
}

// TestProcesses_SharedStore runs several processes appending to one store
// (a SQLite file, a PostgreSQL schema) at once, with keys shared between
// them and keys of their own: each key is stored exactly once, every
// process gets the stored event for it, and no process sees a lock error.
func TestProcesses_SharedStore(t *testing.T) { storetest.Run(t, testProcesses_SharedStore) }

func testProcesses_SharedStore(t *testing.T, b storetest.Backend) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	const procs, own, shared, convs = 4, 400, 400, 8
	db := b.New(t)
	// Create the schema first so the children race on appends, not on
	// migrations (those are covered by opening concurrently below too).
	var cmds []*exec.Cmd
	var outs []*bufio.Scanner
	for p := range procs {
		var keys []int
		for k := range shared {
			keys = append(keys, k) // every process sends these
		}
		for k := range own {
			keys = append(keys, 100000*(p+1)+k)
		}
		rng := rand.New(rand.NewPCG(uint64(p), 7))
		rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		cmd := childCmd(t, db, childSpec{Keys: keys, Workers: 16, Convs: convs})
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		outs = append(outs, bufio.NewScanner(stdout))
	}
	for _, cmd := range cmds {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	acks := make([][]ack, procs)
	var wg sync.WaitGroup
	for p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for outs[p].Scan() {
				var a ack
				if err := json.Unmarshal(outs[p].Bytes(), &a); err != nil {
					t.Errorf("process %d: bad ack line %q", p, outs[p].Text())
					continue
				}
				acks[p] = append(acks[p], a)
			}
		}()
	}
	wg.Wait()
	for p, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("process %d: %v", p, err)
		}
	}

	r := storetest.OpenAt(t, db)
	stored := storedKeys(t, r)
	appendedBy := map[int]int{}
	for p, list := range acks {
		if len(list) != shared+own {
			t.Errorf("process %d acknowledged %d appends, want %d", p, len(list), shared+own)
		}
		for _, a := range list {
			if a.Err != "" {
				t.Errorf("process %d key %d: %s", p, a.Key, a.Err)
				continue
			}
			s, ok := stored["k"+strconv.Itoa(a.Key)]
			if !ok {
				t.Errorf("process %d: acknowledged key %d is not stored", p, a.Key)
				continue
			}
			if s.ID != a.ID || s.Seq != a.Seq || s.ConversationID != a.Conv {
				t.Errorf("key %d: process %d was told id %s seq %d, store has id %s seq %d", a.Key, p, a.ID, a.Seq, s.ID, s.Seq)
			}
			if !a.Dup {
				appendedBy[a.Key]++
			}
		}
	}
	if want := shared + procs*own; len(stored) != want {
		t.Errorf("store holds %d keys, want %d", len(stored), want)
	}
	for k := range shared {
		if appendedBy[k] != 1 {
			t.Errorf("shared key %d was reported appended %d times, want exactly 1", k, appendedBy[k])
		}
	}
	checkLog(t, r)
}

// TestCrash_KillNine kills a child mid-ingest with SIGKILL at random moments,
// again and again, then checks every acknowledged append survived exactly
// once and the database is intact.
func TestCrash_KillNine(t *testing.T) { storetest.Run(t, testCrash_KillNine) }

func testCrash_KillNine(t *testing.T, b storetest.Backend) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	rng := rand.New(rand.NewPCG(seed(t), 1))
	const kills, convs = 24, 6
	db := b.New(t)
	acked := map[int]ack{} // key -> first acknowledgement
	nextKey := 0
	for round := range kills {
		// Each round sends fresh keys plus retries of earlier ones, whose
		// first attempt may or may not have been written before a kill.
		var keys []int
		for range 5000 {
			keys = append(keys, nextKey)
			nextKey++
		}
		for range 200 {
			if nextKey > 0 {
				keys = append(keys, rng.IntN(nextKey))
			}
		}
		rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		cmd := childCmd(t, db, childSpec{Keys: keys, Workers: 8, Convs: convs, Forever: true})
		cmd.Stderr = nil // a killed child may print half a line
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of acknowledgements (or a random
		// moment, whichever comes first), so kills land in every phase:
		// at open, mid-batch, during checkpoints.
		killAfter := rng.IntN(3000)
		deadline := time.AfterFunc(time.Duration(20+rng.IntN(600))*time.Millisecond, func() {
			cmd.Process.Signal(syscall.SIGKILL)
		})
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			var a ack
			if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
				continue // the line a kill cut in half acknowledges nothing
			}
			if a.Err != "" {
				t.Errorf("round %d key %d: append failed: %s", round, a.Key, a.Err)
				continue
			}
			if prev, ok := acked[a.Key]; ok {
				if prev.ID != a.ID || prev.Seq != a.Seq {
					t.Errorf("key %d acknowledged as id %s seq %d, earlier as id %s seq %d", a.Key, a.ID, a.Seq, prev.ID, prev.Seq)
				}
			} else {
				acked[a.Key] = a
			}
			if n++; n == killAfter {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		deadline.Stop()
		err = cmd.Wait()
		if status, ok := err.(*exec.ExitError); !ok || status.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v, want killed by SIGKILL", round, err)
		}
	}
	t.Logf("%d kills, %d keys acknowledged", kills, len(acked))

	r := storetest.OpenAt(t, db)
	if err := r.IntegrityCheck(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The read models are written in the transactions of the events they
	// reflect, so no kill can leave them behind or ahead of the log.
	problems, err := r.VerifyReadModels(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("after the kills: %s", p)
	}
	stored := storedKeys(t, r)
	for key, a := range acked {
		s, ok := stored["k"+strconv.Itoa(key)]
		if !ok {
			t.Errorf("acknowledged key %d lost", key)
			continue
		}
		if s.ID != a.ID || s.Seq != a.Seq {
			t.Errorf("key %d: acknowledged id %s seq %d, stored id %s seq %d", key, a.ID, a.Seq, s.ID, s.Seq)
		}
	}
	checkLog(t, r)
}

// storedKeys reads the whole log and maps request_id to its event, failing
// on a key stored twice.
func storedKeys(t *testing.T, r repo.Repo) map[string]events.Event {
	t.Helper()
	out := map[string]events.Event{}
	for e, err := range r.All(t.Context(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := out[e.RequestID]; ok {
			t.Errorf("request_id %s stored twice: seq %d in %s and seq %d in %s", e.RequestID, prev.Seq, prev.ConversationID, e.Seq, e.ConversationID)
		}
		out[e.RequestID] = e
		if want := keyEvent(mustKey(t, e.RequestID), 1).Content.Text; e.Text() != want {
			t.Errorf("request_id %s holds %q, want %q", e.RequestID, e.Text(), want)
		}
	}
	return out
}

func mustKey(t *testing.T, rid string) int {
	t.Helper()
	k, err := strconv.Atoi(strings.TrimPrefix(rid, "k"))
	if err != nil {
		t.Fatalf("unexpected request_id %q", rid)
	}
	return k
}

// checkLog checks the log's invariants: per conversation, seqs run 1..head
// without gaps; pos strictly increases.
func checkLog(t *testing.T, r repo.Repo) {
	t.Helper()
	heads := map[string]int64{}
	var lastPos int64
	for e, err := range r.All(t.Context(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Pos <= lastPos {
			t.Errorf("pos %d after %d", e.Pos, lastPos)
		}
		lastPos = e.Pos
		if e.Seq != heads[e.ConversationID]+1 {
			t.Errorf("conversation %s: seq %d after %d", e.ConversationID, e.Seq, heads[e.ConversationID])
		}
		heads[e.ConversationID] = e.Seq
	}
	for conv, h := range heads {
		got, err := r.Head(t.Context(), conv)
		if err != nil || got != h {
			t.Errorf("Head(%s) = %d, %v; want %d", conv, got, err, h)
		}
	}
}
