package repotest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

var concurrencyCases = []subCase{
	{"Storm", testStorm},
	{"OptimisticConcurrency", testOptimistic},
}

// seed returns the seed for a randomised test, from -repotest.seed or
// picked now, and logs it.
func seed(t testing.TB) uint64 {
	t.Helper()
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -repotest.seed=%d)", s, s)
	return s
}

// Storm sizes. Under the race detector every operation is several times
// slower, so the storm is smaller.
const (
	stormWorkers       = 64
	stormConversations = 16
	stormGroupChance   = 0.05 // a slot starts a group of simultaneous senders of one new key
	stormRetryChance   = 0.20 // a slot retries a key planned earlier
)

func stormOps() int {
	if raceEnabled {
		return 2_000
	}
	return 20_000
}

type stormKey struct {
	conv, rid, text string
}

type stormOp struct {
	key int
	// group holds the simultaneous senders of one new key at a barrier
	// until all of them are there; nil for an op on its own.
	group *sync.WaitGroup
	id    string    // a caller-supplied event id, or ""
	at    time.Time // a caller-supplied created_at, or zero
}

type stormResult struct {
	res repo.Result
	err error
}

// testStorm: many goroutines appending to a few conversations at once,
// with retries of earlier keys and several goroutines sending the same new
// key at the same moment. Every key must be stored exactly once (one
// Appended outcome), every retry answered with that event, no call may
// fail, and each conversation's seqs must be 1..n.
func testStorm(t *testing.T, s *suite) {
	e := s.fresh(t)
	rng := rand.New(rand.NewPCG(seed(t), 0x5eed))
	perWorker := (stormOps() + stormWorkers - 1) / stormWorkers

	// Plan: plan[w][i] is worker w's i-th op. At every index each worker
	// has exactly one op, and a group's members share their index, so a
	// worker waiting at a group's barrier only waits for workers that will
	// reach that index: no deadlock.
	var (
		keys   []stormKey
		plan   = make([][]stormOp, stormWorkers)
		groups int
		base   = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	)
	newKey := func() int {
		k := len(keys)
		keys = append(keys, stormKey{
			conv: fmt.Sprintf("storm-%02d", rng.IntN(stormConversations)),
			rid:  fmt.Sprintf("k%06d", k),
			text: fmt.Sprintf("payload of key %d", k),
		})
		return k
	}
	for range perWorker {
		earlier := len(keys)
		perm := rng.Perm(stormWorkers)
		for p := 0; p < stormWorkers; {
			switch r := rng.Float64(); {
			case r < stormGroupChance && stormWorkers-p >= 2:
				f := min(2+rng.IntN(5), stormWorkers-p)
				g := new(sync.WaitGroup)
				g.Add(f)
				k := newKey()
				for _, w := range perm[p : p+f] {
					plan[w] = append(plan[w], stormOp{key: k, group: g})
				}
				groups++
				p += f
			case r < stormGroupChance+stormRetryChance && earlier > 0:
				plan[perm[p]] = append(plan[perm[p]], stormOp{key: rng.IntN(earlier)})
				p++
			default:
				plan[perm[p]] = append(plan[perm[p]], stormOp{key: newKey()})
				p++
			}
		}
	}
	ops := 0
	for w := range plan {
		for i := range plan[w] {
			op := &plan[w][i]
			ops++
			// Faithful retries may carry their own event id or time.
			if rng.IntN(10) == 0 {
				op.id = events.NewID(base)
			}
			if rng.IntN(10) == 0 {
				op.at = base.Add(time.Duration(rng.Int64N(int64(time.Hour))))
			}
		}
	}
	retries := ops - len(keys)
	t.Logf("storm: %d appends of %d keys (%.1f%% retries, %d groups of simultaneous senders) by %d goroutines over %d conversations",
		ops, len(keys), 100*float64(retries)/float64(ops), groups, stormWorkers, stormConversations)
	if retries*100 < ops*25 || groups == 0 {
		t.Fatalf("storm plan has %d retries of %d ops and %d groups: want about 30%% retries and some groups", retries, ops, groups)
	}

	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Minute)
	defer cancel()
	results := make([][]stormResult, stormWorkers)
	startGate := make(chan struct{})
	var wg sync.WaitGroup
	for w := range stormWorkers {
		results[w] = make([]stormResult, len(plan[w]))
		wg.Go(func() {
			<-startGate
			for i, op := range plan[w] {
				if op.group != nil {
					op.group.Done()
					op.group.Wait()
				}
				k := keys[op.key]
				ev := userMsg(k.conv, k.rid, k.text)
				ev.ID, ev.CreatedAt = op.id, op.at
				res, err := e.r.Append(ctx, ev, repo.AppendOptions{})
				results[w][i] = stormResult{res, err}
			}
		})
	}
	began := time.Now()
	close(startGate)
	wg.Wait()
	elapsed := time.Since(began)
	t.Logf("storm: %v, %.0f appends/s", elapsed.Round(time.Millisecond), float64(ops)/elapsed.Seconds())

	var problems []string
	bad := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	type keyState struct {
		appended, answers int
		ev                events.Event
	}
	states := make([]keyState, len(keys))
	errCount := 0
	for w := range plan {
		for i, op := range plan[w] {
			r := results[w][i]
			k := keys[op.key]
			if r.err != nil {
				errCount++
				bad("worker %d op %d (%s in %s): %v", w, i, k.rid, k.conv, r.err)
				continue
			}
			st := &states[op.key]
			switch r.res.Outcome {
			case repo.Appended:
				st.appended++
			case repo.Duplicate:
			default:
				bad("key %s: outcome %v", k.rid, r.res.Outcome)
			}
			got := r.res.Event
			if got.ConversationID != k.conv || got.RequestID != k.rid || got.Text() != k.text {
				bad("key %s: answered with %s", k.rid, describe(got))
			}
			if st.answers == 0 {
				st.ev = got
			} else if got.ID != st.ev.ID || got.Seq != st.ev.Seq || got.Pos != st.ev.Pos || !got.CreatedAt.Equal(st.ev.CreatedAt) {
				bad("key %s answered with two events: id %s seq %d pos %d and id %s seq %d pos %d",
					k.rid, st.ev.ID, st.ev.Seq, st.ev.Pos, got.ID, got.Seq, got.Pos)
			}
			st.answers++
		}
	}
	if errCount > 0 {
		t.Errorf("storm: %d of %d appends failed", errCount, ops)
	}
	perConv := map[string][]int64{}
	for k, st := range states {
		if st.answers == 0 {
			continue // every op of the key failed: reported above
		}
		if st.appended != 1 {
			bad("key %s: %d appends reported Appended, want exactly 1 (%d answers)", keys[k].rid, st.appended, st.answers)
		}
		perConv[keys[k].conv] = append(perConv[keys[k].conv], st.ev.Seq)
	}
	for conv, got := range perConv {
		slices.Sort(got)
		if !slices.Equal(got, seqRange(1, int64(len(got)))) {
			bad("conversation %s: the keys' seqs are not 1..%d: %v", conv, len(got), got[:min(10, len(got))])
		}
		stored, err := collect(e.r.Events(ctx, conv, repo.Range{}))
		if err != nil {
			bad("Events(%s): %v", conv, err)
			continue
		}
		if len(stored) != len(got) {
			bad("conversation %s holds %d events, want one per key: %d", conv, len(stored), len(got))
		}
		for _, ev := range stored {
			var k int
			if _, err := fmt.Sscanf(ev.RequestID, "k%d", &k); err != nil || k >= len(keys) {
				bad("conversation %s: unexpected event %s", conv, describe(ev))
				continue
			}
			if want := states[k].ev; ev.ID != want.ID || ev.Seq != want.Seq || ev.ConversationID != keys[k].conv {
				bad("key %s stored as id %s seq %d in %s, answered as id %s seq %d", ev.RequestID, ev.ID, ev.Seq, ev.ConversationID, want.ID, want.Seq)
			}
		}
	}
	if len(problems) > 0 {
		t.Errorf("storm:\n\t%s", strings.Join(problems, "\n\t"))
	}
}

