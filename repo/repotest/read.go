package repotest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

var readCases = []subCase{
	{"Range", testReadRange},
	{"Unknown", testReadUnknown},
	{"Last", testReadLast},
	{"ByRequestID", testReadByRequestID},
	{"All", testReadAll},
	{"Paging", testReadPaging},
	{"EarlyBreak", testReadEarlyBreak},
	{"AppendWhileIterating", testReadAppendWhileIterating},
}

// fill appends n events to conv (keys conv-1..conv-n) interleaved with
// events of "noise", and returns conv's events as stored.
func (e *env) fill(conv string, n int) []events.Event {
	e.t.Helper()
	var out []events.Event
	for i := 1; i <= n; i++ {
		out = append(out, e.appendNew(userMsg(conv, fmt.Sprintf("%s-%d", conv, i), fmt.Sprintf("message %d", i))))
		if i%3 == 0 {
			e.appendNew(userMsg("noise", "", "noise"))
		}
	}
	return out
}

// at returns the event with seq in stored (seqs 1..n), or a zero event.
func at(stored []events.Event, seq int64) events.Event {
	if seq < 1 || seq > int64(len(stored)) {
		return events.Event{}
	}
	return stored[seq-1]
}

func seqRange(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func testReadRange(t *testing.T, s *suite) {
	e := s.fresh(t)
	stored := e.fill("c", 10)
	for _, tc := range []struct {
		r    repo.Range
		want []int64
	}{
		{repo.Range{}, seqRange(1, 10)},
		{repo.Range{AfterSeq: 3}, seqRange(4, 10)},
		{repo.Range{UntilSeq: 4}, seqRange(1, 4)},
		{repo.Range{Limit: 2}, seqRange(1, 2)},
		{repo.Range{AfterSeq: 3, UntilSeq: 7}, seqRange(4, 7)},
		{repo.Range{AfterSeq: 3, Limit: 2}, seqRange(4, 5)},
		{repo.Range{AfterSeq: 3, UntilSeq: 7, Limit: 10}, seqRange(4, 7)},
		{repo.Range{AfterSeq: 3, UntilSeq: 7, Limit: 3}, seqRange(4, 6)},
		{repo.Range{UntilSeq: 100}, seqRange(1, 10)},
		{repo.Range{Limit: 100}, seqRange(1, 10)},
		{repo.Range{AfterSeq: 9}, []int64{10}},
		{repo.Range{AfterSeq: 10}, nil},
		{repo.Range{AfterSeq: 20}, nil},
		{repo.Range{AfterSeq: 5, UntilSeq: 5}, nil},
		{repo.Range{AfterSeq: 6, UntilSeq: 3}, nil},
		{repo.Range{UntilSeq: 1}, []int64{1}},
	} {
		got := e.events("c", tc.r)
		if !slices.Equal(seqs(got), tc.want) {
			t.Errorf("Events(c, %+v) yields seqs %v, want %v", tc.r, seqs(got), tc.want)
			continue
		}
		for _, ev := range got {
			wantStored(t, fmt.Sprintf("Events(c, %+v)", tc.r), ev, at(stored, ev.Seq))
		}
	}
}

// testReadUnknown: an unknown conversation is empty, not an error.
func testReadUnknown(t *testing.T, s *suite) {
	e := s.fresh(t)
	if got := e.all(0); len(got) != 0 {
		t.Errorf("All(0) on an empty repository yields %d events", len(got))
	}
	e.appendNew(userMsg("known", "r1", "hi"))
	if got := e.events("unknown", repo.Range{}); len(got) != 0 {
		t.Errorf("Events(unknown) yields %d events", len(got))
	}
	e.wantHead("unknown", 0)
	last, err := e.r.Last(e.ctx, "unknown", 5)
	if err != nil || len(last) != 0 {
		t.Errorf("Last(unknown, 5) = %d events, %v; want none, no error", len(last), err)
	}
	if _, err := e.r.ByRequestID(e.ctx, "unknown", "r1"); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("ByRequestID(unknown, r1): %v, want ErrNotFound", err)
	}
}

