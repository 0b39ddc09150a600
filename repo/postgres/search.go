package postgres

import (
	"bytes"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/chatlog/chatlog/events"
)

// The search index's words, split by the same function for messages and
// queries: runs of letters and digits, lowercased, with the diacritics of
// Latin letters removed (café and CAFÉ are cafe), as SQLite's unicode61
// tokenizer with remove_diacritics does. The writer stores a
// message's distinct words as a tsvector (no positions: search matches
// words, it neither ranks nor looks for phrases), so the server indexes
// what it is given instead of parsing every message.

// Limits PostgreSQL puts on a tsvector: a lexeme under 2 KiB, the whole
// under 1 MiB. A longer word is not indexed (and a query for one finds
// nothing); a message's words past the budget are not indexed either.
const (
	maxLexemeBytes = 2000
	maxVectorBytes = 512 << 10
)

// words splits text into lowercased words.
func words(text string) []string {
	var out []string
	buf := make([]byte, 0, len(text))
	start := 0
	end := func() {
		if len(buf) > start {
			out = append(out, string(buf[start:]))
		}
		buf = buf[:0]
		start = 0
	}
	for _, r := range text {
		switch {
		case r < utf8.RuneSelf && ('a' <= r && r <= 'z' || '0' <= r && r <= '9'):
			buf = append(buf, byte(r))
		case r < utf8.RuneSelf && 'A' <= r && r <= 'Z':
			buf = append(buf, byte(r+'a'-'A'))
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			buf = utf8.AppendRune(buf, foldDiacritics(unicode.ToLower(r)))
		default:
			end()
		}
	}
	end()
	return out
}

// latinFolds maps each Latin letter with diacritics (Latin-1 Supplement to
// Latin Extended-B, and Latin Extended Additional) to its base letter: the
// first rune of its canonical decomposition, when the rest are combining
// marks. Letters without a decomposition (ø, ł, æ, ß) stay as they are.
var latinFolds = func() map[rune]rune {
	m := map[rune]rune{}
	add := func(lo, hi rune) {
		for r := lo; r <= hi; r++ {
			d := []rune(norm.NFD.String(string(r)))
			if len(d) < 2 || d[0] >= utf8.RuneSelf && !unicode.Is(unicode.Latin, d[0]) {
				continue
			}
			marks := true
			for _, c := range d[1:] {
				marks = marks && unicode.Is(unicode.Mn, c)
			}
			if marks {
				m[r] = d[0]
			}
		}
	}
	add(0x00C0, 0x024F)
	add(0x1E00, 0x1EFF)
	return m
}()

// foldDiacritics removes the diacritics of a Latin letter (see latinFolds).
func foldDiacritics(r rune) rune {
	if b, ok := latinFolds[r]; ok {
		return b
	}
	return r
}

// searchable reports whether events of type t are indexed for search.
func searchable(t events.Type) bool {
	switch t {
	case events.TypeUserMessage, events.TypeAssistantMessage, events.TypeToolResult:
		return true
	}
	return false
}

