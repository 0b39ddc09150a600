package sqlite_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// TestRepo_PurgeChunks: retention empties the chunks of finished streams
// only, keeps their rows (no seq holes), never touches final messages, and
// a re-sent purged chunk is still answered as a duplicate.
func TestRepo_PurgeChunks(t *testing.T) {
	ctx := context.Background()
	r, err := sqlite.Open(ctx, t.TempDir()+"/purge.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i, text := range []string{"Hel", "lo"} {
		mustAppend(t, r, compact.Chunk("c", "done", 0, i, text))
		mustAppend(t, r, compact.Chunk("c", "open", 0, i, text))
	}
	final, err := compact.Finish(ctx, r, "c", "done", 0, compact.Options{StopReason: "stop"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.PurgeChunks(ctx, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("purged %d chunks, want 2 (the finished stream's)", n)
	}
	var seqs []int64
	for e, err := range r.Events(ctx, "c", repo.Range{}) {
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, e.Seq)
		urid, _ := e.ExtraString("user_request_id")
		purged, _ := e.ExtraBool("purged")
		switch {
		case e.Type == events.TypeAssistantMessage:
			if e.Text() != "Hello" || purged {
				t.Errorf("final message changed: %q purged=%v", e.Text(), purged)
			}
		case urid == "done":
			if e.Content != nil || !purged {
				t.Errorf("chunk seq %d of the finished stream: content %v purged=%v, want emptied and marked", e.Seq, e.Content, purged)
			}
		case urid == "open":
			if e.Content == nil || purged {
				t.Errorf("chunk seq %d of the open stream was purged", e.Seq)
			}
		}
	}
	if len(seqs) != 5 || seqs[4] != 5 {
		t.Errorf("seqs after purge %v, want 1..5", seqs)
	}
	res, err := r.Append(ctx, compact.Chunk("c", "done", 0, 0, "Hel"), repo.AppendOptions{})
	if err != nil || !res.Duplicate() {
		t.Errorf("re-sent purged chunk: %v, %v; want a duplicate", res.Outcome, err)
	}
	if again, err := compact.Finish(ctx, r, "c", "done", 0, compact.Options{}); err != nil || again.Event.ID != final.Event.ID {
		t.Errorf("finish after purge: %v, %v; want the same message", again.Event.ID, err)
	}
}

func mustAppend(t *testing.T, r repo.Repo, e events.Event) events.Event {
	t.Helper()
	res, err := r.Append(context.Background(), e, repo.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Event
}

// TestRepo_FinishUnknown: finishing a user request that was neither begun
// as a turn nor streamed is ErrNotFound and writes nothing (a mistyped id
// must not leave an empty reply for good).
func TestRepo_FinishUnknown(t *testing.T) {
	ctx := context.Background()
	r, err := sqlite.Open(ctx, ":memory:", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = compact.Finish(ctx, r, "c", "nope", 0, compact.Options{})
	if !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("finish of an unknown request: %v, want ErrNotFound", err)
	}
	if head, _ := r.Head(ctx, "c"); head != 0 {
		t.Errorf("head %d after a refused finish, want 0", head)
	}
}