func testReadLast(t *testing.T, s *suite) {
	e := s.fresh(t)
	stored := e.fill("c", 5)
	for _, tc := range []struct {
		n    int
		want []int64
	}{
		{0, nil},
		{1, []int64{5}},
		{2, []int64{4, 5}},
		{5, seqRange(1, 5)},
		{6, seqRange(1, 5)},
		{1000, seqRange(1, 5)},
	} {
		got, err := e.r.Last(e.ctx, "c", tc.n)
		if err != nil {
			t.Errorf("Last(c, %d): %v", tc.n, err)
			continue
		}
		if !slices.Equal(seqs(got), tc.want) {
			t.Errorf("Last(c, %d) = seqs %v, want %v (chronological)", tc.n, seqs(got), tc.want)
			continue
		}
		for _, ev := range got {
			wantStored(t, fmt.Sprintf("Last(c, %d)", tc.n), ev, at(stored, ev.Seq))
		}
	}
}

func testReadByRequestID(t *testing.T, s *suite) {
	e := s.fresh(t)
	a := e.appendNew(userMsg("a", "r1", "one"))
	b := e.appendNew(assistantMsg("a", "assistant:r1", "two"))
	e.appendNew(userMsg("b", "r2", "elsewhere"))
	for _, want := range []events.Event{a, b} {
		got, err := e.r.ByRequestID(e.ctx, "a", want.RequestID)
		if err != nil {
			t.Errorf("ByRequestID(a, %q): %v", want.RequestID, err)
			continue
		}
		wantStored(t, "ByRequestID", got, want)
	}
	for _, rid := range []string{"r2", "nope", ""} {
		if got, err := e.r.ByRequestID(e.ctx, "a", rid); !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("ByRequestID(a, %q) = %s, %v; want ErrNotFound", rid, describe(got), err)
		}
	}
}

// testReadAll: All is the log in pos order across conversations, and
// resumes after any pos.
func testReadAll(t *testing.T, s *suite) {
	e := s.fresh(t)
	var stored []events.Event
	for i := range 12 {
		conv := []string{"a", "b", "c"}[i%3]
		stored = append(stored, e.appendNew(userMsg(conv, fmt.Sprintf("r%d", i), fmt.Sprintf("message %d", i))))
	}
	got := e.all(0)
	if len(got) != len(stored) {
		t.Fatalf("All(0) yields %d events, want %d", len(got), len(stored))
	}
	for i := range got {
		wantStored(t, fmt.Sprintf("All(0)[%d]", i), got[i], stored[i])
	}
	for _, k := range []int{0, 4, 10, 11} {
		after := stored[k].Pos
		got := e.all(after)
		if !sameIDs(got, stored[k+1:]) {
			t.Errorf("All(%d) (pos of event %d) yields %v, want %v", after, k, ids(got), ids(stored[k+1:]))
		}
	}
	if got := e.all(stored[len(stored)-1].Pos + 1000); len(got) != 0 {
		t.Errorf("All past the end yields %d events", len(got))
	}
}

// testReadPaging: iterations longer than any plausible page size yield
// every event, in order.
func testReadPaging(t *testing.T, s *suite) {
	e := s.fresh(t)
	const batch = 100
	var big, all []events.Event
	for j := range 22 {
		conv := "big"
		if j%3 == 2 {
			conv = "other"
		}
		evs := make([]events.Event, batch)
		for i := range evs {
			evs[i] = userMsg(conv, fmt.Sprintf("b%d-%d", j, i), fmt.Sprintf("message %d of batch %d", i, j))
		}
		res, err := e.r.AppendBatch(e.ctx, evs, repo.AppendOptions{})
		if err != nil {
			t.Fatalf("AppendBatch %d: %v", j, err)
		}
		for _, r := range res {
			all = append(all, r.Event)
			if conv == "big" {
				big = append(big, r.Event)
			}
		}
	}
	if len(big) != 1500 || len(all) != 2200 {
		t.Fatalf("set-up: %d and %d events", len(big), len(all))
	}
	got := e.events("big", repo.Range{})
	if !sameIDs(got, big) {
		t.Errorf("Events(big) yields %d events, want all %d in order", len(got), len(big))
	}
	got = e.events("big", repo.Range{AfterSeq: 999, Limit: 300})
	if !sameIDs(got, big[999:1299]) {
		t.Errorf("Events(big, after 999, limit 300) yields %d events (%v...), want seqs 1000..1299", len(got), seqs(got[:min(3, len(got))]))
	}
	got = e.events("big", repo.Range{AfterSeq: 10, UntilSeq: 1490})
	if !sameIDs(got, big[10:1490]) {
		t.Errorf("Events(big, 10 < seq <= 1490) yields %d events, want 1480", len(got))
	}
	if got = e.all(0); !sameIDs(got, all) {
		t.Errorf("All(0) yields %d events, want all %d in pos order", len(got), len(all))
	}
	if got = e.all(all[1233].Pos); !sameIDs(got, all[1234:]) {
		t.Errorf("All(pos of event 1233) yields %d events, want %d", len(got), len(all)-1234)
	}
	last, err := e.r.Last(e.ctx, "big", 1100)
	if err != nil || !sameIDs(last, big[400:]) {
		t.Errorf("Last(big, 1100) = %d events, %v; want seqs 401..1500", len(last), err)
	}
	f := e.follow(e.ctx, "big", 0, 0)
	for i := range big {
		if ev := f.next(t, int64(i+1)); ev.ID != big[i].ID {
			t.Fatalf("Follow(big, 0): seq %d has id %s, want %s", ev.Seq, ev.ID, big[i].ID)
		}
	}
	f.cancel()
	f.wantEnd(t, nil)
}

