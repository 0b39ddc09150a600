package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// openBench opens a fresh file database: WAL and fsync only show on a file.
func openBench(b *testing.B, opts *sqlite.Options) *sqlite.Repo {
	b.Helper()
	r, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

// benchEvent is a user message with a ~200-byte body, like a real chat turn.
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
	r := openBench(b, nil)
	ctx := context.Background()
	batch := make([]events.Event, 1000)
	n := 0
	b.ResetTimer()
	for b.Loop() {
		for i := range batch {
			batch[i] = benchEvent(fmt.Sprintf("c%d", n%16), n)
			n++
		}
		if _, err := r.AppendBatch(ctx, batch, repo.AppendOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendConcurrent measures single-event Appends from many
// goroutines at once (group commit), at the default synchronous=FULL.
func BenchmarkAppendConcurrent(b *testing.B) {
	for _, appenders := range []int{1, 64, 256, 1024} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			r := openBench(b, nil)
			ctx := context.Background()
			var next atomic.Int64
			lat := make([][]time.Duration, appenders)
			b.ResetTimer()
			var wg sync.WaitGroup
			for g := range appenders {
				wg.Add(1)
				go func() {
					defer wg.Done()
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
				}()
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
		})
	}
}

// BenchmarkDuplicateRetry measures a retry of an already stored request.
func BenchmarkDuplicateRetry(b *testing.B) {
	r := openBench(b, nil)
	ctx := context.Background()
	const keys = 10000
	batch := make([]events.Event, keys)
	for i := range batch {
		batch[i] = benchEvent("c1", i)
	}
	if _, err := r.AppendBatch(ctx, batch, repo.AppendOptions{}); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := int(next.Add(1)) % keys
			res, err := r.Append(ctx, batch[n], repo.AppendOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if !res.Duplicate() {
				b.Fatal("not a duplicate")
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "retries/s")
}

// BenchmarkLast50 measures reading the last 50 events of a 100,000-event
// conversation.
func BenchmarkLast50(b *testing.B) {
	r := openBench(b, nil)
	ctx := context.Background()
	batch := make([]events.Event, 1000)
	for k := range 100 {
		for i := range batch {
			batch[i] = benchEvent("long", k*1000+i)
		}
		if _, err := r.AppendBatch(ctx, batch, repo.AppendOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		evs, err := r.Last(ctx, "long", 50)
		if err != nil {
			b.Fatal(err)
		}
		if len(evs) != 50 || evs[49].Seq != 100000 {
			b.Fatalf("got %d events, last seq %d", len(evs), evs[len(evs)-1].Seq)
		}
	}
}

// BenchmarkAppendLarge measures appends of 2-8 KiB messages, where
// storing the payload (and compressing it) costs most: AppendBatch with
// 100-event batches, and single Appends from 64 goroutines.
func BenchmarkAppendLarge(b *testing.B) {
	g := newSynthChat(b, 1)
	texts := make([]string, 512)
	var textBytes int
	for i := range texts {
		texts[i] = g.text(2048 + g.rng.IntN(6*1024+1))
		textBytes += len(texts[i])
	}
	large := func(conv string, n int) events.Event {
		return events.Event{ConversationID: conv, Type: events.TypeAssistantMessage, RequestID: fmt.Sprintf("req-%d", n),
			Model: "gpt-4o", Content: events.NewText(texts[n%len(texts)])}
	}
	mbPerEvent := float64(textBytes) / float64(len(texts)) / 1e6
	b.Run("batch=100", func(b *testing.B) {
		r := openBench(b, nil)
		ctx := context.Background()
		batch := make([]events.Event, 100)
		n := 0
		for b.Loop() {
			for i := range batch {
				batch[i] = large(fmt.Sprintf("c%d", n%16), n)
				n++
			}
			if _, err := r.AppendBatch(ctx, batch, repo.AppendOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(n)*mbPerEvent/b.Elapsed().Seconds(), "MB/s")
	})
	b.Run("appenders=64", func(b *testing.B) {
		r := openBench(b, nil)
		ctx := context.Background()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					n := int(next.Add(1))
					if n > b.N {
						return
					}
					if _, err := r.Append(ctx, large(fmt.Sprintf("c%d", n%64), n), repo.AppendOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(b.N)*mbPerEvent/b.Elapsed().Seconds(), "MB/s")
	})
}
