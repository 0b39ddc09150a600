package logfile_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/logfile"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// benchLog writes a JSONL log of n events over 16 conversations: user and
// assistant messages with ~200-byte bodies, every event keyed.
func benchLog(n int) []byte {
	var b bytes.Buffer
	body := strings.Repeat("lorem ipsum dolor sit amet ", 8)[:200]
	for i := range n {
		conv := fmt.Sprintf("conv-%02d", i%16)
		if i%2 == 0 {
			fmt.Fprintf(&b, `{"conversation_id":%q,"type":"user_message","request_id":"u%d","content":"%s %d"}`+"\n", conv, i, body, i)
		} else {
			fmt.Fprintf(&b, `{"conversation_id":%q,"type":"assistant_message","request_id":"assistant:u%d","content":"%s %d","model":"m","usage":{"input":120,"output":45}}`+"\n", conv, i-1, body, i)
		}
	}
	return b.Bytes()
}

// BenchmarkIngest100k ingests a 100,000-event log into a fresh database
// file per iteration and reports events/s end to end.
func BenchmarkIngest100k(b *testing.B) {
	const n = 100_000
	path := filepath.Join(b.TempDir(), "log.jsonl")
	if err := os.WriteFile(path, benchLog(n), 0o644); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	total := 0
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		r, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), fmt.Sprintf("bench%d.db", i)), nil)
		if err != nil {
			b.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		st, err := logfile.Ingest(ctx, r, f, logfile.IngestOptions{})
		b.StopTimer()
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		if st.Appended != n {
			b.Fatalf("appended %d of %d: %+v", st.Appended, n, st)
		}
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
		total += n
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}

// discardRepo accepts every event without storing it: it isolates the cost
// of reading, decoding and keying a log from the store's.
type discardRepo struct{ repo.Repo }

func (discardRepo) AppendEach(_ context.Context, evs []events.Event, _ repo.AppendOptions) []repo.Item {
	items := make([]repo.Item, len(evs))
	for i, e := range evs {
		items[i] = repo.Item{Result: repo.Result{Event: e, Outcome: repo.Appended}}
	}
	return items
}

// BenchmarkIngest100kNoStore is BenchmarkIngest100k without a store: the
// ceiling that logfile itself puts on ingest throughput.
func BenchmarkIngest100kNoStore(b *testing.B) {
	const n = 100_000
	log := benchLog(n)
	ctx := context.Background()
	b.ReportAllocs()
	total := 0
	for b.Loop() {
		st, err := logfile.Ingest(ctx, discardRepo{}, bytes.NewReader(log), logfile.IngestOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if st.Appended != n {
			b.Fatalf("appended %d of %d", st.Appended, n)
		}
		total += n
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}
