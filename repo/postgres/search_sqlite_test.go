package postgres_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/ext/fts5"

	"github.com/chatlog/chatlog/repo/postgres"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// The PostgreSQL store splits words and cuts snippets in Go so that search
// answers as the SQLite store's FTS5 index does. These tests hold it to
// FTS5 itself: an in-memory table with the SQLite store's tokenizer.

// fts5Table opens an in-memory FTS5 table tokenized as the SQLite store's
// search index, and a vocabulary of its word instances.
func fts5Table(t *testing.T) *sqlite3.Conn {
	t.Helper()
	db, err := sqlite3.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := fts5.Register(db); err != nil {
		t.Fatal(err)
	}
	err = db.Exec(`CREATE VIRTUAL TABLE f USING fts5(content, tokenize = 'unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE f_words USING fts5vocab(f, 'instance');`)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// fts5Words indexes each text and returns the words FTS5 made of each.
func fts5Words(t *testing.T, db *sqlite3.Conn, texts []string) [][]string {
	t.Helper()
	if err := db.Exec(`DELETE FROM f; BEGIN`); err != nil {
		t.Fatal(err)
	}
	ins, _, err := db.Prepare(`INSERT INTO f (rowid, content) VALUES (?, ?)`)
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range texts {
		ins.BindInt64(1, int64(i))
		ins.BindText(2, text)
		if err := ins.Exec(); err != nil {
			t.Fatal(err)
		}
	}
	ins.Close()
	if err := db.Exec(`COMMIT`); err != nil {
		t.Fatal(err)
	}
	st, _, err := db.Prepare(`SELECT doc, term FROM f_words ORDER BY doc, "offset"`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := make([][]string, len(texts))
	for st.Step() {
		i := st.ColumnInt(0)
		out[i] = append(out[i], st.ColumnText(1))
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWords_SameAsSQLite: every Latin letter and every combining mark of
// the basic block, inside a word and alone between words, splits and folds
// as in the SQLite store. (Outside them the two can differ where SQLite's
// Unicode tables are older than Go's: new letters, other scripts' case.)
func TestWords_SameAsSQLite(t *testing.T) {
	db := fts5Table(t)
	var texts []string
	for _, block := range [][2]rune{{0x80, 0x24F}, {0x300, 0x36F}, {0x1E00, 0x1EFF}} {
		for r := block[0]; r <= block[1]; r++ {
			texts = append(texts, "x"+string(r)+"y", "a "+string(r)+" b", string(r)+"bc", "ab"+string(r))
		}
	}
	texts = append(texts, "Un café CRÈME", "e\u0301cole cafe\u0301", "Ǣsir Ǿre ẛ", "naïve Ångström Việt Łódź Straße")
	want := fts5Words(t, db, texts)
	bad := 0
	for i, text := range texts {
		if got := postgres.Words(text); strings.Join(got, " ") != strings.Join(want[i], " ") && bad < 200 {
			r, _ := utf8.DecodeRuneInString(strings.TrimLeft(text, "axb "))
			t.Errorf("words(%q) (U+%04X) = %q, SQLite's FTS5 makes %q", text, r, got, want[i])
			bad++
		}
	}
}

// fts5Snippet returns FTS5's snippet of text for a query of words, as the
// SQLite store asks for it.
func fts5Snippet(t *testing.T, db *sqlite3.Conn, text string, query []string) string {
	t.Helper()
	if err := db.Exec(`DELETE FROM f`); err != nil {
		t.Fatal(err)
	}
	ins, _, err := db.Prepare(`INSERT INTO f (rowid, content) VALUES (1, ?)`)
	if err != nil {
		t.Fatal(err)
	}
	ins.BindText(1, text)
	err = ins.Exec()
	ins.Close()
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := db.Prepare(`SELECT snippet(f, 0, '[', ']', '…', 16) FROM f WHERE f MATCH ?`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.BindText(1, sqlite.SearchTerms(strings.Join(query, " ")))
	if !st.Step() {
		t.Fatalf("FTS5 finds no %q in %q (%v)", query, text, st.Err())
	}
	return st.ColumnText(0)
}

// TestSnippet_SameAsSQLite: on texts of every length up to a few windows,
// with sentences, repeats and folded words, and queries of one to three
// words (repeats included), the snippet is the SQLite store's.
func TestSnippet_SameAsSQLite(t *testing.T) {
	db := fts5Table(t)
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	vocab := []string{"café", "Cafe", "tea", "the", "milk", "e\u0301cole", "école", "Øre", "naïve", "one", "two", "three", "x"}
	seps := []string{" ", " ", " ", ", ", ". ", ": ", "\n", " (", ") ", "; ", ".", "  "}
	cases := 2000
	if testing.Short() {
		cases = 300
	}
	for range cases {
		var b strings.Builder
		n := 1 + rng.IntN(50)
		if rng.IntN(4) == 0 {
			b.WriteString(seps[rng.IntN(len(seps))])
		}
		for i := range n {
			if i > 0 {
				b.WriteString(seps[rng.IntN(len(seps))])
			}
			b.WriteString(vocab[rng.IntN(len(vocab))])
		}
		if rng.IntN(3) == 0 {
			b.WriteString(seps[rng.IntN(len(seps))])
		}
		text := b.String()
		textWords := postgres.Words(text)
		var query []string
		for range 1 + rng.IntN(3) {
			query = append(query, textWords[rng.IntN(len(textWords))])
		}
		want := fts5Snippet(t, db, text, query)
		if got := postgres.Snippet(text, query); got != want {
			t.Fatalf("snippet(%q, %q)\n= %q\nSQLite's FTS5 cuts %q", text, query, got, want)
		}
	}
}

// TestSnippet_Cases: the cases where a simpler window differs from FTS5's.
func TestSnippet_Cases(t *testing.T) {
	words := func(prefix string, from, to int) string {
		var ws []string
		for i := from; i <= to; i++ {
			ws = append(ws, fmt.Sprintf("%s%d", prefix, i))
		}
		return strings.Join(ws, " ")
	}
	for _, c := range []struct{ text, query, want string }{
		// A match near the start of a long text: the window from the
		// first word beats the one centred on the match.
		{words("t", 0, 9) + " needle " + words("t", 11, 25), "needle",
			"t0 t1 t2 t3 t4 t5 t6 t7 t8 t9 [needle] t11 t12 t13 t14 t15…"},
		// A sentence that starts before the match.
		{words("w", 0, 20) + ": then pin " + words("v", 0, 20), "pin",
			"…then [pin] v0 v1 v2 v3 v4 v5 v6 v7 v8 v9 v10 v11 v12 v13…"},
		// No match in the first window, none near a sentence: centred.
		{words("t", 0, 30) + " needle " + words("u", 0, 30), "needle",
			"…t24 t25 t26 t27 t28 t29 t30 [needle] u0 u1 u2 u3 u4 u5 u6 u7…"},
		{"  Short: café!  ", "cafe", "  Short: [café]!  "},
	} {
		if got := postgres.Snippet(c.text, strings.Fields(postgres.SearchWords(c.query))); got != c.want {
			t.Errorf("snippet(%q, %q)\n= %q\nwant %q", c.text, c.query, got, c.want)
		}
	}
}
