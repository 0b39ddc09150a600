package dedupe_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/internal/storetest"
	"github.com/chatlog/chatlog/repo"
)

// ran is what one call of a RunFunc wrote.
type ran struct {
	attempt int
	text    string
}

// TestRunner_Turn_Concurrent has 32 goroutines of one process ask for the
// same user requests at once, half of them in the same order (so they meet
// in the singleflight), half in orders of their own (so they also find
// replies recorded by others). Each request's model run happens exactly
// once, every caller gets the same reply, and the reply is what the run
// wrote.
func TestRunner_Turn_Concurrent(t *testing.T) { storetest.Run(t, testRunner_Turn_Concurrent) }

func testRunner_Turn_Concurrent(t *testing.T, b storetest.Backend) {
	rng := rand.New(rand.NewPCG(seed(t), 1))
	const goroutines, convs = 32, 5
	n := concurrentRequests
	r := openRepo(t, b)
	runner := &dedupe.Runner{Store: r, Owner: "test", Lease: 10 * time.Second}
	conv := func(i int) string { return "c" + strconv.Itoa(i%convs) }
	urid := func(i int) string { return "u" + strconv.Itoa(i) }

	runs := make([]atomic.Int32, n)
	wrote := make([]atomic.Pointer[ran], n)
	run := func(i int) dedupe.RunFunc {
		return func(ctx context.Context, s *dedupe.Stream) (compact.Options, error) {
			call := runs[i].Add(1)
			w := &ran{attempt: s.Attempt()}
			for j := range 1 + i%4 {
				chunk := fmt.Sprintf("<u%d call%d a%d #%d>", i, call, s.Attempt(), j)
				if _, err := s.Write(ctx, chunk); err != nil {
					return compact.Options{}, err
				}
				w.text += chunk
				runtime.Gosched() // let the others pile up on the turn
			}
			wrote[i].Store(w)
			return compact.Options{StopReason: "stop", Model: "test-model"}, nil
		}
	}

	replies := make([][]dedupe.Reply, goroutines)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		order := make([]int, n)
		for i := range order {
			order[i] = i
		}
		if g%2 == 1 {
			rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		replies[g] = make([]dedupe.Reply, n)
		wg.Go(func() {
			<-start
			for _, i := range order {
				rep, err := runner.Turn(t.Context(), userMessage(conv(i), urid(i)), run(i))
				if err != nil {
					t.Errorf("goroutine %d request %d: %v", g, i, err)
					continue
				}
				replies[g][i] = rep
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	l := readTurnLog(t, r)
	joined := 0
	for i := range n {
		if c := runs[i].Load(); c != 1 {
			t.Errorf("request %d: the model ran %d times, want exactly once", i, c)
			continue
		}
		w := wrote[i].Load()
		want := replies[0][i].Message
		if want.ID == "" || want.Type != events.TypeAssistantMessage || want.RequestID != "assistant:"+urid(i) || want.ConversationID != conv(i) {
			t.Errorf("request %d: reply %+v is not the assistant_message of the request", i, want)
		}
		if got := want.Text(); got != w.text {
			t.Errorf("request %d: reply text %q, the run wrote %q", i, got, w.text)
		}
		for g := range goroutines {
			rep := replies[g][i]
			if rep.Message.ID != want.ID || rep.Message.Text() != want.Text() || rep.Attempt != 1 {
				t.Errorf("request %d: goroutine %d got reply %s %q attempt %d; goroutine 0 got %s %q attempt 1", i, g, rep.Message.ID, rep.Message.Text(), rep.Attempt, want.ID, want.Text())
			}
			if rep.Ran {
				joined++
			}
		}
		// The log holds the request once, its reply once, and the run's
		// chunks under attempt 1 only.
		if len(l.users[urid(i)]) != 1 {
			t.Errorf("request %d: %d user messages in the log, want 1", i, len(l.users[urid(i)]))
		}
		if m, ok := l.oneMessage(t, urid(i)); ok && (m.ID != want.ID || m.Text() != w.text) {
			t.Errorf("request %d: the log's message is %s %q, callers got %s %q", i, m.ID, m.Text(), want.ID, want.Text())
		}
		if as := l.attempts(urid(i)); len(as) != 1 || as[0] != 1 {
			t.Errorf("request %d: chunks of attempts %v in the log, want [1]", i, as)
		} else if got := text(l.chunks[urid(i)][1]); got != w.text {
			t.Errorf("request %d: the log's chunks say %q, the run wrote %q", i, got, w.text)
		}
		if len(l.failures[urid(i)]) != 0 {
			t.Errorf("request %d: turn_failed in the log: %v", i, l.failures[urid(i)][0].Extra)
		}
	}
	t.Logf("%d requests x %d goroutines: %d calls shared a run, %d found the reply recorded", n, goroutines, joined, n*goroutines-joined)
}

// TestRunner_Turn_RunError checks how a failed run ends its attempt.
func TestRunner_Turn_RunError(t *testing.T) { storetest.Run(t, testRunner_Turn_RunError) }

func testRunner_Turn_RunError(t *testing.T, b storetest.Backend) {
	// A long lease: a turn that was not released would be in flight for
	// the whole test, and the retries below do not wait.
	const lease = time.Minute

	// failing returns a RunFunc that writes two chunks and then fails
	// with err, counting its calls.
	failing := func(calls *atomic.Int32, err error) dedupe.RunFunc {
		return func(ctx context.Context, s *dedupe.Stream) (compact.Options, error) {
			calls.Add(1)
			for j := range 2 {
				if _, err := s.Write(ctx, fmt.Sprintf("[failing a%d #%d]", s.Attempt(), j)); err != nil {
					return compact.Options{}, err
				}
			}
			return compact.Options{}, err
		}
	}
	succeeding := func(calls *atomic.Int32, attempt *atomic.Int32) dedupe.RunFunc {
		return func(ctx context.Context, s *dedupe.Stream) (compact.Options, error) {
			calls.Add(1)
			attempt.Store(int32(s.Attempt()))
			for j := range 3 {
				if _, err := s.Write(ctx, fmt.Sprintf("[ok a%d #%d]", s.Attempt(), j)); err != nil {
					return compact.Options{}, err
				}
			}
			return compact.Options{StopReason: "stop"}, nil
		}
	}
	// retry runs the request again at once and checks it succeeds as
	// attempt 2 with only its own chunks.
	retry := func(t *testing.T, runner *dedupe.Runner, msg events.Event) dedupe.Reply {
		t.Helper()
		var calls, attempt atomic.Int32
		began := time.Now()
		rep, err := runner.Turn(t.Context(), msg, succeeding(&calls, &attempt))
		if err != nil {
			t.Fatalf("retry after the failure: %v (the failed turn was not released)", err)
		}
		if took := time.Since(began); took > 5*time.Second {
			t.Errorf("retry took %v", took)
		}
		if calls.Load() != 1 || attempt.Load() != 2 || rep.Attempt != 2 || !rep.Ran {
			t.Errorf("retry: run called %d times as attempt %d; reply attempt %d, ran %v; want once, attempt 2, ran", calls.Load(), attempt.Load(), rep.Attempt, rep.Ran)
		}
		if want := "[ok a2 #0][ok a2 #1][ok a2 #2]"; rep.Message.Text() != want {
			t.Errorf("retry: reply %q, want %q", rep.Message.Text(), want)
		}
		// Asking again finds the reply recorded.
		var none atomic.Int32
		again, err := runner.Turn(t.Context(), msg, failing(&none, errors.New("must not run")))
		if err != nil || again.Ran || none.Load() != 0 || again.Message.ID != rep.Message.ID || again.Attempt != 2 {
			t.Errorf("third call: %+v, %v (run called %d times); want the recorded reply of attempt 2", again, err, none.Load())
		}
		return rep
	}

	t.Run("Recorded", func(t *testing.T) {
		r := openRepo(t, b)
		runner := &dedupe.Runner{Store: r, Owner: "test", Lease: lease}
		msg := userMessage("c1", "u-fail")
		errModel := errors.New("model overloaded (529)")
		var calls atomic.Int32
		_, err := runner.Turn(t.Context(), msg, failing(&calls, errModel))
		if !errors.Is(err, errModel) || calls.Load() != 1 {
			t.Fatalf("Turn = %v (run called %d times), want the run's error %v", err, calls.Load(), errModel)
		}
		rep := retry(t, runner, msg)

		l := readTurnLog(t, r)
		fs := l.failures["u-fail"]
		if len(fs) != 1 {
			t.Fatalf("%d turn_failed events, want 1", len(fs))
		}
		f := fs[0]
		if msg, _ := f.ExtraString("error"); msg != errModel.Error() {
			t.Errorf("turn_failed error %q, want %q", msg, errModel.Error())
		}
		if a, _ := f.ExtraInt("attempt"); a != 1 || f.RequestID != "failed:u-fail:1" || f.ConversationID != "c1" {
			t.Errorf("turn_failed is %s in %s with attempt %d, want failed:u-fail:1 in c1 with attempt 1", f.RequestID, f.ConversationID, a)
		}
		if m, ok := l.oneMessage(t, "u-fail"); ok && (m.ID != rep.Message.ID || strings.Contains(m.Text(), "failing")) {
			t.Errorf("the log's message %s %q, want the retry's %s without the failed attempt's chunks", m.ID, m.Text(), rep.Message.ID)
		}
		// The failed attempt's chunks stay in the log, under attempt 1.
		if got, want := text(l.chunks["u-fail"][1]), "[failing a1 #0][failing a1 #1]"; got != want {
			t.Errorf("attempt 1 chunks %q, want %q", got, want)
		}
		if f.Seq >= l.chunks["u-fail"][2][0].Seq {
			t.Errorf("turn_failed (seq %d) is not before attempt 2's first chunk (seq %d)", f.Seq, l.chunks["u-fail"][2][0].Seq)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		r := openRepo(t, b)
		runner := &dedupe.Runner{Store: r, Owner: "test", Lease: lease}
		msg := userMessage("c1", "u-invalid")
		var calls atomic.Int32
		_, err := runner.Turn(t.Context(), msg, failing(&calls, fmt.Errorf("bad: %w", events.ErrInvalid)))
		if !errors.Is(err, events.ErrInvalid) || calls.Load() != 1 {
			t.Fatalf("Turn = %v (run called %d times), want an error matching events.ErrInvalid", err, calls.Load())
		}
		retry(t, runner, msg)
		l := readTurnLog(t, r)
		if fs := l.failures["u-invalid"]; len(fs) != 0 {
			t.Errorf("a run failing with events.ErrInvalid recorded turn_failed: %v", fs[0].Extra)
		}
		if _, ok := l.oneMessage(t, "u-invalid"); !ok {
			t.Fail()
		}
	})
}

// TestRunner_Turn_FirstCallerGone: a run shared by several callers goes on
// when the first caller's context ends; the others get the reply.
func TestRunner_Turn_FirstCallerGone(t *testing.T) { storetest.Run(t, testRunner_Turn_FirstCallerGone) }

func testRunner_Turn_FirstCallerGone(t *testing.T, b storetest.Backend) {
	r := openRepo(t, b)
	runner := &dedupe.Runner{Store: r, Owner: "test", Lease: time.Minute}
	msg := userMessage("c1", "u1")
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	run := func(ctx context.Context, s *dedupe.Stream) (compact.Options, error) {
		calls.Add(1)
		if _, err := s.Write(ctx, "before "); err != nil {
			return compact.Options{}, err
		}
		close(started)
		<-release
		if _, err := s.Write(ctx, "after"); err != nil {
			return compact.Options{}, err
		}
		return compact.Options{StopReason: "stop"}, nil
	}
	firstCtx, cancelFirst := context.WithCancel(t.Context())
	firstErr := make(chan error, 1)
	go func() {
		_, err := runner.Turn(firstCtx, msg, run)
		firstErr <- err
	}()
	<-started
	second := make(chan dedupe.Reply, 1)
	go func() {
		rep, err := runner.Turn(t.Context(), msg, run)
		if err != nil {
			t.Errorf("second caller: %v", err)
		}
		second <- rep
	}()
	time.Sleep(50 * time.Millisecond) // the second caller joins the run
	cancelFirst()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Errorf("first caller: %v, want context.Canceled", err)
	}
	close(release)
	rep := <-second
	if calls.Load() != 1 || rep.Message.Text() != "before after" || !rep.Ran || rep.Attempt != 1 {
		t.Errorf("second caller got %q (attempt %d, ran %v), run called %d times; want \"before after\" from one run", rep.Message.Text(), rep.Attempt, rep.Ran, calls.Load())
	}
}

// TestRunner_Turn_WaitersShareTheFirstDeadline: callers that join a turn
// waiting for another process each wait as long as their own context
// allows; one caller giving up does not end the others' wait. (Once, the
// wait was bounded by the first caller's context.)
func TestRunner_Turn_WaitersShareTheFirstDeadline(t *testing.T) {
	storetest.Run(t, testRunner_Turn_WaitersShareTheFirstDeadline)
}

func testRunner_Turn_WaitersShareTheFirstDeadline(t *testing.T, b storetest.Backend) {
	const lease = 500 * time.Millisecond
	r := openRepo(t, b)
	msg := userMessage("c1", "u1")
	// Another process holds the turn: a lease in the store.
	st, err := r.BeginTurn(t.Context(), repo.BeginTurn{UserMessage: msg, Owner: "elsewhere", Lease: lease})
	if err != nil || st.Status != repo.TurnStarted {
		t.Fatalf("BeginTurn = %+v, %v", st, err)
	}
	runner := &dedupe.Runner{Store: r, Owner: "test", Lease: lease, Wait: true, PollInterval: 10 * time.Millisecond}
	run := func(ctx context.Context, s *dedupe.Stream) (compact.Options, error) {
		if _, err := s.Write(ctx, "taken over"); err != nil {
			return compact.Options{}, err
		}
		return compact.Options{StopReason: "stop"}, nil
	}
	impatient, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	firstErr := make(chan error, 1)
	go func() {
		_, err := runner.Turn(impatient, msg, run)
		firstErr <- err
	}()
	time.Sleep(10 * time.Millisecond) // the first caller is waiting
	rep, err := runner.Turn(t.Context(), msg, run)
	if err := <-firstErr; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("impatient caller: %v, want context.DeadlineExceeded", err)
	}
	if err != nil {
		t.Fatalf("patient caller (no deadline): %v; want the reply after the other holder's lease expired", err)
	}
	if rep.Attempt != 2 || rep.Message.Text() != "taken over" {
		t.Errorf("patient caller: %+v, want attempt 2's reply", rep)
	}
}

// TestRunner_Turn_SweepSparesLiveLease: a sweep of idle streams leaves alone
// a turn whose holder is alive (its lease live, heartbeats going), even when
// its chunks pause for longer than the idle time (a slow tool call, a model
// thinking). (Once, Streams listed running turns by last chunk alone.)
func TestRunner_Turn_SweepSparesLiveLease(t *testing.T) {
	storetest.Run(t, testRunner_Turn_SweepSparesLiveLease)
}

func testRunner_Turn_SweepSparesLiveLease(t *testing.T, b storetest.Backend) {
	r := openRepo(t, b)
	runner := &dedupe.Runner{Store: r, Owner: "test", Lease: 10 * time.Second}
	swept := make(chan struct{})
	done := make(chan error, 1)
	var rep dedupe.Reply
	go func() {
		var err error
		rep, err = runner.Turn(t.Context(), userMessage("c1", "u1"), func(ctx context.Context, s *dedupe.Stream) (compact.Options, error) {
			if _, err := s.Write(ctx, "part, "); err != nil {
				return compact.Options{}, err
			}
			<-swept // the model pauses
			if _, err := s.Write(ctx, "rest"); err != nil {
				return compact.Options{}, err
			}
			return compact.Options{StopReason: "stop"}, nil
		})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	res, err := compact.Sweep(t.Context(), r, 100*time.Millisecond, time.Now())
	close(swept)
	if err != nil || res.Finalised != 0 {
		t.Errorf("Sweep = %+v, %v; want nothing finalised while the holder's lease is live", res, err)
	}
	if err := <-done; err != nil || rep.Message.Text() != "part, rest" {
		t.Errorf("the holder's Turn = %q, %v; want \"part, rest\"", rep.Message.Text(), err)
	}
}

// BenchmarkTurnRetry measures a retry of a turn that was answered: Turn on
// a completed request returns the recorded reply.
func BenchmarkTurnRetry(b *testing.B) {
	r := openRepo(b, storetest.SQLite)
	runner := &dedupe.Runner{Store: r, Owner: "bench"}
	ctx := context.Background()
	msg := userMessage("c1", "u1")
	first, err := runner.Turn(ctx, msg, func(ctx context.Context, s *dedupe.Stream) (compact.Options, error) {
		for _, c := range []string{"Hello", ", ", "world"} {
			if _, err := s.Write(ctx, c); err != nil {
				return compact.Options{}, err
			}
		}
		return compact.Options{StopReason: "stop"}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	mustNotRun := func(context.Context, *dedupe.Stream) (compact.Options, error) {
		return compact.Options{}, errors.New("the model ran for an answered turn")
	}
	n := 0
	for b.Loop() {
		rep, err := runner.Turn(ctx, msg, mustNotRun)
		if err != nil || rep.Ran || rep.Message.ID != first.Message.ID {
			b.Fatalf("retry: %+v, %v", rep, err)
		}
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/op")
}
