package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/internal/storetest"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/postgres"
)

// benchEvent is a user message with a ~200-byte body, like a real chat
// turn (the same as repo/sqlite's benchmarks append).
func benchEvent(conv string, n int) events.Event {
	return events.Event{
		ConversationID: conv,
		Type:           events.TypeUserMessage,
		RequestID:      fmt.Sprintf("req-%d", n),
		Content:        events.NewText(fmt.Sprintf("message %d: the quick brown fox jumps over the lazy dog while the model streams its answer back to a browser that may retry at any moment; %08d", n, n)),
		Extra:          map[string]any{"client": "bench"},
	}
}

// BenchmarkAppendBatch measures AppendBatch with 1,000-event batches.
func BenchmarkAppendBatch(b *testing.B) {
	r := open(b, storetest.Postgres(b).New(b), nil)
	ctx := context.Background()
	n := 0
	for b.Loop() {
		batch := make([]events.Event, 1000)
		for i := range batch {
			batch[i] = benchEvent(fmt.Sprintf("c%d", n%64), n)
			n++
		}
		if _, err := r.AppendBatch(ctx, batch, repo.AppendOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendConcurrent measures single-event Appends from many
// goroutines at once (group commit) over 64 conversations, at the
// server's synchronous_commit (on by default).
func BenchmarkAppendConcurrent(b *testing.B) {
	for _, appenders := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			r := open(b, storetest.Postgres(b).New(b), nil)
			benchAppends(b, r, appenders)
		})
	}
}

func benchAppends(b *testing.B, r *postgres.Repo, appenders int) {
	ctx := context.Background()
	var next atomic.Int64
	lat := make([][]time.Duration, appenders)
	b.ResetTimer()
	var wg sync.WaitGroup
	for g := range appenders {
		wg.Go(func() {
			for {
				n := int(next.Add(1))
				if n > b.N {
					return
				}
				start := time.Now()
				if _, err := r.Append(ctx, benchEvent(fmt.Sprintf("c%d", n%64), n), repo.AppendOptions{}); err != nil {
					b.Error(err)
					return
				}
				lat[g] = append(lat[g], time.Since(start))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(r.Stats().MeanBatch, "events/commit")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

// BenchmarkDuplicateRetry measures a retry of an already stored request.
func BenchmarkDuplicateRetry(b *testing.B) {
	r := open(b, storetest.Postgres(b).New(b), nil)
	ctx := context.Background()
	e := benchEvent("c", 1)
	if _, err := r.Append(ctx, e, repo.AppendOptions{}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		res, err := r.Append(ctx, e, repo.AppendOptions{})
		if err != nil || !res.Duplicate() {
			b.Fatalf("retry: %v %v", res.Outcome, err)
		}
	}
}

// BenchmarkLast50 measures reading the last 50 events of a long
// conversation.
func BenchmarkLast50(b *testing.B) {
	r := open(b, storetest.Postgres(b).New(b), nil)
	ctx := context.Background()
	batch := make([]events.Event, 1000)
	for k := range 10 {
		for i := range batch {
			batch[i] = benchEvent("long", k*1000+i)
		}
		if _, err := r.AppendBatch(ctx, batch, repo.AppendOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		evs, err := r.Last(ctx, "long", 50)
		if err != nil || len(evs) != 50 {
			b.Fatalf("Last: %d events, %v", len(evs), err)
		}
	}
}