// testReadEarlyBreak: leaving iterations early, many times over, releases
// what they hold: the repository still reads and writes afterwards.
func testReadEarlyBreak(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.fill("c", 30)
	for range 100 {
		for ev, err := range e.r.Events(e.ctx, "c", repo.Range{}) {
			if err != nil {
				t.Fatalf("Events: %v", err)
			}
			_ = ev
			break
		}
		for _, err := range e.r.All(e.ctx, 0) {
			if err != nil {
				t.Fatalf("All: %v", err)
			}
			break
		}
		n := 0
		for _, err := range e.r.Events(e.ctx, "c", repo.Range{AfterSeq: 10}) {
			if err != nil {
				t.Fatalf("Events: %v", err)
			}
			if n++; n == 5 {
				break
			}
		}
	}
	for range 20 {
		f := e.follow(e.ctx, "c", 0, 2)
		f.next(t, 1)
		f.next(t, 2)
		f.wantEnd(t, nil)
	}
	// Everything still works, within a deadline so a leak shows as a
	// failure rather than a hang.
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if _, err := e.r.Append(ctx, userMsg("c", "after", "after the breaks"), repo.AppendOptions{}); err != nil {
		t.Fatalf("Append after early breaks: %v", err)
	}
	if h, err := e.r.Head(ctx, "c"); err != nil || h != 31 {
		t.Fatalf("Head after early breaks = %d, %v; want 31", h, err)
	}
	if got, err := collect(e.r.Events(ctx, "c", repo.Range{})); err != nil || len(got) != 31 {
		t.Fatalf("Events after early breaks: %d events, %v; want 31", len(got), err)
	}
}

// testReadAppendWhileIterating: no read transaction or lock is held while
// the caller works, so the loop body may append (to the same
// conversation); the iteration may or may not see those events, but never
// shows a gap.
func testReadAppendWhileIterating(t *testing.T, s *suite) {
	e := s.fresh(t)
	const n = 1200
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = userMsg("c", fmt.Sprintf("r%d", i), "x")
	}
	if _, err := e.r.AppendBatch(e.ctx, evs, repo.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
	defer cancel()
	appended := 0
	var got []int64
	for ev, err := range e.r.Events(ctx, "c", repo.Range{}) {
		if err != nil {
			t.Fatalf("Events: %v", err)
		}
		got = append(got, ev.Seq)
		if len(got)%100 == 1 {
			if _, err := e.r.Append(ctx, userMsg("c", fmt.Sprintf("during-%d", appended), "x"), repo.AppendOptions{}); err != nil {
				t.Fatalf("Append inside an Events loop: %v", err)
			}
			appended++
		}
	}
	if len(got) < n || !slices.Equal(got, seqRange(1, int64(len(got)))) {
		t.Errorf("Events while appending yielded %d events, want >= %d with contiguous seqs from 1", len(got), n)
	}
	got = got[:0]
	var lastPos int64
	for ev, err := range e.r.All(ctx, 0) {
		if err != nil {
			t.Fatalf("All: %v", err)
		}
		if ev.Pos <= lastPos {
			t.Fatalf("All while appending: pos %d after %d", ev.Pos, lastPos)
		}
		lastPos = ev.Pos
		got = append(got, ev.Seq)
		if len(got)%100 == 1 {
			if _, err := e.r.Append(ctx, userMsg("d", fmt.Sprintf("during-%d", len(got)), "x"), repo.AppendOptions{}); err != nil {
				t.Fatalf("Append inside an All loop: %v", err)
			}
		}
	}
	if len(got) < n+appended {
		t.Errorf("All while appending yielded %d events, want >= %d", len(got), n+appended)
	}
}