// testOptimistic: goroutines appending to one conversation with an
// expected seq, each retrying with a fresh head after a seq conflict,
// all get their events in exactly once, at head+1.
func testOptimistic(t *testing.T, s *suite) {
	e := s.fresh(t)
	workers, per := 8, 15
	if raceEnabled {
		per = 8
	}
	const conv = "occ"
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
	defer cancel()
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		problems  []string
		conflicts int
		stored    = map[string]int64{} // request_id -> seq as returned
	)
	bad := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	startGate := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-startGate
			for j := range per {
				var evs []events.Event
				if j%3 == 2 {
					evs = []events.Event{
						userMsg(conv, fmt.Sprintf("w%d-%d-a", w, j), "batch a"),
						assistantMsg(conv, fmt.Sprintf("w%d-%d-b", w, j), "batch b"),
					}
				} else {
					evs = []events.Event{userMsg(conv, fmt.Sprintf("w%d-%d", w, j), "single")}
				}
				for attempt := 0; ; attempt++ {
					if attempt == 10_000 {
						bad("worker %d item %d: no success after %d attempts", w, j, attempt)
						return
					}
					head, err := e.r.Head(ctx, conv)
					if err != nil {
						bad("worker %d: Head: %v", w, err)
						return
					}
					var res []repo.Result
					if len(evs) == 1 {
						var r repo.Result
						r, err = e.r.Append(ctx, evs[0], expect(head))
						res = []repo.Result{r}
					} else {
						res, err = e.r.AppendBatch(ctx, evs, expect(head))
					}
					if errors.Is(err, repo.ErrSeqConflict) {
						var se *repo.SeqConflictError
						if !errors.As(err, &se) || se.Expected != head || se.Actual == head {
							bad("worker %d: seq conflict %v when expecting %d", w, err, head)
						}
						mu.Lock()
						conflicts++
						mu.Unlock()
						continue
					}
					if err != nil {
						bad("worker %d item %d: %v", w, j, err)
						return
					}
					if len(res) != len(evs) {
						bad("worker %d item %d: %d results for %d events", w, j, len(res), len(evs))
						return
					}
					for i, r := range res {
						if r.Outcome != repo.Appended || r.Event.Seq != head+1+int64(i) {
							bad("worker %d item %d event %d expecting head %d: %v at seq %d, want appended at %d",
								w, j, i, head, r.Outcome, r.Event.Seq, head+1+int64(i))
						}
						mu.Lock()
						stored[evs[i].RequestID] = r.Event.Seq
						mu.Unlock()
					}
					break
				}
			}
		})
	}
	close(startGate)
	wg.Wait()
	t.Logf("optimistic concurrency: %d seq conflicts retried", conflicts)
	for _, p := range problems {
		t.Error(p)
	}
	got := e.events(conv, repo.Range{})
	if len(got) != len(stored) {
		t.Errorf("conversation holds %d events, %d were acknowledged", len(got), len(stored))
	}
	seen := map[string]bool{}
	for i, ev := range got {
		if ev.Seq != int64(i+1) {
			t.Errorf("Events: seq %d at index %d", ev.Seq, i)
		}
		if seen[ev.RequestID] {
			t.Errorf("request %s stored twice", ev.RequestID)
		}
		seen[ev.RequestID] = true
		if seq, ok := stored[ev.RequestID]; !ok || seq != ev.Seq {
			t.Errorf("request %s stored at seq %d, acknowledged at %d (%v)", ev.RequestID, ev.Seq, seq, ok)
		}
		if strings.HasSuffix(ev.RequestID, "-a") && (i+1 >= len(got) || got[i+1].RequestID != strings.TrimSuffix(ev.RequestID, "a")+"b") {
			t.Errorf("batch %s not stored as consecutive events", strings.TrimSuffix(ev.RequestID, "-a"))
		}
	}
}
