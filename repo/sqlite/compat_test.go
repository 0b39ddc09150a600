package sqlite_test

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

// The database testdata/precompression.db was written by chatlog before
// payloads were compressed (commit 9a81657, migrations 0001-0005):
//
//	chatlog --db precompression.db ingest precompression.jsonl
//	chatlog --db precompression.db export > precompression.export.jsonl
//
// It holds messages above the threshold of every kind (plain, multi-part
// with raw, tool calls, a tool result, streamed chunks) stored as TEXT,
// and a search index built from them.

// copyFixture copies a database file from testdata into a temporary
// directory, so the test never writes to the original.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func exportAll(t *testing.T, r repo.Repo) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := logfile.Export(context.Background(), &buf, r.All(context.Background(), 0)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestCompress_OldDatabase: a database written before compression opens,
// reads back exactly what the old code exported, stays searchable, takes
// compressed events beside its plain ones, and exports and imports byte
// for byte.
func TestCompress_OldDatabase(t *testing.T) {
	ctx := context.Background()
	golden, err := os.ReadFile(filepath.Join("testdata", "precompression.export.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	path := copyFixture(t, "precompression.db")
	r := openFile(t, path)

	if got := exportAll(t, r); !bytes.Equal(got, golden) {
		t.Fatalf("the old rows export differently from what the old code exported:\n%s", firstDiff(got, golden))
	}
	for _, word := range []string{"zanzibarite", "quetzalcoatlite"} {
		if hits, err := r.Search(ctx, repo.SearchQuery{Query: word}); err != nil || len(hits) != 1 {
			t.Errorf("search %s in the old index: %v %+v", word, err, hits)
		}
	}

	// New events, compressed, beside the old plain ones.
	g := newSynthChat(t, 11)
	added := []events.Event{
		{ConversationID: "old-1", Type: events.TypeUserMessage, RequestID: "u5", Content: events.NewText(g.text(2000) + " wombatite")},
		{ConversationID: "old-2", Type: events.TypeAssistantMessage, RequestID: "a6", Model: "m",
			Content: events.NewParts(events.TextPart(g.text(1500)), events.TextPart("numbatite"))},
	}
	for _, e := range added {
		if _, err := r.Append(ctx, e, repo.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	raw := openRaw(t, path)
	var plainOld, packedNew int
	s, _, err := raw.Prepare(`SELECT pos, typeof(content), typeof(parts_text) FROM events ORDER BY pos`)
	if err != nil {
		t.Fatal(err)
	}
	for s.Step() {
		pos, content, parts := s.ColumnInt64(0), s.ColumnText(1), s.ColumnText(2)
		switch {
		case pos <= 13 && content != "blob" && parts != "blob":
			plainOld++
		case pos > 13 && (content == "blob" || parts == "blob"):
			packedNew++
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if plainOld != 13 || packedNew != 2 {
		t.Errorf("%d of 13 old rows left as they were, %d of 2 new rows compressed", plainOld, packedNew)
	}

	check := func(r *sqlite.Repo, when string) {
		t.Helper()
		got := exportAll(t, r)
		if !bytes.HasPrefix(got, golden) {
			t.Errorf("%s: the old rows changed:\n%s", when, firstDiff(got[:min(len(got), len(golden))], golden))
		}
		if n := bytes.Count(got, []byte("\n")); n != 15 {
			t.Errorf("%s: %d events, want 15", when, n)
		}
		for _, word := range []string{"zanzibarite", "quetzalcoatlite", "wombatite", "numbatite"} {
			if hits, err := r.Search(ctx, repo.SearchQuery{Query: word}); err != nil || len(hits) != 1 {
				t.Errorf("%s: search %s: %v %+v", when, word, err, hits)
			}
		}
		if p, err := r.VerifyReadModels(ctx, nil); err != nil || len(p) != 0 {
			t.Errorf("%s: verify: %v %q", when, err, p)
		}
		if err := r.IntegrityCheck(ctx); err != nil {
			t.Errorf("%s: %v", when, err)
		}
	}
	check(r, "old and new rows")
	if err := r.RebuildReadModels(ctx, nil); err != nil {
		t.Fatal(err)
	}
	check(r, "after rebuild")
	r.Close()
	r = openFile(t, path)
	check(r, "reopened")

	// Export, import into a new database, export again: the same bytes.
	exported := exportAll(t, r)
	fresh := openFile(t, filepath.Join(t.TempDir(), "fresh.db"))
	st, err := logfile.Import(ctx, fresh, bytes.NewReader(exported), logfile.IngestOptions{})
	if err != nil || st.Appended != 15 {
		t.Fatalf("import: %+v %v", st, err)
	}
	if again := exportAll(t, fresh); !bytes.Equal(again, exported) {
		t.Fatalf("export after import differs:\n%s", firstDiff(again, exported))
	}
	check(fresh, "imported")
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got %.400s\nwant %.400s", i+1, gl, wl)
		}
	}
	return "(equal)"
}
