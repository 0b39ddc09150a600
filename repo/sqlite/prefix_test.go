package sqlite_test

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

func openPrefixed(t *testing.T, path, prefix string) *sqlite.Repo {
	t.Helper()
	r, err := sqlite.Open(context.Background(), path, &sqlite.Options{TablePrefix: prefix})
	if err != nil {
		t.Fatalf("Open(%q, prefix %q): %v", path, prefix, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestOpen_TablePrefixInvalid: only a plain identifier is taken, and the
// error names the option.
func TestOpen_TablePrefixInvalid(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"1app", "app-1", "app 1", "a;DROP TABLE events;--", "{p}", "é", "app.", strings.Repeat("a", 33), "sqlite_", "SQLite_app"} {
		r, err := sqlite.Open(t.Context(), filepath.Join(dir, "bad.db"), &sqlite.Options{TablePrefix: p})
		if err == nil {
			r.Close()
			t.Errorf("TablePrefix %q was accepted", p)
			continue
		}
		if !errors.Is(err, sqlite.ErrInvalidOption) || !strings.Contains(err.Error(), "TablePrefix") {
			t.Errorf("TablePrefix %q: %v, want ErrInvalidOption naming TablePrefix", p, err)
		}
	}
	for _, p := range []string{"a", "_", "App1_", strings.Repeat("a", 32)} {
		openPrefixed(t, filepath.Join(dir, "good.db"), p)
	}
}

// TestTablePrefix_Isolation: stores with different prefixes (and one
// without) on one file share nothing: events, heads, read models, search
// and turns are each their own, under the same conversation ids and keys.
func TestTablePrefix_Isolation(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	prefixes := []string{"", "app1_", "app2_"}
	stores := map[string]*sqlite.Repo{}
	g := newSynthChat(t, 13)
	word := map[string]string{"": "aardvark", "app1_": "bison", "app2_": "caracal"}
	for i, p := range prefixes {
		r := openPrefixed(t, path, p)
		stores[p] = r
		// The same conversation and keys in every store; i+1 events, the
		// last one compressed.
		for k := range i + 1 {
			mustAppend(t, r, events.Event{ConversationID: "c", Type: events.TypeUserMessage, RequestID: "u" + string(rune('0'+k)),
				Content: events.NewText(word[p] + " " + g.text(200+k*1000))})
		}
		// The same turn in every store: each begins it as its own.
		st, err := r.BeginTurn(ctx, repo.BeginTurn{UserMessage: events.Event{ConversationID: "t", Type: events.TypeUserMessage,
			RequestID: "turn-1", Content: events.NewText("hello " + word[p])}, Lease: time.Minute})
		if err != nil || st.Status != repo.TurnStarted || st.Attempt != 1 {
			t.Fatalf("store %q: BeginTurn: %+v %v, want attempt 1 started", p, st, err)
		}
		mustAppend(t, r, compact.Chunk("t", "turn-1", 1, 0, "chunk of "+word[p]))
	}
	for i, p := range prefixes {
		r := stores[p]
		var got []string
		for e, err := range r.Events(ctx, "c", repo.Range{}) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, e.Content.Text)
		}
		if len(got) != i+1 || !strings.HasPrefix(got[len(got)-1], word[p]) {
			t.Errorf("store %q reads %d events of c (want %d, its own)", p, len(got), i+1)
		}
		if head, _ := r.Head(ctx, "c"); head != int64(i+1) {
			t.Errorf("store %q: head %d, want %d", p, head, i+1)
		}
		n := 0
		for _, err := range r.All(ctx, 0) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if want := i + 1 + 2; n != want { // its messages, the turn's user message and chunk
			t.Errorf("store %q: All reads %d events, want %d", p, n, want)
		}
		if st, err := r.StorageStats(ctx); err != nil || st.Events != int64(n) || st.Conversations != 2 {
			t.Errorf("store %q: stats count %d events in %d conversations (%v), want %d in 2", p, st.Events, st.Conversations, err, n)
		}
		if s, err := r.Summary(ctx, "c"); err != nil || s.Messages != int64(i+1) {
			t.Errorf("store %q: summary of c: %d messages (%v), want %d", p, s.Messages, err, i+1)
		}
		page, err := r.ListConversations(ctx, repo.ListQuery{})
		if err != nil || len(page.Conversations) != 2 {
			t.Errorf("store %q lists %d conversations (%v), want 2", p, len(page.Conversations), err)
		}
		for _, q := range prefixes {
			hits, err := r.Search(ctx, repo.SearchQuery{Query: word[q]})
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if p == q {
				want = i + 2 // its messages in c and its turn's
			}
			if len(hits) != want {
				t.Errorf("store %q finds %d messages with %q, want %d", p, len(hits), word[q], want)
			}
		}
		streams, err := r.Streams(ctx, time.Now().Add(time.Hour))
		if err != nil || len(streams) != 0 {
			t.Errorf("store %q: %d open streams past their lease (%v); its turn's lease is live", p, len(streams), err)
		}
		if _, err := r.Heartbeat(ctx, "t", "turn-1", 1); err != nil {
			t.Errorf("store %q: heartbeat of its own attempt: %v", p, err)
		}
	}
	// Finishing the turn in one store leaves the others' running.
	if _, err := compact.Finish(ctx, stores["app1_"], "t", "turn-1", 1, compact.Options{StopReason: "stop"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range prefixes {
		st, err := stores[p].BeginTurn(ctx, repo.BeginTurn{UserMessage: events.Event{ConversationID: "t", Type: events.TypeUserMessage,
			RequestID: "turn-1", Content: events.NewText("hello " + word[p])}})
		want := repo.TurnInFlight
		if p == "app1_" {
			want = repo.TurnCompleted
		}
		if err != nil || st.Status != want {
			t.Errorf("store %q: the turn is %s (%v), want %s", p, st.Status, err, want)
		}
	}
	for i, p := range prefixes {
		r := stores[p]
		if err := r.RebuildReadModels(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if problems, err := r.VerifyReadModels(ctx, nil); err != nil || len(problems) != 0 {
			t.Errorf("store %q: verify: %v %q", p, err, problems)
		}
		want := i + 2
		if p == "app1_" {
			want++ // the reply folded from its chunk
		}
		if hits, _ := r.Search(ctx, repo.SearchQuery{Query: word[p]}); len(hits) != want {
			t.Errorf("store %q after rebuild: %d hits for its own word, want %d", p, len(hits), want)
		}
	}

	// Every prefix holds the same schema, and nothing else was made.
	raw := openRaw(t, path)
	defer raw.Close()
	schema := map[string][]string{}
	s, _, err := raw.Prepare(`SELECT type, name, tbl_name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'`)
	if err != nil {
		t.Fatal(err)
	}
	for s.Step() {
		typ, name, table := s.ColumnText(0), s.ColumnText(1), s.ColumnText(2)
		p := ""
		for _, q := range prefixes[1:] {
			if strings.HasPrefix(name, q) {
				p = q
			}
		}
		if !strings.HasPrefix(table, p) {
			t.Errorf("%s %s of prefix %q is on table %s", typ, name, p, table)
		}
		schema[p] = append(schema[p], typ+" "+strings.TrimPrefix(name, p))
	}
	s.Close()
	slices.Sort(schema[""])
	for _, p := range prefixes[1:] {
		slices.Sort(schema[p])
		if !slices.Equal(schema[p], schema[""]) {
			t.Errorf("prefix %q has the schema\n%q\nwant\n%q", p, schema[p], schema[""])
		}
	}
	if len(schema[""]) < 15 {
		t.Errorf("the unprefixed schema has only %q", schema[""])
	}
}

// TestTablePrefix_Reopen: a prefixed store records its migrations in its
// own table and finds its data again at the next Open; a store under
// another prefix on the same file starts empty.
func TestTablePrefix_Reopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	r := openPrefixed(t, path, "chat_")
	mustAppend(t, r, events.Event{ConversationID: "c", Type: events.TypeUserMessage, RequestID: "k", Content: events.NewText("kept")})
	r.Close()

	countRows := func(query string) int64 {
		t.Helper()
		raw := openRaw(t, path)
		defer raw.Close()
		s, _, err := raw.Prepare(query)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if !s.Step() {
			t.Fatal(s.Err())
		}
		return s.ColumnInt64(0)
	}
	migrations := countRows(`SELECT count(*) FROM chat_schema_migrations`)
	if migrations < 6 {
		t.Errorf("chat_schema_migrations records %d migrations", migrations)
	}
	if n := countRows(`SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'chat\_%' ESCAPE '\' AND name NOT LIKE 'sqlite_%'`); n != 0 {
		t.Errorf("%d schema objects without the prefix", n)
	}

	r = openPrefixed(t, path, "chat_")
	if e, err := r.ByRequestID(ctx, "c", "k"); err != nil || e.Content.Text != "kept" {
		t.Errorf("after reopening: %+v %v", e, err)
	}
	if res, err := r.Append(ctx, events.Event{ConversationID: "c", Type: events.TypeUserMessage, RequestID: "k", Content: events.NewText("kept")}, repo.AppendOptions{}); err != nil || !res.Duplicate() {
		t.Errorf("a retry after reopening: %v, duplicate %v", err, res.Duplicate())
	}
	r.Close()
	if n := countRows(`SELECT count(*) FROM chat_schema_migrations`); n != migrations {
		t.Errorf("reopening applied migrations again: %d recorded, then %d", migrations, n)
	}

	other := openPrefixed(t, path, "other_")
	if head, err := other.Head(ctx, "c"); err != nil || head != 0 {
		t.Errorf("another prefix sees head %d (%v), want an empty store", head, err)
	}
}

// TestTablePrefix_EveryQuery: every statement in queries.go prepares on a
// file that holds only a prefixed schema, so none names a table, index
// or view without {p}.
func TestTablePrefix_EveryQuery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	openPrefixed(t, path, "zz_").Close()
	queries := sqlConstants(t, "queries.go")
	if len(queries) < 40 {
		t.Fatalf("found %d queries in queries.go", len(queries))
	}
	raw := openRaw(t, path)
	defer raw.Close()
	for name, q := range queries {
		s, _, err := raw.Prepare(strings.ReplaceAll(q, "{p}", "zz_"))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		s.Close()
	}
}

// sqlConstants evaluates the string constants of a Go file: literals,
// joined with + and naming each other.
func sqlConstants(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	exprs := map[string]ast.Expr{}
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
			for _, spec := range g.Specs {
				v := spec.(*ast.ValueSpec)
				for i, n := range v.Names {
					exprs[n.Name] = v.Values[i]
				}
			}
		}
	}
	var eval func(e ast.Expr) string
	eval = func(e ast.Expr) string {
		switch e := e.(type) {
		case *ast.BasicLit:
			s, err := strconv.Unquote(e.Value)
			if err != nil {
				t.Fatal(err)
			}
			return s
		case *ast.BinaryExpr:
			return eval(e.X) + eval(e.Y)
		case *ast.Ident:
			return eval(exprs[e.Name])
		case *ast.ParenExpr:
			return eval(e.X)
		}
		t.Fatalf("cannot evaluate %T", e)
		return ""
	}
	out := map[string]string{}
	for name, e := range exprs {
		if strings.HasPrefix(name, "q") {
			out[name] = eval(e)
		}
	}
	return out
}

