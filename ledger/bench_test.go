package ledger_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/ledger"
	"github.com/chatlog/chatlog/repo"
)

// BenchmarkPost: credits one after another to one user; each waits for
// its commit (synchronous=FULL), so this is a post's latency.
func BenchmarkPost(b *testing.B) {
	l := ledger.New(openRepo(b, ""), nil)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		if _, err := l.Post(ctx, ledger.Request{User: "u", Kind: ledger.Credit, Amount: 1, RequestID: strconv.Itoa(i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPost_concurrent: 64 goroutines post new entries at once, to
// one user (every post must follow the one before: one entry per commit
// at best) or each to a user of its own (entries share commits). With a
// Ledger each, posts to one user race on the store's expected seq
// instead of queueing in the Ledger.
func BenchmarkPost_concurrent(b *testing.B) {
	for _, tc := range []struct {
		name            string
		oneUser, shared bool
	}{
		{"OneUser", true, true},
		{"OneUserLedgerEach", true, false},
		{"UserEach", false, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := &countingRepo{Repo: openRepo(b, "")}
			shared := ledger.New(r, nil)
			var next atomic.Int64
			b.SetParallelism(32) // 64 goroutines on the 2 cores
			b.RunParallel(func(pb *testing.PB) {
				l := shared
				if !tc.shared {
					l = ledger.New(r, nil)
				}
				n := next.Add(1)
				user := "u"
				if !tc.oneUser {
					user = "u" + strconv.FormatInt(n, 10)
				}
				for i := 0; pb.Next(); i++ {
					key := strconv.FormatInt(n, 10) + ":" + strconv.Itoa(i)
					if _, err := l.Post(context.Background(), ledger.Request{User: user, Kind: ledger.Credit, Amount: 1, RequestID: key}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(r.seqConflicts.Load())/float64(b.N), "lost-races/op")
		})
	}
}

// BenchmarkPost_retry: a retry of a stored entry, answered from the log.
func BenchmarkPost_retry(b *testing.B) {
	l := ledger.New(openRepo(b, ""), nil)
	ctx := context.Background()
	req := ledger.Request{User: "u", Kind: ledger.Credit, Amount: 5, RequestID: "k"}
	if _, err := l.Post(ctx, req); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if res, err := l.Post(ctx, req); err != nil || !res.Duplicate() {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkBalance: the balance of a user with 100,000 entries, read
// from the last one.
func BenchmarkBalance(b *testing.B) {
	r := openRepo(b, "")
	ctx := context.Background()
	const entries = 100_000
	batch := make([]events.Event, 0, 1000)
	for i := 1; i <= entries; i++ {
		batch = append(batch, events.Event{
			ConversationID: ledger.StreamID("u"), Type: events.TypeLedgerEntry, RequestID: strconv.Itoa(i),
			Extra: map[string]any{"kind": "credit", "amount": int64(1), "balance": int64(i)},
		})
		if len(batch) == cap(batch) {
			if _, err := r.AppendBatch(ctx, batch, repo.AppendOptions{}); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	l := ledger.New(r, nil)
	for b.Loop() {
		if n, err := l.Balance(ctx, "u"); err != nil || n != entries {
			b.Fatal(n, err)
		}
	}
}
