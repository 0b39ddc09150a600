package compact_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/events"
)

// chunk is the index-th chunk of user request "u" in conversation "c",
// with seq as a store would have given it.
func chunk(index int, seq int64, text string) events.Event {
	ev := compact.Chunk("c", "u", 1, index, text)
	ev.Seq = seq
	return ev
}

// callChunk is a chunk that carries tool-call fragments and no text.
func callChunk(index int, seq int64, frags ...events.ToolCall) events.Event {
	ev := compact.Chunk("c", "u", 1, index, "")
	ev.Content = nil
	ev.Seq = seq
	ev.ToolCalls = frags
	return ev
}

// legacy is a chunk without index, as older logs stored them.
func legacy(seq int64, text string) events.Event {
	ev := compact.Chunk("c", "u", 0, 0, text)
	delete(ev.Extra, "index")
	ev.RequestID = ""
	ev.Seq = seq
	return ev
}

// mustFold folds chunks and returns the final message and what follows it.
func mustFold(t *testing.T, chunks []events.Event, opts compact.Options) (events.Event, []events.Event) {
	t.Helper()
	out, err := compact.Fold(chunks, opts)
	if err != nil {
		t.Fatalf("Fold: %v", err)
	}
	if len(out) == 0 {
		t.Fatalf("Fold returned no event")
	}
	msg := out[0]
	if msg.Type != events.TypeAssistantMessage {
		t.Errorf("Fold: first event is %s, want an assistant_message", msg.Type)
	}
	for i, ev := range out {
		// The store sets the conversation.
		ev.ConversationID = "c"
		if err := ev.Validate(); err != nil {
			t.Errorf("Fold: event %d (%s) is not valid: %v", i, ev.Type, err)
		}
	}
	return msg, out[1:]
}

// foldErr folds chunks, which must fail with target.
func foldErr(t *testing.T, what string, chunks []events.Event, opts compact.Options, target error) error {
	t.Helper()
	out, err := compact.Fold(chunks, opts)
	if !errors.Is(err, target) {
		t.Errorf("%s: Fold = %d events, %v; want an error matching %v", what, len(out), err, target)
	}
	return err
}

func wantChunks(t *testing.T, msg events.Event, n int) {
	t.Helper()
	if got, ok := msg.ExtraInt("chunks"); !ok || got != int64(n) {
		t.Errorf("extra.chunks = %v, want %d", msg.Extra["chunks"], n)
	}
}

// TestFoldOrder: chunks given in any order fold in index order.
func TestFoldOrder(t *testing.T) {
	parts := []string{"The ", "quick ", "brown ", "fox ", "jumps ", "over ", "the ", "lazy ", "dog", "."}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		var chunks []events.Event
		for i, p := range parts {
			chunks = append(chunks, chunk(i, int64(100-i), p))
		}
		rng.Shuffle(len(chunks), func(i, j int) { chunks[i], chunks[j] = chunks[j], chunks[i] })
		msg, rest := mustFold(t, chunks, compact.Options{StopReason: "stop", Model: "m"})
		if want := strings.Join(parts, ""); msg.Text() != want {
			t.Fatalf("round %d: text %q, want %q", round, msg.Text(), want)
		}
		if msg.StopReason != "stop" || msg.Model != "m" || msg.Role != events.RoleAssistant {
			t.Errorf("round %d: stop reason %q model %q role %q, want stop, m, assistant", round, msg.StopReason, msg.Model, msg.Role)
		}
		if len(rest) != 0 || msg.ToolCalls != nil {
			t.Errorf("round %d: %d events after the message, tool calls %v; want none", round, len(rest), msg.ToolCalls)
		}
		wantChunks(t, msg, len(parts))
	}
}

// TestFoldDuplicates: the same chunk twice counts once.
func TestFoldDuplicates(t *testing.T) {
	chunks := []events.Event{
		chunk(1, 2, "b"), chunk(0, 1, "a"), chunk(1, 5, "b"), chunk(2, 3, "c"), chunk(0, 7, "a"), chunk(2, 3, "c"),
	}
	msg, _ := mustFold(t, chunks, compact.Options{})
	if msg.Text() != "abc" {
		t.Errorf("text %q, want %q", msg.Text(), "abc")
	}
	wantChunks(t, msg, 3)
}