var followCases = []subCase{
	{"ExistingThenNew", testFollowExistingThenNew},
	{"FromEmpty", testFollowFromEmpty},
	{"Resume", testFollowResume},
	{"Cancel", testFollowCancel},
	{"Break", testFollowBreak},
}

// follower runs a Follow in its own goroutine.
type follower struct {
	ch     chan followed
	done   chan struct{}
	cancel context.CancelFunc
}

type followed struct {
	ev  events.Event
	err error
}

// follow starts Follow(conv, afterSeq); the consumer breaks after
// breakAfter events (0: never). The follow is cancelled and awaited when
// the test ends.
func (e *env) follow(ctx context.Context, conv string, afterSeq int64, breakAfter int) *follower {
	e.t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	f := &follower{ch: make(chan followed, 4096), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(f.done)
		n := 0
		for ev, err := range e.r.Follow(ctx, conv, afterSeq) {
			select {
			case f.ch <- followed{ev, err}:
			case <-time.After(time.Minute):
				return // nobody reads: the test is over
			}
			if n++; n == breakAfter {
				break
			}
		}
	}()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-f.done:
		case <-time.After(wait):
			e.t.Errorf("Follow(%q, %d) still running %v after its context was cancelled", conv, afterSeq, wait)
		}
	})
	return f
}

// next receives the next followed event, which must have seq want.
func (f *follower) next(t testing.TB, want int64) events.Event {
	t.Helper()
	select {
	case got, ok := <-f.ch:
		if !ok {
			t.Fatalf("Follow: channel closed")
		}
		if got.err != nil {
			t.Fatalf("Follow: error %v, want seq %d", got.err, want)
		}
		if got.ev.Seq != want {
			t.Fatalf("Follow: seq %d, want %d", got.ev.Seq, want)
		}
		return got.ev
	case <-f.done:
		select {
		case got := <-f.ch:
			if got.err == nil && got.ev.Seq == want {
				return got.ev
			}
			t.Fatalf("Follow ended with %s / %v, want seq %d", describe(got.ev), got.err, want)
		default:
		}
		t.Fatalf("Follow ended, want seq %d", want)
	case <-time.After(wait):
		t.Fatalf("Follow: no event within %v, want seq %d", wait, want)
	}
	return events.Event{}
}

// wantNothing checks that no event arrives within a short time.
func (f *follower) wantNothing(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case got := <-f.ch:
		t.Errorf("Follow yielded %s / %v, want nothing", describe(got.ev), got.err)
	case <-time.After(d):
	}
}

// wantEnd waits for the follow to end. Events it yields on the way are
// ignored; an error must match allowed (nil: no error allowed).
func (f *follower) wantEnd(t testing.TB, allowed error) {
	t.Helper()
	select {
	case <-f.done:
	case <-time.After(wait):
		t.Fatalf("Follow did not end within %v", wait)
	}
	for {
		select {
		case got := <-f.ch:
			if got.err != nil && (allowed == nil || !errors.Is(got.err, allowed)) {
				t.Errorf("Follow ended with error %v", got.err)
			}
		default:
			return
		}
	}
}

// appendAsync appends evs one by one from another goroutine; the returned
// channel yields the first error (or nil) when done.
func (e *env) appendAsync(evs ...events.Event) <-chan error {
	errc := make(chan error, 1)
	go func() {
		for _, ev := range evs {
			if _, err := e.r.Append(e.ctx, ev, repo.AppendOptions{}); err != nil {
				errc <- fmt.Errorf("append %s: %w", describe(ev), err)
				return
			}
		}
		errc <- nil
	}()
	return errc
}

