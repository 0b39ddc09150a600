package postgres_test

import (
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/chatlog/chatlog/repo/postgres"
)

// TestWords: the search index's word splitter finds the runs of letters
// and digits, lowercases them and removes the diacritics of Latin letters,
// as strings.FieldsFunc, strings.ToLower and baseLatin do.
func TestWords(t *testing.T) {
	for _, text := range []string{"", "Hello, World!", "ÉCOLE Straße ΣΊΣΥΦΟΣ 東京タワー", "a1b2 3c", "tabs\tand\nlines", "don't stop-me now",
		"\x00nul\x00", "emoji 🐧 penguins", "İstanbul", strings.Repeat("x ", 50), "Việt Łódź Ærø ǅemal ḱṓṇ"} {
		if got, want := postgres.Words(text), wantWords(text); !slices.Equal(got, want) {
			t.Errorf("words(%q) = %q, want %q", text, got, want)
		}
	}
	for text, want := range map[string][]string{
		"Un café CRÈME":  {"un", "cafe", "creme"},
		"naïve Ångström": {"naive", "angstrom"},
		"Việt Nam":       {"viet", "nam"},
		"Łódź Straße":    {"łodz", "straße"},
		"Ελληνικά":       {"ελληνικά"},
	} {
		if got := postgres.Words(text); !slices.Equal(got, want) {
			t.Errorf("words(%q) = %q, want %q", text, got, want)
		}
	}
}

// TestWords_EveryRune holds every code point, alone and inside a word, to
// wantWords: no letter is folded that should not be, or missed.
func TestWords_EveryRune(t *testing.T) {
	bad := 0
	for r := rune(0); r <= unicode.MaxRune && bad < 10; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		text := "x" + string(r) + "y"
		if got, want := postgres.Words(text), wantWords(text); !slices.Equal(got, want) {
			t.Errorf("words(%q) (U+%04X) = %q, want %q", text, r, got, want)
			bad++
		}
	}
}

// wantWords is what the splitter should make of text.
func wantWords(text string) []string {
	want := strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	for i, w := range want {
		want[i] = strings.Map(baseLatin, strings.ToLower(w))
	}
	return want
}

// baseLatin is the base letter of a Latin letter whose canonical
// decomposition is that letter and combining marks.
func baseLatin(r rune) rune {
	if r < 0x80 || !unicode.Is(unicode.Latin, r) {
		return r
	}
	d := []rune(norm.NFD.String(string(r)))
	if len(d) < 2 {
		return r
	}
	for _, m := range d[1:] {
		if !unicode.Is(unicode.Mn, m) {
			return r
		}
	}
	return d[0]
}

func FuzzWords(f *testing.F) {
	f.Add("Hello, World! ÉCOLE 東京")
	f.Fuzz(func(t *testing.T, text string) {
		if got, want := postgres.Words(text), wantWords(text); !slices.Equal(got, want) {
			t.Fatalf("words(%q) = %q, want %q", text, got, want)
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
