package dedupe_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/internal/storetest"
	"github.com/chatlog/chatlog/repo"
)

var seedFlag = flag.Uint64("dedupe.seed", 0, "seed for the randomised turn tests (0: pick one and log it)")

// seed returns the seed of a randomised test, logging it so a failure can
// be rerun.
func seed(tb testing.TB) uint64 {
	tb.Helper()
	s := *seedFlag
	if s == 0 {
		s = rand.Uint64()
	}
	tb.Logf("seed %d (rerun with -dedupe.seed=%d)", s, s)
	return s
}

// openRepo opens a fresh store of backend b, closed when the test ends.
func openRepo(tb testing.TB, b storetest.Backend) storetest.Store {
	tb.Helper()
	return b.Open(tb)
}

// userMessage is the user message of request urid. Its content depends only
// on urid, so every process asking for a request sends the same payload.
func userMessage(conv, urid string) events.Event {
	return events.Event{
		ConversationID: conv,
		Type:           events.TypeUserMessage,
		RequestID:      urid,
		Content:        events.NewText("question " + urid),
	}
}

// turnLog is the log read back, grouped by user request.
type turnLog struct {
	// users, messages (assistant_message with request_id assistant:U) and
	// failures (turn_failed) by user request id.
	users, messages, failures map[string][]events.Event
	// chunks by user request id and attempt, in index order.
	chunks map[string]map[int][]events.Event
}

// readTurnLog reads the whole log and checks what holds for every log,
// whatever the test did: seqs run 1, 2, 3... per conversation, pos
// increases, every chunk names its user request and attempt (>= 1) and its
// index, under request_id delta:U:attempt:index, and each (request,
// attempt, index) is stored once.
func readTurnLog(tb testing.TB, r repo.Repo) turnLog {
	tb.Helper()
	l := turnLog{
		users:    map[string][]events.Event{},
		messages: map[string][]events.Event{},
		failures: map[string][]events.Event{},
		chunks:   map[string]map[int][]events.Event{},
	}
	heads := map[string]int64{}
	var lastPos int64
	for e, err := range r.All(context.Background(), 0) {
		if err != nil {
			tb.Fatalf("read log: %v", err)
		}
		if e.Pos <= lastPos {
			tb.Errorf("pos %d after %d", e.Pos, lastPos)
		}
		lastPos = e.Pos
		if e.Seq != heads[e.ConversationID]+1 {
			tb.Errorf("conversation %s: seq %d after %d", e.ConversationID, e.Seq, heads[e.ConversationID])
		}
		heads[e.ConversationID] = e.Seq
		switch e.Type {
		case events.TypeUserMessage:
			l.users[e.RequestID] = append(l.users[e.RequestID], e)
		case events.TypeAssistantMessage:
			u, ok := strings.CutPrefix(e.RequestID, "assistant:")
			if !ok {
				tb.Errorf("assistant_message seq %d in %s has request_id %q, want assistant:<user request>", e.Seq, e.ConversationID, e.RequestID)
				continue
			}
			l.messages[u] = append(l.messages[u], e)
		case events.TypeTurnFailed:
			u, _ := e.ExtraString("user_request_id")
			l.failures[u] = append(l.failures[u], e)
		case events.TypeAssistantDelta:
			u, okU := e.ExtraString("user_request_id")
			a, okA := e.ExtraInt("attempt")
			i, okI := e.ExtraInt("index")
			if !okU || !okA || !okI || a < 1 {
				tb.Errorf("chunk %s seq %d (request_id %q) lacks its user request, attempt or index: extra %v", e.ConversationID, e.Seq, e.RequestID, e.Extra)
				continue
			}
			if want := fmt.Sprintf("delta:%s:%d:%d", u, a, i); e.RequestID != want {
				tb.Errorf("chunk %s seq %d has request_id %q, want %q", e.ConversationID, e.Seq, e.RequestID, want)
			}
			if l.chunks[u] == nil {
				l.chunks[u] = map[int][]events.Event{}
			}
			l.chunks[u][int(a)] = append(l.chunks[u][int(a)], e)
		}
	}
	for u, byAttempt := range l.chunks {
		for a, cs := range byAttempt {
			slices.SortStableFunc(cs, func(x, y events.Event) int { return int(index(x) - index(y)) })
			for i, c := range cs {
				if index(c) != int64(i) {
					tb.Errorf("user request %s attempt %d: chunk at position %d has index %d (indexes %v)", u, a, i, index(c), indexes(cs))
					break
				}
			}
		}
	}
	return l
}

func index(e events.Event) int64 { n, _ := e.ExtraInt("index"); return n }

func indexes(cs []events.Event) []int64 {
	out := make([]int64, len(cs))
	for i, c := range cs {
		out[i] = index(c)
	}
	return out
}

// text concatenates the chunks' text.
func text(cs []events.Event) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.Text())
	}
	return b.String()
}

// attempts lists the attempts that wrote chunks for u, in order.
func (l turnLog) attempts(u string) []int {
	var out []int
	for a := range l.chunks[u] {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// oneMessage returns the single assistant_message answering u, failing when
// there is none or more than one.
func (l turnLog) oneMessage(tb testing.TB, u string) (events.Event, bool) {
	tb.Helper()
	switch ms := l.messages[u]; len(ms) {
	case 1:
		return ms[0], true
	case 0:
		tb.Errorf("user request %s: no assistant_message in the log", u)
	default:
		tb.Errorf("user request %s: %d assistant_messages in the log (seqs %d and %d), want 1", u, len(ms), ms[0].Seq, ms[1].Seq)
	}
	return events.Event{}, false
}
