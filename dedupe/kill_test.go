package dedupe_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/internal/storetest"
)

// takeover is the parent's turn for one request after its holder stopped:
// a probe without waiting, then a waiting Turn.
type takeover struct {
	conv, urid string
	chunks     int // the takeover's run writes this many
	tag        string

	probeErr error
	probeAt  time.Time
	rep      dedupe.Reply
	err      error
	calls    atomic.Int32
	runAt    time.Time // when the run began
	wrote    ran
}

func (o *takeover) run(ctx context.Context, s *dedupe.Stream) (compact.Options, error) {
	o.calls.Add(1)
	o.runAt = time.Now()
	w := ran{attempt: s.Attempt()}
	for j := range o.chunks {
		c := chunkText(o.tag, s.Attempt(), j)
		if _, err := s.Write(ctx, c); err != nil {
			return compact.Options{}, err
		}
		w.text += c
	}
	o.wrote = w
	return compact.Options{StopReason: "stop"}, nil
}

// do probes (Wait false), then waits for the turn (Wait true). A probe that
// finds the lease expired takes the turn itself.
func (o *takeover) do(ctx context.Context, probe, taker *dedupe.Runner) {
	msg := userMessage(o.conv, o.urid)
	o.probeAt = time.Now()
	rep, err := probe.Turn(ctx, msg, o.run)
	o.probeErr = err
	if err == nil {
		o.rep = rep
		return
	}
	o.rep, o.err = taker.Turn(ctx, msg, o.run)
}

// dead records what killed holders wrote for one request.
type dead struct {
	attempt int                  // the last dead holder's attempt (0: none)
	tags    map[int]string       // tag of each dead attempt
	acked   map[int][]streamLine // acknowledged chunks by attempt
}

// TestRunner_Turn_KillNine kills a child process with SIGKILL at random
// moments while it streams replies, then has the parent ask for the same
// requests: it must take over each turn as the next attempt once the dead
// holder's lease expired, not before, and finish it. In some rounds the
// first takeover is itself done by a child that gets killed too. The final
// message of each request is folded from the last attempt's chunks only;
// the dead attempts' chunks stay in the log as they were acknowledged.
func TestRunner_Turn_KillNine(t *testing.T) { storetest.Run(t, testRunner_Turn_KillNine) }

