package postgres_test

import (
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/chatlog/chatlog/repo/postgres"
)

// TestWords: the search index's word splitter finds the runs of letters
// and digits and lowercases them, as strings.FieldsFunc and
// strings.ToLower do.
func TestWords(t *testing.T) {
	for _, text := range []string{"", "Hello, World!", "ÉCOLE Straße ΣΊΣΥΦΟΣ 東京タワー", "a1b2 3c", "tabs\tand\nlines", "don't stop-me now",
		"\x00nul\x00", "emoji 🐧 penguins", "İstanbul", strings.Repeat("x ", 50)} {
		want := strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
		for i, w := range want {
			want[i] = strings.ToLower(w)
		}
		if got := postgres.Words(text); !slices.Equal(got, want) {
			t.Errorf("words(%q) = %q, want %q", text, got, want)
		}
	}
}

func FuzzWords(f *testing.F) {
	f.Add("Hello, World! ÉCOLE 東京")
	f.Fuzz(func(t *testing.T, text string) {
		want := strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
		for i, w := range want {
			want[i] = strings.ToLower(w)
		}
		if got := postgres.Words(text); !slices.Equal(got, want) {
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
		"café Zürich 東京 2024":      "'2024' 'café' 'zürich' '東京'",
		"nul\x00separated\x00text": "'nul' 'separated' 'text'",
	} {
		if got := postgres.SearchVector(text); got != want {
			t.Errorf("searchVector(%q) = %q, want %q", text, got, want)
		}
	}
}
