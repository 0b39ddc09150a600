package sqlite_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/logfile"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

var storageEvents = flag.Int("storage.events", 100000, "events in BenchmarkStorageSize's synthetic log")

// BenchmarkStorageSize measures what a log costs on disk: the database
// file after Close (WAL checkpointed), and the payload bytes of its
// events (text, body and parts text) as encoded and as stored. Run it
// once per size: -benchtime=1x.
func BenchmarkStorageSize(b *testing.B) {
	b.Run("demo", func(b *testing.B) {
		for b.Loop() {
			path := filepath.Join(b.TempDir(), "demo.db")
			r, err := sqlite.Open(context.Background(), path, nil)
			if err != nil {
				b.Fatal(err)
			}
			f, err := os.Open(filepath.Join("..", "..", "testdata", "demo.jsonl"))
			if err != nil {
				b.Fatal(err)
			}
			_, err = logfile.Ingest(context.Background(), r, f, logfile.IngestOptions{})
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
			reportStorage(b, r, path)
		}
	})
	b.Run("synthetic", func(b *testing.B) {
		for b.Loop() {
			path := filepath.Join(b.TempDir(), "synthetic.db")
			r, err := sqlite.Open(context.Background(), path, nil)
			if err != nil {
				b.Fatal(err)
			}
			g := newSynthChat(b, 1)
			batch := make([]events.Event, 0, 1000)
			for n := range *storageEvents {
				batch = append(batch, g.event(n, 200, 4096))
				if len(batch) == cap(batch) || n == *storageEvents-1 {
					for _, it := range r.AppendEach(context.Background(), batch, repo.AppendOptions{}) {
						if it.Err != nil {
							b.Fatal(it.Err)
						}
					}
					batch = batch[:0]
				}
			}
			reportStorage(b, r, path)
		}
	})
}

// reportStorage closes r and reports its file's size and payload bytes.
func reportStorage(b *testing.B, r *sqlite.Repo, path string) {
	b.Helper()
	ctx := context.Background()
	var n, raw int64
	for e, err := range r.All(ctx, 0) {
		if err != nil {
			b.Fatal(err)
		}
		s, err := e.EncodeStored()
		if err != nil {
			b.Fatal(err)
		}
		n++
		raw += int64(len(s.Text) + len(s.Body) + len(s.PartsText))
	}
	st, err := r.StorageStats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if st.Payload.RawBytes != raw {
		b.Fatalf("StorageStats counts %d payload bytes, the events encode to %d", st.Payload.RawBytes, raw)
	}
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n), "events")
	b.ReportMetric(float64(fi.Size()), "db-bytes")
	b.ReportMetric(float64(fi.Size())/float64(n), "db-bytes/event")
	b.ReportMetric(float64(raw), "payload-bytes")
	b.ReportMetric(float64(st.Payload.StoredBytes), "payload-stored-bytes")
}
