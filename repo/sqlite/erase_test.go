package sqlite_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sqlite3 "github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/ext/fts5"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// TestErase_NoTrace: a deleted and a pruned conversation leave nothing
// behind: no row in any table that names them, and none of their text in
// the database or WAL files (secure_delete, then a checkpoint).
func TestErase_NoTrace(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "erase.db")
	r, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const (
		secretDeleted = "quetzalcoatlus-deleted-marker"
		secretPruned  = "hatzegopteryx-pruned-marker"
	)
	old := time.Now().Add(-48 * time.Hour)
	write := func(conv, secret string, at time.Time) {
		t.Helper()
		evs := []events.Event{
			{ConversationID: conv, Type: events.TypeConversationStarted, CreatedAt: at, Extra: map[string]any{"title": secret + " title", "user": "u"}},
			{ConversationID: conv, Type: events.TypeUserMessage, RequestID: "q1", CreatedAt: at, Content: events.NewText("tell me about " + secret)},
			{ConversationID: conv, Type: events.TypeAssistantMessage, CreatedAt: at, Content: events.NewText(secret + " is a pterosaur"),
				Usage: &events.Usage{Input: 3}},
		}
		if _, err := r.AppendBatch(ctx, evs, repo.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	write("doomed", secretDeleted, time.Now())
	mustAppend(t, r, compact.Chunk("doomed", "q2", 0, 0, secretDeleted+" streamed"))
	write("old", secretPruned, old)
	mustAppend(t, r, events.Event{ConversationID: "old", Type: events.TypeConversationEnded, CreatedAt: old})
	write("kept", "ordinary", time.Now())

	if _, err := r.Delete(ctx, "doomed", repo.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	erased, err := r.Prune(ctx, repo.PruneQuery{Before: time.Now().Add(-time.Hour)})
	if err != nil || len(erased) != 1 || erased[0] != "old" {
		t.Fatalf("Prune = %v, %v; want [old]", erased, err)
	}
	if problems, err := r.VerifyReadModels(ctx, nil); err != nil || len(problems) > 0 {
		t.Fatalf("verify after erasure: %v %v", err, problems)
	}
	if err := r.IntegrityCheck(ctx); err != nil {
		t.Fatalf("integrity check after erasure: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	// Every table, read raw: no row names an erased conversation.
	db, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := fts5.Register(db); err != nil {
		t.Fatal(err)
	}
	tables, _, err := db.Prepare(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for tables.Step() {
		names = append(names, tables.ColumnText(0))
	}
	tables.Close()
	for _, name := range names {
		st, _, err := db.Prepare(`SELECT * FROM "` + strings.ReplaceAll(name, `"`, `""`) + `"`)
		if err != nil {
			t.Fatal(err)
		}
		for st.Step() {
			for i := range st.ColumnCount() {
				v := st.ColumnRawBlob(i)
				for _, bad := range []string{"doomed", "\"old\"", secretDeleted, secretPruned} {
					if bytes.Contains(v, []byte(bad)) || string(v) == "old" {
						t.Errorf("table %s still holds %q in column %s: %.80q", name, bad, st.ColumnName(i), v)
					}
				}
			}
		}
		st.Close()
	}
	db.Close()

	// And the files themselves: freed pages were overwritten.
	for _, f := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		// The words alone too: the search index keeps terms, not text.
		for _, secret := range []string{secretDeleted, secretPruned, "quetzalcoatlus", "hatzegopteryx"} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s still holds the text %q", filepath.Base(f), secret)
			}
		}
	}
}