func testRunner_Turn_KillNine(t *testing.T, b storetest.Backend) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	rng := rand.New(rand.NewPCG(seed(t), 2))
	const lease = 300 * time.Millisecond
	db := b.New(t)
	r := storetest.OpenAt(t, db)
	probe := &dedupe.Runner{Store: r, Owner: "parent-probe", Lease: lease}
	taker := &dedupe.Runner{Store: r, Owner: "parent", Lease: lease, Wait: true, PollInterval: 10 * time.Millisecond}

	probesInFlight, kills, unacked := 0, 0, 0
	var all []*takeover
	deads := map[string]*dead{}
	for round := range killRounds {
		conv := fmt.Sprintf("k%d", round)
		reqs := make([]string, 1+rng.IntN(3))
		for k := range reqs {
			reqs[k] = fmt.Sprintf("r%du%d", round, k)
			deads[reqs[k]] = &dead{tags: map[int]string{}, acked: map[int][]streamLine{}}
		}
		var killedAt time.Time
		for k := range 1 + rng.IntN(3)/2 { // one kill, or two in a third of the rounds
			tag := fmt.Sprintf("K%d", k)
			c := startChild(t, "stream", db, streamSpec{
				Tag: tag, Conv: conv, Reqs: reqs, Lease: lease, Poll: 10 * time.Millisecond, Wait: true,
				Chunks: 100000, MinGap: 5 * time.Millisecond, MaxGap: 20 * time.Millisecond, Seed: rng.Uint64(),
			})
			begun := map[string]int{}
			record := func(b []byte) {
				l, ok := parseStreamLine(b)
				if !ok {
					return
				}
				d := deads[l.Req]
				switch l.Kind {
				case "begin":
					if l.Attempt != d.attempt+1 {
						t.Errorf("round %d child %s: request %s began as attempt %d, want %d", round, tag, l.Req, l.Attempt, d.attempt+1)
					}
					begun[l.Req] = l.Attempt
					d.tags[l.Attempt] = tag
				case "chunk":
					if l.Index != len(d.acked[l.Attempt]) {
						t.Errorf("round %d child %s: request %s attempt %d wrote chunk %d after %d chunks", round, tag, l.Req, l.Attempt, l.Index, len(d.acked[l.Attempt]))
					}
					d.acked[l.Attempt] = append(d.acked[l.Attempt], l)
				default:
					t.Errorf("round %d child %s: %+v before it was killed", round, tag, l)
				}
			}
			// Kill once every request streams, after a random number of
			// further lines and a random pause (so the kill lands in the
			// pause between chunks or in the middle of a write).
			streaming := func() bool {
				for _, u := range reqs {
					if len(deads[u].acked[begun[u]]) == 0 {
						return false
					}
				}
				return true
			}
			extra := rng.IntN(30)
			for !streaming() || extra > 0 {
				if streaming() {
					extra--
				}
				b, ok := c.next(t, 30*time.Second)
				if !ok {
					t.Fatalf("round %d child %s exited before it was killed", round, tag)
				}
				record(b)
			}
			time.Sleep(time.Duration(rng.IntN(15)) * time.Millisecond)
			for _, b := range c.kill(t) {
				record(b)
			}
			killedAt = time.Now()
			kills++
			for _, u := range reqs {
				deads[u].attempt = begun[u]
			}
		}

		var wg sync.WaitGroup
		var outs []*takeover
		for _, u := range reqs {
			o := &takeover{conv: conv, urid: u, chunks: 1 + rng.IntN(4), tag: "P"}
			outs = append(outs, o)
			wg.Go(func() { o.do(t.Context(), probe, taker) })
		}
		wg.Wait()
		for _, o := range outs {
			d := deads[o.urid]
			var ife *dedupe.InFlightError
			switch {
			case o.probeErr == nil:
				t.Logf("round %d request %s: the probe %v after the kill found the lease expired and took over", round, o.urid, o.probeAt.Sub(killedAt))
			case !errors.Is(o.probeErr, dedupe.ErrInFlight) || !errors.As(o.probeErr, &ife):
				t.Errorf("round %d request %s: probe = %v, want ErrInFlight", round, o.urid, o.probeErr)
			default:
				probesInFlight++
				if ife.Attempt != d.attempt {
					t.Errorf("round %d request %s: in flight as attempt %d, the dead holder had attempt %d", round, o.urid, ife.Attempt, d.attempt)
				}
				// The dead holder renewed its lease at most up to the kill.
				if ife.LeaseExpiresAt.Before(o.probeAt) || ife.LeaseExpiresAt.After(killedAt.Add(lease)) {
					t.Errorf("round %d request %s: lease expires at %v: %v after the probe, %v after the kill; want after the probe and within the lease (%v) of the kill",
						round, o.urid, ife.LeaseExpiresAt, ife.LeaseExpiresAt.Sub(o.probeAt), ife.LeaseExpiresAt.Sub(killedAt), lease)
				}
				if o.runAt.Before(ife.LeaseExpiresAt) {
					t.Errorf("round %d request %s: took over at %v, before the lease expired at %v", round, o.urid, o.runAt, ife.LeaseExpiresAt)
				}
			}
			if o.err != nil {
				t.Errorf("round %d request %s: takeover: %v", round, o.urid, o.err)
				continue
			}
			if n := o.calls.Load(); n != 1 || !o.rep.Ran || o.rep.Attempt != d.attempt+1 || o.wrote.attempt != d.attempt+1 {
				t.Errorf("round %d request %s: run called %d times as attempt %d, reply attempt %d (ran %v); want one run as attempt %d", round, o.urid, n, o.wrote.attempt, o.rep.Attempt, o.rep.Ran, d.attempt+1)
			}
			if got := o.rep.Message.Text(); got != o.wrote.text {
				t.Errorf("round %d request %s: reply %q, the takeover wrote %q", round, o.urid, got, o.wrote.text)
			}
			if took := o.runAt.Sub(killedAt); took > lease+5*time.Second {
				t.Errorf("round %d request %s: took over %v after the kill (lease %v)", round, o.urid, took, lease)
			}
			// A retry now finds the reply.
			if again, err := taker.Turn(t.Context(), userMessage(conv, o.urid), o.run); err != nil || again.Ran || again.Message.ID != o.rep.Message.ID || o.calls.Load() != 1 {
				t.Errorf("round %d request %s: retry after the takeover = %+v, %v", round, o.urid, again, err)
			}
		}
		all = append(all, outs...)
	}
	t.Logf("%d rounds, %d kills, %d requests; %d probes found the dead holder's lease live", killRounds, kills, len(all), probesInFlight)
	if probesInFlight == 0 {
		t.Errorf("no probe found a dead holder's lease live: the takeovers were never made to wait")
	}

	l := readTurnLog(t, r)
	for _, o := range all {
		u, d := o.urid, deads[o.urid]
		final := d.attempt + 1
		if len(l.users[u]) != 1 {
			t.Errorf("request %s: %d user messages, want 1", u, len(l.users[u]))
		}
		if len(l.failures[u]) != 0 {
			t.Errorf("request %s: turn_failed in the log", u)
		}
		m, ok := l.oneMessage(t, u)
		if ok {
			if m.ID != o.rep.Message.ID || m.Text() != o.wrote.text {
				t.Errorf("request %s: the log's message %s %q; the takeover got %s and wrote %q", u, m.ID, m.Text(), o.rep.Message.ID, o.wrote.text)
			}
			if n, _ := m.ExtraInt("chunks"); n != int64(o.chunks) {
				t.Errorf("request %s: the message folds %d chunks, the takeover wrote %d", u, n, o.chunks)
			}
			if strings.Contains(m.Text(), "[K") {
				t.Errorf("request %s: the message %q holds a dead attempt's chunk", u, m.Text())
			}
		}
		if got := text(l.chunks[u][final]); got != o.wrote.text {
			t.Errorf("request %s: attempt %d's chunks in the log say %q, the takeover wrote %q", u, final, got, o.wrote.text)
		}
		if as := l.attempts(u); len(as) != final || as[0] != 1 || as[len(as)-1] != final {
			t.Errorf("request %s: chunks of attempts %v in the log, want 1..%d", u, as, final)
		}
		// The dead attempts' chunks stay for replay: every acknowledged
		// one, as acknowledged; at most one more that was written but
		// not acknowledged when the kill came.
		for a := 1; a < final; a++ {
			acked, stored := d.acked[a], l.chunks[u][a]
			if len(stored) < len(acked) || len(stored) > len(acked)+1 {
				t.Errorf("request %s attempt %d: %d chunks in the log, %d acknowledged", u, a, len(stored), len(acked))
				continue
			}
			unacked += len(stored) - len(acked)
			for i, c := range stored {
				if want := chunkText(d.tags[a], a, i); c.Text() != want {
					t.Errorf("request %s attempt %d chunk %d: %q, want %q", u, a, i, c.Text(), want)
				}
				if i < len(acked) && acked[i].ID != c.ID {
					t.Errorf("request %s attempt %d chunk %d: acknowledged as %s, stored as %s", u, a, i, acked[i].ID, c.ID)
				}
				if ok && c.Pos > m.Pos {
					t.Errorf("request %s: dead attempt %d's chunk %d (pos %d) is after the final message (pos %d)", u, a, i, c.Pos, m.Pos)
				}
			}
		}
	}
	t.Logf("%d chunks of killed attempts were stored but not acknowledged (killed between commit and print)", unacked)
	if err := r.IntegrityCheck(t.Context()); err != nil {
		t.Error(err)
	}
}

