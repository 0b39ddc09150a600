package postgres_test

import (
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/chatlog/chatlog/repo/postgres"
)

// TestWords: the search index's word splitter finds the runs of letters
// and digits, lowercases them and removes the diacritics of Latin letters
// (TestWords_SameAsSQLite holds it to the SQLite store's tokenizer).
func TestWords(t *testing.T) {
	for text, want := range map[string][]string{
		"":              nil,
		"Hello, World!": {"hello", "world"},
		"ÉCOLE Straße ΣΊΣΥΦΟΣ 東京タワー": {"ecole", "straße", "σίσυφοσ", "東京タワー"},
		"a1b2 3c":                         {"a1b2", "3c"},
		"tabs\tand\nlines":                {"tabs", "and", "lines"},
		"don't stop-me now":               {"don", "t", "stop", "me", "now"},
		"\x00nul\x00":                     {"nul"},
		"emoji 🐧 penguins":                {"emoji", "penguins"},
		"Un café CRÈME":                   {"un", "cafe", "creme"},
		"naïve Ångström":                  {"naive", "angstrom"},
		"Việt Nam":                        {"viet", "nam"},
		"Łódź Straße Ærø Ǣsir":            {"łodz", "straße", "ærø", "ǣsir"},
		"e\u0301cole cafe\u0301 \u0301 x": {"ecole", "cafe", "x"},
		"Ελληνικά":                        {"ελληνικά"},
	} {
		if got := postgres.Words(text); !slices.Equal(got, want) {
			t.Errorf("words(%q) = %q, want %q", text, got, want)
		}
	}
}

// FuzzWords: the three splitters (words, the snippet's word spans and the
// index's vector) agree, and a word holds only lowercase letters and
// digits.
func FuzzWords(f *testing.F) {
	f.Add("Hello, World! ÉCOLE 東京 e\u0301cole")
	f.Fuzz(func(t *testing.T, text string) {
		ws := postgres.Words(text)
		var spans []string
		for _, sp := range postgres.WordSpans(text) {
			spans = append(spans, sp)
		}
		if !slices.Equal(ws, spans) {
			t.Fatalf("words(%q) = %q, its spans %q", text, ws, spans)
		}
		distinct := slices.Clone(ws)
		slices.Sort(distinct)
		distinct = slices.Compact(distinct)
		var quoted []string
		for _, w := range distinct {
			quoted = append(quoted, "'"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(w)+"'")
		}
		if v := postgres.SearchVector(text); len(text) < 1<<16 && v != strings.Join(quoted, " ") {
			t.Fatalf("searchVector(%q) = %q, want %q", text, v, strings.Join(quoted, " "))
		}
		for _, w := range ws {
			for _, r := range w {
				if !unicode.IsLetter(r) && !unicode.IsDigit(r) || unicode.IsUpper(r) {
					t.Fatalf("words(%q) holds %q", text, w)
				}
			}
		}
	})
}

// TestSearchVector: a message's vector is its distinct words, sorted as
// the server sorts lexemes (bytewise), each quoted once.
func TestSearchVector(t *testing.T) {
	for text, want := range map[string]string{
		"":                         "",
		"!!!":                      "",
		"The cat saw the CAT":      "'cat' 'saw' 'the'",
		"b a B A":                  "'a' 'b'",
		"café Zürich 東京 2024":      "'2024' 'cafe' 'zurich' '東京'",
		"nul\x00separated\x00text": "'nul' 'separated' 'text'",
	} {
		if got := postgres.SearchVector(text); got != want {
			t.Errorf("searchVector(%q) = %q, want %q", text, got, want)
		}
	}
}

// FuzzSnippet: a snippet is cut from the text as it is (without the marks
// and ellipses it adds, a run of the text's own bytes), holds at most 16
// words, and marks a word exactly when it is one of the query's.
func FuzzSnippet(f *testing.F) {
	f.Add("We met at a small café near the station", "cafe")
	f.Add("  Short: café!  ", "café short")
	f.Add("[x] … y", "x")
	f.Fuzz(func(t *testing.T, text, q string) {
		if strings.ContainsAny(text, "[]…") {
			return // the marks could not be told from the text's own
		}
		query := strings.Fields(postgres.SearchWords(q))
		got := postgres.Snippet(text, query)
		plain := strings.NewReplacer("[", "", "]", "", "…", "").Replace(got)
		if !strings.Contains(text, plain) {
			t.Fatalf("snippet(%q, %q) = %q: not cut from the text", text, query, got)
		}
		if ws := postgres.Words(plain); len(ws) > 16 {
			t.Fatalf("snippet(%q, %q) = %q: %d words", text, query, got, len(ws))
		}
		marks := strings.Split(got, "[")[1:]
		for _, part := range marks {
			marked, _, ok := strings.Cut(part, "]")
			if ws := postgres.Words(marked); !ok || len(ws) != 1 || !slices.Contains(query, ws[0]) {
				t.Fatalf("snippet(%q, %q) = %q: %q marked", text, query, got, marked)
			}
		}
		matches := 0
		for _, w := range postgres.Words(plain) {
			if slices.Contains(query, w) {
				matches++
			}
		}
		if matches != len(marks) {
			t.Fatalf("snippet(%q, %q) = %q: %d marks for %d matching words", text, query, got, len(marks), matches)
		}
	})
}