// TestFoldIndexConflict: one index with two different chunks is an error.
func TestFoldIndexConflict(t *testing.T) {
	foldErr(t, "other text", []events.Event{chunk(0, 1, "a"), chunk(1, 2, "b"), chunk(1, 3, "B")}, compact.Options{}, compact.ErrIndexConflict)
	a := callChunk(0, 1, events.ToolCall{ID: "call_1", Name: "f"})
	b := callChunk(0, 2, events.ToolCall{ID: "call_2", Name: "f"})
	foldErr(t, "other tool call", []events.Event{a, b}, compact.Options{}, compact.ErrIndexConflict)
	foldErr(t, "conflict, interrupted", []events.Event{chunk(0, 1, "a"), chunk(0, 2, "x")}, compact.Options{Interrupted: true}, compact.ErrIndexConflict)
}

// TestFoldGap: a missing index is a *GapError naming it.
func TestFoldGap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		indexes []int
		missing int
	}{
		{"middle", []int{0, 1, 3, 4}, 2},
		{"first", []int{1, 2}, 0},
		{"several", []int{0, 2, 5}, 1},
	} {
		var chunks []events.Event
		for i, x := range tc.indexes {
			chunks = append(chunks, chunk(x, int64(i+1), fmt.Sprint(x)))
		}
		err := foldErr(t, tc.name, chunks, compact.Options{}, compact.ErrGap)
		var ge *compact.GapError
		if !errors.As(err, &ge) {
			t.Errorf("%s: error %v (%T) is not a *compact.GapError", tc.name, err, err)
			continue
		}
		if ge.Missing != tc.missing {
			t.Errorf("%s: GapError.Missing = %d, want %d", tc.name, ge.Missing, tc.missing)
		}
	}
}

// TestFoldLegacy: chunks without index fold in seq order.
func TestFoldLegacy(t *testing.T) {
	chunks := []events.Event{legacy(9, "c"), legacy(2, "a"), legacy(5, "b")}
	msg, _ := mustFold(t, chunks, compact.Options{})
	if msg.Text() != "abc" {
		t.Errorf("text %q, want %q (seq order)", msg.Text(), "abc")
	}
	wantChunks(t, msg, 3)
}

// TestFoldMixed: some chunks with an index and some without is an error:
// there is no order to trust.
func TestFoldMixed(t *testing.T) {
	chunks := []events.Event{chunk(0, 1, "a"), legacy(2, "b"), chunk(1, 3, "c")}
	foldErr(t, "mixed", chunks, compact.Options{}, compact.ErrGap)
	foldErr(t, "mixed, interrupted", chunks, compact.Options{Interrupted: true}, compact.ErrGap)
}

// TestFoldEmpty: no chunks fold into an empty message.
func TestFoldEmpty(t *testing.T) {
	msg, rest := mustFold(t, nil, compact.Options{Interrupted: true})
	if msg.Text() != "" || msg.ToolCalls != nil || len(rest) != 0 {
		t.Errorf("empty fold: text %q, calls %v, %d more events", msg.Text(), msg.ToolCalls, len(rest))
	}
	wantChunks(t, msg, 0)
}