// TestRunner_Turn_InFlightElsewhere: while another process holds a turn
// under a live lease, Turn without Wait reports it at once; with Wait, the
// wait is bounded by the caller's context. Neither runs the model, and the
// holder streams on unharmed.
func TestRunner_Turn_InFlightElsewhere(t *testing.T) {
	storetest.Run(t, testRunner_Turn_InFlightElsewhere)
}

func testRunner_Turn_InFlightElsewhere(t *testing.T, b storetest.Backend) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	const lease = 2 * time.Second
	db := b.New(t)
	r := storetest.OpenAt(t, db)
	c := startChild(t, "stream", db, streamSpec{
		Tag: "H", Conv: "c1", Reqs: []string{"u1"}, Lease: lease, Poll: 10 * time.Millisecond,
		Chunks: 100000, MinGap: 10 * time.Millisecond, MaxGap: 30 * time.Millisecond, Seed: 1,
	})
	waitChunk := func() streamLine {
		t.Helper()
		for {
			b, ok := c.next(t, 30*time.Second)
			if !ok {
				t.Fatal("the holder exited")
			}
			if l, ok := parseStreamLine(b); ok && l.Kind == "chunk" {
				return l
			} else if ok && l.Kind != "begin" {
				t.Fatalf("holder: %+v", l)
			}
		}
	}
	first := waitChunk()

	var calls atomic.Int32
	run := func(context.Context, *dedupe.Stream) (compact.Options, error) {
		calls.Add(1)
		return compact.Options{}, errors.New("the model ran while another process held the turn")
	}
	msg := userMessage("c1", "u1")

	runner := &dedupe.Runner{Store: r, Owner: "parent", Lease: lease}
	before := time.Now()
	_, err := runner.Turn(t.Context(), msg, run)
	after := time.Now()
	var ife *dedupe.InFlightError
	if !errors.Is(err, dedupe.ErrInFlight) || !errors.As(err, &ife) {
		t.Fatalf("Turn without Wait = %v, want an *InFlightError matching ErrInFlight", err)
	}
	if ife.Attempt != first.Attempt || first.Attempt != 1 {
		t.Errorf("InFlightError.Attempt = %d, the holder runs attempt %d (want 1)", ife.Attempt, first.Attempt)
	}
	// The lease was live when the store looked (after before), and the
	// holder renewed it at most up to then (before after).
	if ife.LeaseExpiresAt.Before(before) || ife.LeaseExpiresAt.After(after.Add(lease)) {
		t.Errorf("InFlightError.LeaseExpiresAt = %v: %v after the call; want within the lease (%v)", ife.LeaseExpiresAt, ife.LeaseExpiresAt.Sub(before), lease)
	}
	if took := after.Sub(before); took > lease/2 {
		t.Errorf("Turn without Wait took %v", took)
	}

	waiter := &dedupe.Runner{Store: r, Owner: "parent-waiting", Lease: lease, Wait: true, PollInterval: 10 * time.Millisecond}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	before = time.Now()
	_, err = waiter.Turn(ctx, msg, run)
	if took := time.Since(before); !errors.Is(err, context.DeadlineExceeded) || took > lease/2 {
		t.Errorf("Turn with Wait and a 200ms deadline = %v after %v, want context.DeadlineExceeded after about 200ms", err, took)
	}
	if calls.Load() != 0 {
		t.Errorf("the model ran %d times while another process held the turn", calls.Load())
	}
	if later := waitChunk(); later.Attempt != 1 {
		t.Errorf("the holder went on as attempt %d", later.Attempt)
	}
	c.kill(t)
	l := readTurnLog(t, r)
	if len(l.messages["u1"]) != 0 || len(l.failures["u1"]) != 0 {
		t.Errorf("the log holds %d messages and %d failures for u1, want none", len(l.messages["u1"]), len(l.failures["u1"]))
	}
	if as := l.attempts("u1"); len(as) != 1 || as[0] != 1 {
		t.Errorf("chunks of attempts %v, want [1]", as)
	}
}