func waitErr(t testing.TB, errc <-chan error) {
	t.Helper()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("appending goroutine did not finish within a minute")
	}
}

func testFollowExistingThenNew(t *testing.T, s *suite) {
	e := s.fresh(t)
	stored := e.fill("c", 3)
	f := e.follow(e.ctx, "c", 1, 0)
	for _, want := range stored[1:] {
		wantStored(t, "Follow, existing", f.next(t, want.Seq), want)
	}
	errc := e.appendAsync(userMsg("other", "o1", "not followed"), userMsg("c", "r4", "four"), userMsg("c", "r5", "five"), userMsg("other", "o2", "not followed"))
	f.next(t, 4)
	f.next(t, 5)
	waitErr(t, errc)
	f.wantNothing(t, 100*time.Millisecond)
	f.cancel()
	f.wantEnd(t, nil)
}

func testFollowFromEmpty(t *testing.T, s *suite) {
	e := s.fresh(t)
	f := e.follow(e.ctx, "c", 0, 0)
	f.wantNothing(t, 50*time.Millisecond)
	waitErr(t, e.appendAsync(userMsg("c", "r1", "one")))
	st := f.next(t, 1)
	if st.RequestID != "r1" {
		t.Errorf("followed %s, want r1", describe(st))
	}
	// Batches are followed too.
	if _, err := e.r.AppendBatch(e.ctx, []events.Event{userMsg("c", "r2", "two"), userMsg("c", "r3", "three")}, repo.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	f.next(t, 2)
	f.next(t, 3)
	f.cancel()
	f.wantEnd(t, nil)
}

// testFollowResume: a follower that drops and resumes from the last seq it
// saw, while a writer keeps appending, sees every event exactly once.
func testFollowResume(t *testing.T, s *suite) {
	e := s.fresh(t)
	const n, drop = 200, 80
	var evs []events.Event
	for i := 1; i <= n; i++ {
		evs = append(evs, userMsg("c", fmt.Sprintf("r%d", i), fmt.Sprintf("chunk %d", i)))
		if i%10 == 0 {
			evs = append(evs, userMsg("other", fmt.Sprintf("r%d", i), "noise"))
		}
	}
	errc := e.appendAsync(evs...)
	var got []events.Event
	f := e.follow(e.ctx, "c", 0, drop)
	for i := int64(1); i <= drop; i++ {
		got = append(got, f.next(t, i))
	}
	f.wantEnd(t, nil)
	f = e.follow(e.ctx, "c", got[len(got)-1].Seq, 0)
	for i := int64(drop + 1); i <= n; i++ {
		got = append(got, f.next(t, i))
	}
	waitErr(t, errc)
	f.wantNothing(t, 50*time.Millisecond)
	f.cancel()
	f.wantEnd(t, nil)
	stored := e.events("c", repo.Range{})
	if !sameIDs(got, stored) {
		t.Errorf("followed %d events, stored %d: not the same events", len(got), len(stored))
	}
}

// testFollowCancel: cancelling the context ends a waiting Follow without
// an error.
func testFollowCancel(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.fill("c", 2)
	f := e.follow(e.ctx, "c", 0, 0)
	f.next(t, 1)
	f.next(t, 2)
	f.wantNothing(t, 50*time.Millisecond)
	f.cancel()
	f.wantEnd(t, nil)

	// Already cancelled: nothing to wait for.
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	f = e.follow(ctx, "c", 2, 0)
	f.wantEnd(t, nil)
}

// testFollowBreak: a consumer that stops iterating ends the Follow, also
// while it waits for new events; later follows work.
func testFollowBreak(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.fill("c", 3)
	f := e.follow(e.ctx, "c", 0, 2)
	f.next(t, 1)
	f.next(t, 2)
	f.wantEnd(t, nil)

	f = e.follow(e.ctx, "c", 3, 1)
	f.wantNothing(t, 50*time.Millisecond)
	waitErr(t, e.appendAsync(userMsg("c", "r4", "four"), userMsg("c", "r5", "five")))
	f.next(t, 4)
	f.wantEnd(t, nil)

	f = e.follow(e.ctx, "c", 4, 0)
	f.next(t, 5)
	f.cancel()
	f.wantEnd(t, nil)
}