// TestTablePrefix_EraseCompressed: erasing a conversation of compressed
// messages under one prefix takes its words out of that store's search
// index exactly (the index checks clean) and leaves the same conversation
// of the store beside it untouched.
func TestTablePrefix_EraseCompressed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "erase.db")
	g := newSynthChat(t, 23)
	stores := []*sqlite.Repo{openPrefixed(t, path, ""), openPrefixed(t, path, "app_")}
	for _, r := range stores {
		for i := range 3 {
			mustAppend(t, r, events.Event{ConversationID: "doomed", Type: events.TypeUserMessage,
				Content: events.NewText(g.text(1500) + " ornithocheirus")})
			mustAppend(t, r, events.Event{ConversationID: "kept", Type: events.TypeAssistantMessage,
				Content: events.NewParts(events.TextPart(g.text(1000+i*500)), events.TextPart("tapejara"))})
		}
	}
	if _, err := stores[1].Delete(ctx, "doomed", repo.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, r := range stores {
		want := map[string]int{"ornithocheirus": 3, "tapejara": 3}
		if i == 1 {
			want["ornithocheirus"] = 0
		}
		for word, n := range want {
			if hits, err := r.Search(ctx, repo.SearchQuery{Query: word}); err != nil || len(hits) != n {
				t.Errorf("store %d: %d hits for %s (%v), want %d", i, len(hits), word, err, n)
			}
		}
		if problems, err := r.VerifyReadModels(ctx, nil); err != nil || len(problems) != 0 {
			t.Errorf("store %d: verify after erasure: %v %q", i, err, problems)
		}
		if err := r.RebuildReadModels(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if head, _ := stores[0].Head(ctx, "doomed"); head != 3 {
		t.Errorf("the unprefixed store's doomed conversation has head %d, want 3", head)
	}
}
