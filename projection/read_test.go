package projection_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

var seedFlag = flag.Uint64("projection.seed", 0, "seed for the randomised projection tests (0: pick one and log it)")

func seed(t testing.TB) uint64 {
	t.Helper()
	s := *seedFlag
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -projection.seed=%d)", s, s)
	return s
}

// randomLog makes a conversation of n events with everything projections
// must handle: tool calls answered late, twice, never or before the call,
// streamed chunks, clears, retractions, prompt changes, visible and hidden
// system updates, lifecycle and custom events.
func randomLog(rng *rand.Rand, conv string, n int) []events.Event {
	var evs []events.Event
	var openCalls []string
	call := 0
	for len(evs) < n {
		seq := int64(len(evs) + 1)
		e := events.Event{ConversationID: conv, Seq: seq}
		switch k := rng.IntN(100); {
		case k < 25:
			e.Type, e.Content = events.TypeUserMessage, events.NewText(fmt.Sprintf("user says %d", seq))
		case k < 45:
			e.Type, e.Content = events.TypeAssistantMessage, events.NewText(fmt.Sprintf("assistant says %d", seq))
			if rng.IntN(3) == 0 {
				e.Content = nil
				if rng.IntN(2) == 0 {
					e.Content = events.NewText("calling")
				}
				for range 1 + rng.IntN(2) {
					call++
					id := fmt.Sprintf("call_%d", call)
					e.ToolCalls = append(e.ToolCalls, events.ToolCall{ID: id, Name: "f", Arguments: `{"x":1}`})
					openCalls = append(openCalls, id)
				}
			}
		case k < 65:
			e.Type = events.TypeToolResult
			switch {
			case len(openCalls) > 0 && rng.IntN(5) > 0:
				i := rng.IntN(len(openCalls))
				e.ToolCallID = openCalls[i]
				if rng.IntN(4) > 0 { // sometimes answered twice
					openCalls = append(openCalls[:i], openCalls[i+1:]...)
				}
			default:
				e.ToolCallID = fmt.Sprintf("call_%d", call+1+rng.IntN(3)) // orphan, or answered before its call
			}
			e.Content = events.NewText(fmt.Sprintf("result %d", seq))
		case k < 72:
			e.Type, e.Content = events.TypeAssistantDelta, events.NewText("chunk")
			e.Extra = map[string]any{"user_request_id": "u", "index": json.Number(fmt.Sprint(seq))}
		case k < 76:
			e.Type, e.Content = events.TypeSystemUpdate, events.NewText(fmt.Sprintf("update %d", seq))
			e.Extra = map[string]any{"visible_to_model": rng.IntN(2) == 0}
		case k < 79:
			e.Type, e.Content = events.TypeSystemPromptSet, events.NewText(fmt.Sprintf("prompt %d", seq))
		case k < 81:
			e.Type = events.TypeConversationCleared
		case k < 85:
			e.Type = events.TypeMessageRetracted
			e.Extra = map[string]any{"retracted_seq": json.Number(fmt.Sprint(1 + rng.Int64N(seq)))}
		case k < 88:
			e.Type, e.Extra = events.TypeConversationStarted, map[string]any{"system": fmt.Sprintf("start prompt %d", seq)}
		default:
			e.Type, e.Extra = events.TypeTitleSet, map[string]any{"title": "t"}
		}
		evs = append(evs, e)
	}
	return evs
}

func randomOptions(rng *rand.Rand, n int) projection.Options {
	o := projection.Options{}
	if rng.IntN(3) == 0 {
		o.AsOfSeq = 1 + rng.Int64N(int64(n))
	}
	// Small windows, and large ones that need several pages of the
	// backwards read.
	big := rng.IntN(2) == 0
	switch rng.IntN(4) {
	case 0:
		o.MaxMessages = 1 + rng.IntN(30)
		if big {
			o.MaxMessages = 60 + rng.IntN(400)
		}
	case 1:
		o.MaxTurns = 1 + rng.IntN(8)
		if big {
			o.MaxTurns = 20 + rng.IntN(150)
		}
	case 2:
		o.MaxTokens = 10 + rng.IntN(300)
		if big {
			o.MaxTokens = 1000 + rng.IntN(4000)
		}
	}
	if rng.IntN(2) == 0 {
		o.Unanswered = projection.PolicyDropUnanswered
	}
	return o
}