// TestRunner_Turn_PausedHolder stops a holder (SIGSTOP) mid-stream, lets
// the parent take over once the lease expired and finish, then resumes the
// holder: its next write or heartbeat finds the turn lost, its Turn returns
// ErrLostTurn, and nothing it writes after the takeover is stored.
func TestRunner_Turn_PausedHolder(t *testing.T) { storetest.Run(t, testRunner_Turn_PausedHolder) }

func testRunner_Turn_PausedHolder(t *testing.T, b storetest.Backend) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	rng := rand.New(rand.NewPCG(seed(t), 3))
	const lease, rounds = 300 * time.Millisecond, 3
	db := b.New(t)
	r := storetest.OpenAt(t, db)
	taker := &dedupe.Runner{Store: r, Owner: "parent", Lease: lease, Wait: true, PollInterval: 10 * time.Millisecond}
	fenced := 0
	for round := range rounds {
		conv, u := fmt.Sprintf("p%d", round), fmt.Sprintf("p%du", round)
		c := startChild(t, "stream", db, streamSpec{
			Tag: "Z", Conv: conv, Reqs: []string{u}, Lease: lease, Poll: 10 * time.Millisecond, Wait: true,
			Chunks: 100000, MinGap: 5 * time.Millisecond, MaxGap: 20 * time.Millisecond, Seed: rng.Uint64(),
		})
		var acked []streamLine
		for want := 2 + rng.IntN(6); len(acked) < want; {
			b, ok := c.next(t, 30*time.Second)
			if !ok {
				t.Fatalf("round %d: the holder exited", round)
			}
			if l, ok := parseStreamLine(b); ok && l.Kind == "chunk" {
				acked = append(acked, l)
			}
		}
		// Stop right after a chunk was acknowledged: the holder is then
		// pausing, holding no lock (unless a heartbeat is being written).
		if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		o := &takeover{conv: conv, urid: u, chunks: 2, tag: "P"}
		done := make(chan struct{})
		go func() {
			defer close(done)
			o.rep, o.err = taker.Turn(t.Context(), userMessage(conv, u), o.run)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			// Stopped holding the write lock: the takeover waits for it.
			// Kill the holder so the round ends as a kill round.
			t.Logf("round %d: the holder was stopped holding the database lock; killing it", round)
			c.cmd.Process.Signal(syscall.SIGCONT)
			c.kill(t)
			<-done
			continue
		}
		if o.err != nil || o.rep.Attempt != 2 || !o.rep.Ran || o.rep.Message.Text() != o.wrote.text {
			t.Fatalf("round %d: takeover = %+v, %v; want attempt 2 with its own chunks %q", round, o.rep, o.err, o.wrote.text)
		}
		if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		var lost bool
		for {
			b, ok := c.next(t, 30*time.Second)
			if !ok {
				break
			}
			l, _ := parseStreamLine(b)
			switch l.Kind {
			case "chunk":
				acked = append(acked, l) // acknowledged before the stop, printed after it
			case "error":
				lost = l.Lost
				if !lost {
					t.Errorf("round %d: the resumed holder's Turn failed with %s, want ErrLostTurn", round, l.Err)
				}
			default:
				t.Errorf("round %d: the resumed holder printed %+v", round, l)
			}
		}
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("round %d: holder: %v", round, err)
		}
		if !lost {
			t.Errorf("round %d: the resumed holder did not report ErrLostTurn", round)
		}
		fenced++

		l := readTurnLog(t, r)
		m, ok := l.oneMessage(t, u)
		if !ok {
			continue
		}
		if m.ID != o.rep.Message.ID || m.Text() != o.wrote.text {
			t.Errorf("round %d: the log's message %q, the takeover wrote %q", round, m.Text(), o.wrote.text)
		}
		stale, took := l.chunks[u][1], l.chunks[u][2]
		if len(stale) < len(acked) || len(stale) > len(acked)+1 {
			t.Errorf("round %d: %d chunks of the paused attempt in the log, %d acknowledged", round, len(stale), len(acked))
		}
		for _, c := range stale {
			if len(took) > 0 && c.Pos > took[0].Pos {
				t.Errorf("round %d: the paused attempt's chunk %d (pos %d) was stored after the takeover's first chunk (pos %d)", round, index(c), c.Pos, took[0].Pos)
			}
		}
		if len(l.failures[u]) != 0 {
			t.Errorf("round %d: a lost turn recorded turn_failed", round)
		}
	}
	if fenced == 0 {
		t.Errorf("no round stopped a holder outside a write")
	}
}
