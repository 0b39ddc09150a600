package postgres

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// openInternal opens a store in a fresh schema of the test server, or
// skips (this package cannot import internal/storetest: it imports it).
func openInternal(t *testing.T) *Repo {
	t.Helper()
	dsn := os.Getenv("CHATLOG_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("PostgreSQL tests skipped: set CHATLOG_TEST_POSTGRES to a database URL to run them")
	}
	schema := fmt.Sprintf("t_batch_%d", time.Now().UnixNano())
	loc, err := WithSchema(dsn, schema)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(context.Background(), loc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		if err := DropSchema(context.Background(), dsn, schema); err != nil {
			t.Error(err)
		}
	})
	return r
}

// commitTogether runs requests in one group commit, as the writer does
// when they are queued at the same moment.
func commitTogether(t *testing.T, r *Repo, reqs ...*request) {
	t.Helper()
	w := &writer{repo: r, queue: make(chan *request), done: make(chan struct{})}
	defer func() {
		if w.conn != nil {
			w.conn.Release()
		}
	}()
	w.commit(reqs)
}

func appendRequest(t *testing.T, r *Repo, e events.Event) *request {
	t.Helper()
	p := r.prepare(e, false)
	if p.err != nil {
		t.Fatal(p.err)
	}
	return &request{ctx: context.Background(), mode: modeSingle, evs: []prepared{p}}
}

// TestBatch_BeginThenChunk: a turn begun and its first chunk in one
// commit leave the stream recorded with its chunk's time (the turn's row
// is written before the stream's), so a sweep finds it once it idles.
func TestBatch_BeginThenChunk(t *testing.T) {
	ctx := context.Background()
	r := openInternal(t)
	begin, st, err := r.beginTurn(ctx, repo.BeginTurn{Lease: time.Millisecond,
		UserMessage: events.Event{ConversationID: "c", RequestID: "u1", Content: events.NewText("hi")}})
	if err != nil {
		t.Fatal(err)
	}
	chunk := events.Event{ConversationID: "c", Type: events.TypeAssistantDelta, RequestID: repo.ChunkRequestID("u1", 1, 0),
		Content: events.NewText("a"), Extra: map[string]any{"user_request_id": "u1", "attempt": 1, "index": 0}}
	ch := appendRequest(t, r, chunk)
	commitTogether(t, r, begin, ch)
	if begin.err != nil || st.Status != repo.TurnStarted || ch.err != nil {
		t.Fatalf("begin %v %s, chunk %v; want both to succeed", begin.err, st.Status, ch.err)
	}
	time.Sleep(10 * time.Millisecond) // the lease lapses
	streams, err := r.Streams(ctx, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != 1 || streams[0].UserRequestID != "u1" || streams[0].Attempt != 1 {
		t.Errorf("Streams = %+v, want the stream of u1 attempt 1", streams)
	}
}

// TestBatch_TwoBegins: two begins of one turn in one commit: the second
// sees the first holding it.
func TestBatch_TwoBegins(t *testing.T) {
	ctx := context.Background()
	r := openInternal(t)
	var reqs []*request
	var sts []*repo.TurnState
	for range 2 {
		req, st, err := r.beginTurn(ctx, repo.BeginTurn{Lease: time.Minute,
			UserMessage: events.Event{ConversationID: "c", RequestID: "u1", Content: events.NewText("hi")}})
		if err != nil {
			t.Fatal(err)
		}
		reqs, sts = append(reqs, req), append(sts, st)
	}
	commitTogether(t, r, reqs...)
	if reqs[0].err != nil || reqs[1].err != nil {
		t.Fatal(reqs[0].err, reqs[1].err)
	}
	if sts[0].Status != repo.TurnStarted || sts[1].Status != repo.TurnInFlight || sts[1].Attempt != 1 {
		t.Errorf("begins in one commit: %s/%d and %s/%d, want started/1 and in_flight/1", sts[0].Status, sts[0].Attempt, sts[1].Status, sts[1].Attempt)
	}
	if sts[0].UserEvent.ID != sts[1].UserEvent.ID {
		t.Errorf("the two begins stored two user messages")
	}
}