// TestRead_EqualsBuild: reading through the store, backwards and windowed,
// gives exactly what Build gives on the whole log; every projection is a
// valid request in both shapes; and every window is a suffix of whole
// turns of the unwindowed projection.
func TestRead_EqualsBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed(t), 2))
	ctx := context.Background()
	r, err := sqlite.Open(ctx, ":memory:", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	logs := 40
	if testing.Short() || raceEnabled {
		logs = 6
	}
	for l := range logs {
		conv := fmt.Sprintf("conv%d", l)
		n := 5 + rng.IntN(1500)
		log := randomLog(rng, conv, n)
		stored := make([]events.Event, 0, n)
		for i, it := range r.AppendEach(ctx, log, repo.AppendOptions{}) {
			if it.Err != nil {
				t.Fatalf("append %+v: %v", log[i], it.Err)
			}
			stored = append(stored, it.Event)
		}
		for range 25 {
			o := randomOptions(rng, n)
			want := projection.Build(stored, o)
			got, err := projection.Read(ctx, r, conv, o)
			if err != nil {
				t.Fatal(err)
			}
			gotJSON, _ := json.Marshal(got.OpenAI())
			wantJSON, _ := json.Marshal(want.OpenAI())
			if string(gotJSON) != string(wantJSON) || got.System != want.System {
				t.Fatalf("%s with %+v:\nRead  %s\nBuild %s", conv, o, gotJSON, wantJSON)
			}
			if err := projection.CheckOpenAI(want.OpenAI()); err != nil {
				t.Fatalf("%s with %+v: OpenAI shape invalid: %v\n%s", conv, o, err, wantJSON)
			}
			if err := projection.CheckAnthropic(want.Anthropic()); err != nil {
				a, _ := json.Marshal(want.Anthropic())
				t.Fatalf("%s with %+v: Anthropic shape invalid: %v\n%s", conv, o, err, a)
			}
			all := o
			all.MaxMessages, all.MaxTurns, all.MaxTokens = 0, 0, 0
			full := projection.Build(stored, all).Messages
			win := want.Messages
			if len(win) > len(full) {
				t.Fatalf("window longer than the conversation")
			}
			start := len(full) - len(win)
			if msgJSON(full[start:]) != msgJSON(win) {
				t.Fatalf("%s with %+v: the window is not a suffix of the conversation", conv, o)
			}
			if len(win) > 0 && start > 0 && win[0].Role != events.RoleUser {
				t.Fatalf("%s with %+v: window starts on %s, not on a turn", conv, o, win[0].Role)
			}
		}
	}
	// The read models kept incrementally while the random logs went in
	// equal those rebuilt from the log.
	problems, err := r.VerifyReadModels(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("incremental read models differ from rebuilt ones: %s", p)
	}
	for l := range logs {
		conv := fmt.Sprintf("conv%d", l)
		s, err := r.Summary(ctx, conv)
		if err != nil {
			t.Fatal(err)
		}
		want := repo.Summary{}
		for e, err := range r.Events(ctx, conv, repo.Range{}) {
			if err != nil {
				t.Fatal(err)
			}
			projection.Summarize(&want, &e)
		}
		if a, b := mustJSON(t, s), mustJSON(t, want); a != b {
			t.Errorf("%s: live summary %s, folded from its events %s", conv, a, b)
		}
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// BenchmarkBuild10k projects a 10,000-event conversation to the OpenAI
// shape.
func BenchmarkBuild10k(b *testing.B) {
	evs := randomLog(rand.New(rand.NewPCG(1, 2)), "c", 10000)
	for b.Loop() {
		projection.Build(evs, projection.Options{}).OpenAI()
	}
}

// BenchmarkRead_Last50 reads the last 50 messages of a 100,000-event
// conversation through the store.
func BenchmarkRead_Last50(b *testing.B) {
	ctx := context.Background()
	r, err := sqlite.Open(ctx, b.TempDir()+"/p.db", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	batch := make([]events.Event, 0, 1000)
	for i := range 100000 {
		typ := events.TypeUserMessage
		if i%2 == 1 {
			typ = events.TypeAssistantMessage
		}
		batch = append(batch, events.Event{ConversationID: "long", Type: typ, Content: events.NewText(fmt.Sprintf("message %d with some words in it", i))})
		if len(batch) == cap(batch) {
			if _, err := r.AppendBatch(ctx, batch, repo.AppendOptions{}); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.ResetTimer()
	for b.Loop() {
		c, err := projection.Read(ctx, r, "long", projection.Options{MaxMessages: 50})
		if err != nil || len(c.Messages) != 50 {
			b.Fatalf("%d messages, %v", len(c.Messages), err)
		}
	}
}

func msgJSON(m []projection.Message) string {
	b, _ := json.Marshal(projection.Conversation{Messages: m}.OpenAI())
	return string(b)
}