// TestFoldToolCalls: fragments fold into whole calls: id and name first,
// argument pieces later, without id; a new id starts the next call.
func TestFoldToolCalls(t *testing.T) {
	chunks := []events.Event{
		chunk(0, 1, "Let me check. "),
		callChunk(1, 2, events.ToolCall{ID: "call_1", Name: "get_weather"}),
		callChunk(2, 3, events.ToolCall{Arguments: `{"ci`}),
		callChunk(3, 4, events.ToolCall{Arguments: `ty":"Os`}),
		callChunk(4, 5, events.ToolCall{Arguments: `lo"}`}),
		callChunk(5, 6, events.ToolCall{ID: "call_2", Name: "get_time", Arguments: `{"tz":`}),
		callChunk(6, 7, events.ToolCall{Arguments: `"CET"}`}),
		// A fragment naming its call continues it.
		callChunk(7, 8, events.ToolCall{ID: "call_1"}),
	}
	slices.Reverse(chunks)
	msg, rest := mustFold(t, chunks, compact.Options{StopReason: "tool_calls"})
	want := []events.ToolCall{
		{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`},
		{ID: "call_2", Name: "get_time", Arguments: `{"tz":"CET"}`},
	}
	if !slices.Equal(msg.ToolCalls, want) {
		t.Errorf("tool calls %+v, want %+v", msg.ToolCalls, want)
	}
	if msg.Text() != "Let me check. " {
		t.Errorf("text %q, want the text chunk's", msg.Text())
	}
	if len(rest) != 0 {
		t.Errorf("%d events after a complete message, want none", len(rest))
	}
	if _, ok := msg.Extra["partial_arguments"]; ok {
		t.Errorf("extra.partial_arguments set on complete calls: %v", msg.Extra)
	}

	// Calls only: no content.
	msg, _ = mustFold(t, []events.Event{callChunk(0, 1, want[0]), callChunk(1, 2, want[1])}, compact.Options{})
	if msg.Content != nil {
		t.Errorf("calls without text: content %+v, want none", msg.Content)
	}

	orphan := []events.Event{callChunk(0, 1, events.ToolCall{Arguments: `{}`})}
	foldErr(t, "a fragment continuing no call", orphan, compact.Options{}, compact.ErrToolCall)
}

// TestFoldBadArguments: arguments that are not JSON fail a normal fold;
// an interrupted fold keeps them in extra.partial_arguments, gives the
// call "{}" and answers every call with an interrupted tool_result.
func TestFoldBadArguments(t *testing.T) {
	chunks := []events.Event{
		chunk(0, 1, "Checking"),
		callChunk(1, 2, events.ToolCall{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}),
		callChunk(2, 3, events.ToolCall{ID: "call_2", Name: "get_time", Arguments: `{"tz":"C`}),
	}
	foldErr(t, "cut-off arguments", chunks, compact.Options{}, compact.ErrToolCall)
	foldErr(t, "cut-off arguments, stop reason given", chunks, compact.Options{StopReason: "tool_calls"}, compact.ErrToolCall)

	msg, rest := mustFold(t, chunks, compact.Options{Interrupted: true})
	if msg.StopReason != compact.StopInterrupted {
		t.Errorf("stop reason %q, want %q", msg.StopReason, compact.StopInterrupted)
	}
	if msg.Text() != "Checking" {
		t.Errorf("text %q, want %q", msg.Text(), "Checking")
	}
	want := []events.ToolCall{
		{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`},
		{ID: "call_2", Name: "get_time", Arguments: `{}`},
	}
	if !slices.Equal(msg.ToolCalls, want) {
		t.Errorf("tool calls %+v, want %+v", msg.ToolCalls, want)
	}
	partial, _ := msg.Extra["partial_arguments"].(map[string]any)
	if len(partial) != 1 || partial["call_2"] != `{"tz":"C` {
		t.Errorf("extra.partial_arguments = %v, want {call_2: %q}", msg.Extra["partial_arguments"], `{"tz":"C`)
	}
	if b, _ := msg.ExtraBool("interrupted"); !b {
		t.Errorf("extra.interrupted = %v, want true", msg.Extra["interrupted"])
	}
	if len(rest) != 2 {
		t.Fatalf("%d events after the message, want a tool_result per call", len(rest))
	}
	for i, r := range rest {
		if r.Type != events.TypeToolResult || r.ToolCallID != want[i].ID {
			t.Errorf("event %d after the message: %s for %q, want a tool_result for %q", i+1, r.Type, r.ToolCallID, want[i].ID)
		}
		if b, _ := r.ExtraBool("interrupted"); !b {
			t.Errorf("tool_result for %q: extra.interrupted = %v, want true", r.ToolCallID, r.Extra["interrupted"])
		}
	}
}

// TestFoldInterrupted: an interrupted fold stops at the first gap, and
// its stop reason is "interrupted" unless one is given.
func TestFoldInterrupted(t *testing.T) {
	chunks := []events.Event{chunk(0, 1, "a"), chunk(1, 2, "b"), chunk(3, 4, "d"), chunk(1, 5, "b")}
	msg, rest := mustFold(t, chunks, compact.Options{Interrupted: true})
	if msg.Text() != "ab" {
		t.Errorf("text %q, want the chunks before the gap, %q", msg.Text(), "ab")
	}
	if msg.StopReason != compact.StopInterrupted {
		t.Errorf("stop reason %q, want %q", msg.StopReason, compact.StopInterrupted)
	}
	if len(rest) != 0 {
		t.Errorf("%d events after a message without calls, want none", len(rest))
	}
	wantChunks(t, msg, 2)

	msg, _ = mustFold(t, chunks[:2], compact.Options{Interrupted: true, StopReason: "length"})
	if msg.StopReason != "length" {
		t.Errorf("stop reason %q, want the given %q", msg.StopReason, "length")
	}
	msg, _ = mustFold(t, chunks[:2], compact.Options{})
	if msg.StopReason != "" {
		t.Errorf("normal fold: stop reason %q, want none", msg.StopReason)
	}
	if _, ok := msg.Extra["interrupted"]; ok {
		t.Errorf("normal fold: extra.interrupted set")
	}
}

// TestFoldModel: the model and provider come from the options, else from
// the latest chunk that has them.
func TestFoldModel(t *testing.T) {
	a, b := chunk(0, 1, "a"), chunk(1, 2, "b")
	a.Model, a.Provider = "m1", "p1"
	b.Model = "m2"
	msg, _ := mustFold(t, []events.Event{b, a}, compact.Options{})
	if msg.Model != "m2" || msg.Provider != "p1" {
		t.Errorf("model %q provider %q, want m2 and p1", msg.Model, msg.Provider)
	}
	msg, _ = mustFold(t, []events.Event{b, a}, compact.Options{Model: "given", Provider: "mine"})
	if msg.Model != "given" || msg.Provider != "mine" {
		t.Errorf("model %q provider %q, want the given ones", msg.Model, msg.Provider)
	}
}

// FuzzFold: the chunks of a reply, shuffled and with some sent twice,
// fold into the reply; without one index they fold into a gap error (or,
// for the last, a shorter reply), and an interrupted fold into the text
// before the gap; a repeated index with other text is a conflict.
//
// The input's bytes split at each 0 into chunk texts; seed drives the
// shuffle, the repeats and which index goes missing.
func FuzzFold(f *testing.F) {
	f.Add([]byte("hello\x00 \x00world"), uint64(1))
	f.Add([]byte("a"), uint64(7))
	f.Add([]byte("\x00\x00\x00"), uint64(3))
	f.Add([]byte("The quick\x00 brown fox\x00 jumps over\x00 the lazy\x00 dog\x00."), uint64(42))
	f.Add([]byte("é\x00日本\x00\xff\xfe"), uint64(99))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		parts := strings.Split(string(data), "\x00")
		if len(parts) > 256 {
			parts = parts[:256]
		}
		n := len(parts)
		want := strings.Join(parts, "")
		rng := rand.New(rand.NewPCG(seed, seed>>32|1))

		// Each chunk once, plus repeats, in a random order; seqs as a
		// store would assign them in arrival order.
		var sent []int
		for i := range n {
			sent = append(sent, i)
			for rng.IntN(4) == 0 {
				sent = append(sent, i)
			}
		}
		rng.Shuffle(len(sent), func(i, j int) { sent[i], sent[j] = sent[j], sent[i] })
		build := func(skip int) []events.Event {
			var out []events.Event
			for k, i := range sent {
				if i != skip {
					out = append(out, chunk(i, int64(k+1), parts[i]))
				}
			}
			return out
		}

		out, err := compact.Fold(build(-1), compact.Options{})
		if err != nil {
			t.Fatalf("Fold of %d chunks (%d sent): %v", n, len(sent), err)
		}
		if got := out[0].Text(); got != want {
			t.Fatalf("Fold: text %q, want %q", got, want)
		}
		if c, _ := out[0].ExtraInt("chunks"); c != int64(n) {
			t.Fatalf("Fold: extra.chunks %d, want %d", c, n)
		}

		// Without index k.
		k := rng.IntN(n)
		chunks := build(k)
		out, err = compact.Fold(chunks, compact.Options{})
		if k == n-1 {
			// The last chunk missing cannot be told from a shorter reply.
			if err != nil {
				t.Fatalf("Fold without the last chunk: %v", err)
			}
			if got, w := out[0].Text(), strings.Join(parts[:k], ""); got != w {
				t.Fatalf("Fold without the last chunk: text %q, want %q", got, w)
			}
		} else {
			var ge *compact.GapError
			if !errors.As(err, &ge) || !errors.Is(err, compact.ErrGap) {
				t.Fatalf("Fold without chunk %d of %d: %v, want a *GapError", k, n, err)
			}
			if ge.Missing != k {
				t.Fatalf("Fold without chunk %d of %d: GapError.Missing = %d", k, n, ge.Missing)
			}
		}
		out, err = compact.Fold(chunks, compact.Options{Interrupted: true})
		if err != nil {
			t.Fatalf("interrupted Fold without chunk %d: %v", k, err)
		}
		if got, w := out[0].Text(), strings.Join(parts[:k], ""); got != w {
			t.Fatalf("interrupted Fold without chunk %d: text %q, want %q", k, got, w)
		}

		// Index k again with other text.
		chunks = append(build(-1), chunk(k, int64(len(sent)+1), parts[k]+"~"))
		rng.Shuffle(len(chunks), func(i, j int) { chunks[i], chunks[j] = chunks[j], chunks[i] })
		if _, err := compact.Fold(chunks, compact.Options{}); !errors.Is(err, compact.ErrIndexConflict) {
			t.Fatalf("Fold with index %d twice, other text: %v, want ErrIndexConflict", k, err)
		}
	})
}

// TestFold_InterruptedMalformed: an interrupted stream whose tool-call
// fragments cannot make a valid call still folds (a sweep must never fail
// forever), keeping what it could not place in extra; uninterrupted, the
// same chunks are an error.
func TestFold_InterruptedMalformed(t *testing.T) {
	textCall := func(index int, seq int64, text string, frag events.ToolCall) events.Event {
		ev := callChunk(index, seq, frag)
		ev.Content = events.NewText(text)
		return ev
	}
	chunks := []events.Event{
		callChunk(0, 1, events.ToolCall{Arguments: `{"orphan":`}),
		textCall(1, 2, "text ", events.ToolCall{ID: "call_noname", Arguments: `{"a":1}`}),
		textCall(2, 3, "more", events.ToolCall{ID: "call_ok", Name: "f", Arguments: `{}`}),
	}
	if _, err := compact.Fold(chunks, compact.Options{}); !errors.Is(err, compact.ErrToolCall) {
		t.Errorf("uninterrupted fold: %v, want ErrToolCall", err)
	}
	evs, err := compact.Fold(chunks, compact.Options{Interrupted: true})
	if err != nil {
		t.Fatal(err)
	}
	msg := evs[0]
	msg.ConversationID = "c" // the store sets it
	if err := msg.Validate(); err != nil {
		t.Fatalf("the interrupted message does not validate: %v", err)
	}
	if msg.Text() != "text more" || len(msg.ToolCalls) != 1 || msg.ToolCalls[0].ID != "call_ok" {
		t.Errorf("message %q with calls %+v, want the text and only call_ok", msg.Text(), msg.ToolCalls)
	}
	if n, _ := msg.ExtraInt("dropped_fragments"); n != 1 {
		t.Errorf("dropped_fragments = %d, want 1", n)
	}
	if inc, ok := msg.Extra["incomplete_tool_calls"].([]any); !ok || len(inc) != 1 {
		t.Errorf("incomplete_tool_calls = %v, want the nameless call", msg.Extra["incomplete_tool_calls"])
	}
	if len(evs) != 2 || evs[1].ToolCallID != "call_ok" {
		t.Errorf("want one interrupted result, for call_ok: %+v", evs[1:])
	}
}
