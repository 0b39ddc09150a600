package sqlite_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chatlog/chatlog/events"
)

// synthChat makes chat messages that compress like real ones: markdown
// prose, lists and fenced Go code, cut from a corpus of the project's own
// doc comments and code (the packages beside the store and their tests), the kind of
// technical conversation a coding assistant has. Repeated letters or
// random bytes would flatter or wrong any codec; sentences sampled from a
// few thousand lines repeat inside one message about as rarely as a real
// reply repeats itself.
type synthChat struct {
	rng       *rand.Rand
	sentences []string
	code      []string
}

// newSynthChat reads the corpus and seeds the generator: one seed, one
// sequence of messages.
func newSynthChat(tb testing.TB, seed uint64) *synthChat {
	tb.Helper()
	g := &synthChat{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	var files []string
	for _, dir := range []string{"events", "dedupe", "projection", "compact", "logfile", "repo", "server"} {
		m, err := filepath.Glob(filepath.Join("..", "..", dir, "*.go"))
		if err != nil {
			tb.Fatal(err)
		}
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		var para []string
		flush := func() {
			for s := range strings.SplitAfterSeq(strings.Join(para, " "), ". ") {
				if s = strings.TrimSpace(s); len(s) > 10 {
					g.sentences = append(g.sentences, s)
				}
			}
			para = para[:0]
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			t := strings.TrimSpace(line)
			if c, ok := strings.CutPrefix(t, "//"); ok {
				if c = strings.TrimSpace(c); c != "" {
					para = append(para, c)
				}
				continue
			}
			flush()
			if t != "" {
				g.code = append(g.code, line)
			}
		}
		flush()
	}
	if len(g.sentences) < 800 || len(g.code) < 5000 {
		tb.Fatalf("corpus too small: %d sentences, %d lines of code", len(g.sentences), len(g.code))
	}
	return g
}

func (g *synthChat) sentence() string { return g.sentences[g.rng.IntN(len(g.sentences))] }

// text returns a message of size bytes (a little less when the cut falls
// inside a character).
func (g *synthChat) text(size int) string {
	var b strings.Builder
	for b.Len() < size {
		switch r := g.rng.IntN(10); {
		case r < 6: // a paragraph
			for range 2 + g.rng.IntN(5) {
				b.WriteString(g.sentence())
				b.WriteByte(' ')
			}
			b.WriteString("\n\n")
		case r < 8: // a code block
			n := 4 + g.rng.IntN(22)
			start := g.rng.IntN(len(g.code) - n)
			b.WriteString("```go\n")
			for _, l := range g.code[start : start+n] {
				b.WriteString(l)
				b.WriteByte('\n')
			}
			b.WriteString("```\n\n")
		default: // a list
			for range 3 + g.rng.IntN(4) {
				b.WriteString("- ")
				b.WriteString(g.sentence())
				b.WriteByte('\n')
			}
			b.WriteByte('\n')
		}
	}
	return strings.ToValidUTF8(b.String()[:size], "")
}

var synthCities = []string{"Oslo", "Bergen", "Lisbon", "Kyoto", "Nairobi", "Lima", "Perth", "Quebec"}

// toolJSON returns a tool result of about size bytes: an array of records,
// as weather or search tools return them.
func (g *synthChat) toolJSON(size int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"city":%q,"high_c":%.1f,"low_c":%.1f,"wind_kmh":%d,"sky":%q}`,
			g.rng.IntN(100000), synthCities[g.rng.IntN(len(synthCities))], g.rng.Float64()*30-5,
			g.rng.Float64()*20-10, g.rng.IntN(90), []string{"clear", "snow showers", "overcast", "rain"}[g.rng.IntN(4)])
	}
	b.WriteByte(']')
	return b.String()
}

// event returns the n-th event of a synthetic log, its message between
// minSize and maxSize bytes: user and assistant messages in turn, every
// tenth a tool result (JSON), every twentieth an assistant message with
// multi-part content and a tool call. Fifty events per conversation.
func (g *synthChat) event(n, minSize, maxSize int) events.Event {
	size := minSize + g.rng.IntN(maxSize-minSize+1)
	e := events.Event{
		ConversationID: fmt.Sprintf("synth-%05d", n/50),
		RequestID:      fmt.Sprintf("r%d", n),
	}
	switch {
	case n%20 == 19:
		e.Type, e.Provider, e.Model, e.StopReason = events.TypeAssistantMessage, "openai", "gpt-4o", "tool_calls"
		e.Content = events.NewParts(events.TextPart(g.text(size)))
		e.ToolCalls = []events.ToolCall{{ID: fmt.Sprintf("call_%d", n), Name: "get_weather", Arguments: `{"city":"Oslo"}`}}
	case n%10 == 9:
		e.Type, e.ToolCallID = events.TypeToolResult, fmt.Sprintf("call_%d", n-1)
		e.Content = events.NewText(g.toolJSON(size))
	case n%2 == 0:
		e.Type, e.Content = events.TypeUserMessage, events.NewText(g.text(size))
	default:
		e.Type, e.Provider, e.Model, e.StopReason = events.TypeAssistantMessage, "openai", "gpt-4o", "stop"
		e.Content = events.NewText(g.text(size))
		e.Usage = &events.Usage{Input: int64(100 + n%900), Output: int64(size / 4)}
	}
	return e
}
