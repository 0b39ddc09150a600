package compact_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/internal/storetest"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// token is a chunk's text: a few characters, as a model streams them.
func token(i int) string { return fmt.Sprintf(" tok%04d", i) }

// BenchmarkFinish2000 measures finishing a turn of 2,000 chunks: reading
// them, folding and writing the final message in one transaction. The
// turn and its chunks are written outside the timer.
func BenchmarkFinish2000(b *testing.B) {
	const chunks = 2000
	ctx := context.Background()
	r := storetest.SQLite.Open(b).(*sqlite.Repo)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		urid := fmt.Sprintf("u%d", i)
		begin(b, r, "c", urid, 1, time.Minute)
		batch := make([]events.Event, chunks)
		for j := range batch {
			batch[j] = compact.Chunk("c", urid, 1, j, token(j))
		}
		if _, err := r.AppendBatch(ctx, batch, repo.AppendOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := compact.Finish(ctx, r, "c", urid, 1, compact.Options{StopReason: "stop"})
		if err != nil || res.Outcome != repo.Appended {
			b.Fatalf("Finish: %v %v", res.Outcome, err)
		}
		if n, _ := res.Event.ExtraInt("chunks"); n != chunks {
			b.Fatalf("Finish folded %d chunks, want %d", n, chunks)
		}
	}
	b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(time.Millisecond), "ms/op")
}

// BenchmarkChunks256x200 measures streaming: 256 turns at once, each
// writing 200 chunks, every chunk its own Append (group commit batches
// them), at the default synchronous=FULL on a file.
func BenchmarkChunks256x200(b *testing.B) {
	const (
		streams   = 256
		perStream = 200
	)
	ctx := context.Background()
	r := storetest.SQLite.Open(b).(*sqlite.Repo)
	var commits int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for s := range streams {
			begin(b, r, fmt.Sprintf("c%d", s), fmt.Sprintf("u%d", i), 1, time.Minute)
		}
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			fail error
		)
		before := r.Stats()
		b.StartTimer()
		for s := range streams {
			conv := fmt.Sprintf("c%d", s)
			urid := fmt.Sprintf("u%d", i)
			wg.Go(func() {
				for j := range perStream {
					if _, err := r.Append(ctx, compact.Chunk(conv, urid, 1, j, token(j)), repo.AppendOptions{}); err != nil {
						mu.Lock()
						fail = err
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		if fail != nil {
			b.Fatal(fail)
		}
		st := r.Stats()
		commits += st.Commits - before.Commits
	}
	b.ReportMetric(float64(b.N*streams*perStream)/b.Elapsed().Seconds(), "chunks/s")
	b.ReportMetric(float64(b.N*streams*perStream)/float64(commits), "chunks/commit")
}
