package postgres

import (
	"bytes"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/internal/searchtext"
)

// The search index's words, split by the same function for messages and
// queries: runs of letters and numbers, lowercased, with the diacritics of
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
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsNumber(r)):
			buf = utf8.AppendRune(buf, foldDiacritics(unicode.ToLower(r)))
		case searchtext.InWordMark(r):
			// part of the word, dropped
		default:
			end()
		}
	}
	end()
	return out
}

// latinFolds maps each Latin letter with diacritics (Latin-1 Supplement to
// Latin Extended-B, and Latin Extended Additional) to the ASCII letter it
// is built on: the first rune of its canonical decomposition, when that is
// ASCII and the rest are combining marks. These are the letters SQLite's
// unicode61 tokenizer folds with remove_diacritics 2, less ǡ (which it
// leaves), plus the three its case folding makes of letters Go's ToLower
// leaves (ſ and ẛ are s, the micro sign is μ); letters built on another
// letter (ǣ on æ, ǿ on ø) and letters without a decomposition (ø, ł, æ,
// ß) stay as they are. TestWords_SameAsSQLite holds the two together.
var latinFolds = func() map[rune]rune {
	m := map[rune]rune{'ſ': 's', 'ẛ': 's', 'µ': 'μ'}
	add := func(lo, hi rune) {
		for r := lo; r <= hi; r++ {
			d := []rune(norm.NFD.String(string(r)))
			if len(d) < 2 || d[0] >= utf8.RuneSelf || r == 'Ǡ' || r == 'ǡ' {
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
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsNumber(r)):
			buf = utf8.AppendRune(buf, foldDiacritics(unicode.ToLower(r)))
		case searchtext.InWordMark(r):
			// part of the word, dropped
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
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsNumber(r)):
			buf = utf8.AppendRune(buf, foldDiacritics(unicode.ToLower(r)))
		case searchtext.InWordMark(r):
			// part of the word, dropped
		default:
			if start >= 0 && len(buf) > 0 {
				out = append(out, wordSpan{start, i, string(buf)})
			}
			buf, start = buf[:0], -1
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 && len(buf) > 0 {
		out = append(out, wordSpan{start, len(text), string(buf)})
	}
	return out
}

// snippetWords is how many words a snippet shows, as the SQLite store's.
const snippetWords = 16

// snippet cuts from text the words the SQLite store's snippet() shows for
// the same query (FTS5's choice of window, which users of either backend
// see alike): each match is marked [so], and a cut end gets "…".
//
// FTS5 scores the window of snippetWords words starting at each match:
// 1000 for each query word it holds, 1 for each repeat, and moves the best
// back so its matches sit in the middle. In a text longer than one window
// it also scores the window starting at the sentence the match is in (a
// word after "." or ":" and a space, or the first word), 100 more for
// starting a sentence (120 for the first). The first best window wins.
func snippet(text string, query []string) string {
	toks := wordSpans(text)
	n := len(toks)
	if n == 0 {
		return ""
	}
	w := snippetWords
	// hits are the matches in text order; a word the query holds twice
	// is two matches, one for each.
	type hit struct{ at, term int }
	var hits []hit
	marked := make([]bool, n)
	for i, t := range toks {
		for q, word := range query {
			if word == t.word {
				hits = append(hits, hit{i, q})
				marked[i] = true
			}
		}
	}
	// score rates the window starting at word from and returns where
	// that window would start with its matches centred.
	seen := make([]bool, len(query))
	score := func(from int) (points, centred int) {
		clear(seen)
		first, last := -1, -1
		for _, h := range hits {
			if h.at < from || h.at >= from+w {
				continue
			}
			if seen[h.term] {
				points++
			} else {
				points += 1000
				seen[h.term] = true
			}
			if first < 0 {
				first = h.at
			}
			last = h.at
		}
		centred = first - (w-(last+1-first))/2
		if centred+w > n {
			centred = n - w
		}
		return points, max(centred, 0)
	}
	sentence := []int{0} // the words that start a sentence
	for i := 1; i < n; i++ {
		j := toks[i].start - 1
		for j >= 0 && strings.IndexByte(" \t\n\r", text[j]) >= 0 {
			j--
		}
		if j >= 0 && j < toks[i].start-1 && (text[j] == '.' || text[j] == ':') {
			sentence = append(sentence, i)
		}
	}
	best, start := 0, 0
	for _, h := range hits {
		if points, centred := score(h.at); points > best {
			best, start = points, centred
		}
		if n <= w {
			continue
		}
		k, _ := slices.BinarySearch(sentence, h.at+1) // sentence[k-1] <= h.at
		if s := sentence[k-1]; s < h.at {
			points, _ := score(s)
			if s == 0 {
				points += 120
			} else {
				points += 100
			}
			if points > best {
				best, start = points, s
			}
		}
	}
	end := min(start+w, n)
	var b strings.Builder
	pos := 0
	if start > 0 {
		b.WriteString("…")
		pos = toks[start].start
	}
	for i := start; i < end; i++ {
		t := toks[i]
		b.WriteString(text[pos:t.start])
		if marked[i] {
			b.WriteString("[" + text[t.start:t.end] + "]")
		} else {
			b.WriteString(text[t.start:t.end])
		}
		pos = t.end
	}
	if end < n {
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
