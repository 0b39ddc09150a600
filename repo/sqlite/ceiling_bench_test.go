package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/chatlog/chatlog/events"
)

// BenchmarkInsertCeiling measures what this driver does for the event
// table alone: the prepared INSERT with the table's indexes and a
// synchronous=FULL commit, through the writer, with the events prepared
// beforehand and no read models, duplicate checks or head look-ups. It is
// the ceiling BenchmarkAppendBatch (commit=1000) and
// BenchmarkAppendConcurrent at 64 appenders (commit=32, one event per
// conversation) are held against: what they cost above it is the read
// models, deduplication and preparing events.
func BenchmarkInsertCeiling(b *testing.B) {
	for _, c := range []struct{ perCommit, convs int }{{1000, 16}, {32, 64}} {
		b.Run(fmt.Sprintf("commit=%d,conversations=%d", c.perCommit, c.convs), func(b *testing.B) {
			ctx := context.Background()
			r, err := Open(ctx, filepath.Join(b.TempDir(), "ceiling.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			seqs := make([]int64, c.convs)
			batch := make([]prepared, c.perCommit)
			n := 0
			for b.Loop() {
				b.StopTimer()
				for i := range batch {
					conv := n % c.convs
					batch[i] = r.prepare(events.Event{
						ConversationID: fmt.Sprintf("c%d", conv),
						Type:           events.TypeUserMessage,
						RequestID:      fmt.Sprintf("req-%d", n),
						Content:        events.NewText(fmt.Sprintf("message %d: the quick brown fox jumps over the lazy dog while the model streams its answer back to a browser that may retry at any moment; %08d", n, n)),
						Extra:          map[string]any{"client": "bench"},
					}, false)
					if batch[i].err != nil {
						b.Fatal(batch[i].err)
					}
					n++
				}
				b.StartTimer()
				err := r.run(ctx, func(w *writer) error {
					for i := range batch {
						conv := (n - len(batch) + i) % c.convs
						seqs[conv]++
						if _, ok, err := w.insert(&batch[i], seqs[conv]); err != nil || !ok {
							return fmt.Errorf("insert %d: stored %v, %v", i, ok, err)
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