// searchVector returns the tsvector literal of text's distinct words
// ('a' 'b' ...), or "" when it has none. It splits as words does, into
// one buffer, and sorts spans of it: a message's words cost no string
// each.
func searchVector(text string) string {
	buf := make([]byte, 0, len(text))
	type span struct{ start, end int }
	var spans []span
	start := 0
	end := func() {
		if len(buf) > start {
			spans = append(spans, span{start, len(buf)})
		}
		start = len(buf)
	}
	for _, r := range text {
		switch {
		case r < utf8.RuneSelf && ('a' <= r && r <= 'z' || '0' <= r && r <= '9'):
			buf = append(buf, byte(r))
		case r < utf8.RuneSelf && 'A' <= r && r <= 'Z':
			buf = append(buf, byte(r+'a'-'A'))
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			buf = utf8.AppendRune(buf, foldDiacritics(unicode.ToLower(r)))
		default:
			end()
		}
	}
	end()
	if len(spans) == 0 {
		return ""
	}
	word := func(s span) []byte { return buf[s.start:s.end] }
	slices.SortFunc(spans, func(a, b span) int { return bytes.Compare(word(a), word(b)) })
	var b strings.Builder
	b.Grow(len(buf) + 3*len(spans))
	for i, sp := range spans {
		w := word(sp)
		if i > 0 && bytes.Equal(w, word(spans[i-1])) {
			continue
		}
		if len(w) > maxLexemeBytes {
			continue
		}
		if b.Len()+len(w)+3 > maxVectorBytes {
			break
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		quoteLexeme(&b, string(w))
	}
	return b.String()
}

// quoteLexeme writes w as a quoted tsvector or tsquery lexeme. Words hold
// letters and digits only, but the quoting does not rely on it.
func quoteLexeme(b *strings.Builder, w string) {
	b.WriteByte('\'')
	if !strings.ContainsAny(w, `'\`) {
		b.WriteString(w)
		b.WriteByte('\'')
		return
	}
	for _, r := range w {
		if r == '\'' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('\'')
}

// wordSpan is a word of a text: its bytes text[start:end], and the word as
// words returns it.
type wordSpan struct {
	start, end int
	word       string
}

// wordSpans splits text as words does, keeping where each word is.
func wordSpans(text string) []wordSpan {
	var out []wordSpan
	var buf []byte
	start := -1
	for i, r := range text {
		switch {
		case r < utf8.RuneSelf && ('a' <= r && r <= 'z' || '0' <= r && r <= '9'):
			buf = append(buf, byte(r))
		case r < utf8.RuneSelf && 'A' <= r && r <= 'Z':
			buf = append(buf, byte(r+'a'-'A'))
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			buf = utf8.AppendRune(buf, foldDiacritics(unicode.ToLower(r)))
		default:
			if start >= 0 {
				out = append(out, wordSpan{start, i, string(buf)})
				buf, start = buf[:0], -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, wordSpan{start, len(text), string(buf)})
	}
	return out
}

// snippetWords is how many words a snippet shows, as the SQLite store's.
const snippetWords = 16

// snippet cuts from text the run of up to snippetWords words that holds
// the most of the query's words (then the most matches, then the
// earliest), centred on its matches, marks each match [so] and marks a
// cut end with "…": the SQLite store's snippet, made here because
// ts_headline knows nothing of folded diacritics.
func snippet(text string, query []string) string {
	toks := wordSpans(text)
	if len(toks) == 0 {
		return ""
	}
	term := make([]int, len(toks)) // the query word a word matches, or -1
	for i, t := range toks {
		term[i] = slices.Index(query, t.word)
	}
	n, w := len(toks), min(snippetWords, len(toks))
	counts := make([]int, len(query))
	distinct, total := 0, 0
	take := func(i, d int) {
		if q := term[i]; q >= 0 {
			if counts[q] == 0 && d > 0 || counts[q] == 1 && d < 0 {
				distinct += d
			}
			counts[q] += d
			total += d
		}
	}
	for i := range w {
		take(i, 1)
	}
	best, bestDistinct, bestTotal := 0, distinct, total
	for s := 1; s+w <= n; s++ {
		take(s-1, -1)
		take(s+w-1, 1)
		if distinct > bestDistinct || distinct == bestDistinct && total > bestTotal {
			best, bestDistinct, bestTotal = s, distinct, total
		}
	}
	start := best
	if bestTotal > 0 {
		first, last := -1, -1
		for i := best; i < best+w; i++ {
			if term[i] >= 0 {
				if first < 0 {
					first = i
				}
				last = i
			}
		}
		start = max(0, min(first-(w-(last-first+1))/2, n-w))
	}
	var b strings.Builder
	pos := toks[start].start
	if start == 0 {
		pos = 0
	} else {
		b.WriteString("…")
	}
	for i := start; i < start+w; i++ {
		t := toks[i]
		b.WriteString(text[pos:t.start])
		if term[i] >= 0 {
			b.WriteString("[" + text[t.start:t.end] + "]")
		} else {
			b.WriteString(text[t.start:t.end])
		}
		pos = t.end
	}
	if start+w < n {
		b.WriteString("…")
	} else {
		b.WriteString(text[pos:])
	}
	return b.String()
}

// searchWords turns anything a user types into the words to look for (at
// most 32), joined by spaces. It returns "" when there are none.
func searchWords(q string) string {
	ws := words(q)
	if len(ws) > 32 {
		ws = ws[:32]
	}
	return strings.Join(ws, " ")
}

// searchQuery returns the tsquery literal that matches messages holding
// every word of q ('a' & 'b'), and false when no message can match (no
// word, or one too long to be indexed).
func searchQuery(q string) (string, bool) {
	ws := strings.Fields(searchWords(q))
	if len(ws) == 0 {
		return "", false
	}
	var b strings.Builder
	for i, w := range ws {
		if len(w) > maxLexemeBytes {
			return "", false
		}
		if i > 0 {
			b.WriteString(" & ")
		}
		quoteLexeme(&b, w)
	}
	return b.String(), true
}

// vectorWords parses the words back out of a tsvector's text form, as the
// server prints it ('a' 'b' ...), for verify.
func vectorWords(v string) []string {
	var out []string
	for i := 0; i < len(v); {
		if v[i] != '\'' {
			i++
			continue
		}
		var w strings.Builder
		j := i + 1
		for ; j < len(v); j++ {
			if v[j] == '\\' && j+1 < len(v) {
				j++
				w.WriteByte(v[j])
				continue
			}
			if v[j] == '\'' {
				if j+1 < len(v) && v[j+1] == '\'' {
					w.WriteByte('\'')
					j++
					continue
				}
				break
			}
			w.WriteByte(v[j])
		}
		out = append(out, w.String())
		i = j + 1
	}
	slices.Sort(out)
	return out
}
