package compact_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/internal/storetest"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
)

// open opens a fresh store of backend b, closed when the test ends.
func open(t testing.TB, b storetest.Backend) repo.Repo {
	t.Helper()
	return b.Open(t)
}

func user(conv, rid, text string) events.Event {
	return events.Event{ConversationID: conv, Type: events.TypeUserMessage, RequestID: rid, Content: events.NewText(text)}
}

// mustAppend appends ev, which must be new.
func mustAppend(t testing.TB, r repo.Repo, ev events.Event) events.Event {
	t.Helper()
	res, err := r.Append(context.Background(), ev, repo.AppendOptions{})
	if err != nil || res.Outcome != repo.Appended {
		t.Fatalf("Append(%s %q): %v %v, want appended", ev.Type, ev.RequestID, res.Outcome, err)
	}
	return res.Event
}

// begin begins the turn of user request urid with lease, which must start
// as attempt.
func begin(t testing.TB, r repo.Repo, conv, urid string, attempt int, lease time.Duration) repo.TurnState {
	t.Helper()
	st, err := r.BeginTurn(context.Background(), repo.BeginTurn{UserMessage: user(conv, urid, "question "+urid), Lease: lease})
	if err != nil || st.Status != repo.TurnStarted || st.Attempt != attempt {
		t.Fatalf("BeginTurn(%q, %q) = %s attempt %d, %v; want started attempt %d", conv, urid, st.Status, st.Attempt, err, attempt)
	}
	return st
}

func count(t testing.TB, r repo.Repo) int {
	t.Helper()
	n := 0
	for _, err := range r.All(context.Background(), 0) {
		if err != nil {
			t.Fatalf("All: %v", err)
		}
		n++
	}
	return n
}

func after(t testing.TB, r repo.Repo, conv string, seq int64) []events.Event {
	t.Helper()
	var out []events.Event
	for e, err := range r.Events(context.Background(), conv, repo.Range{AfterSeq: seq}) {
		if err != nil {
			t.Fatalf("Events(%q): %v", conv, err)
		}
		out = append(out, e)
	}
	return out
}

func reply(t testing.TB, r repo.Repo, conv, urid string) events.Event {
	t.Helper()
	ev, err := r.ByRequestID(context.Background(), conv, repo.ReplyRequestID(urid))
	if err != nil {
		t.Fatalf("the reply to %q in %q: %v", urid, conv, err)
	}
	return ev
}

// TestSweep: streams that stopped are finished as interrupted with what
// they have, their tool calls answered; finished streams and fresh ones
// are left alone, and a second sweep finds nothing.
func TestSweep(t *testing.T) { storetest.Run(t, testSweep) }

func testSweep(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	r := open(t, b)

	// A stream without a turn, cut off in the middle of a tool call.
	mustAppend(t, r, user("c", "u1", "weather in Oslo?"))
	mustAppend(t, r, compact.Chunk("c", "u1", 0, 0, "Let me check. "))
	frag := compact.Chunk("c", "u1", 0, 1, "")
	frag.Content = nil
	frag.ToolCalls = []events.ToolCall{{ID: "call_1", Name: "get_weather"}}
	mustAppend(t, r, frag)
	frag = compact.Chunk("c", "u1", 0, 2, "")
	frag.Content = nil
	frag.ToolCalls = []events.ToolCall{{Arguments: `{"ci`}}
	mustAppend(t, r, frag)

	// A turn's stream, cut off: its holder's lease lapses below.
	begin(t, r, "d", "u2", 1, 100*time.Millisecond)
	mustAppend(t, r, compact.Chunk("d", "u2", 1, 0, "Partial "))
	mustAppend(t, r, compact.Chunk("d", "u2", 1, 1, "answer"))

	// A turn whose holder is alive (its lease is live), quiet for now.
	begin(t, r, "d", "u4", 1, time.Minute)
	mustAppend(t, r, compact.Chunk("d", "u4", 1, 0, "Thinking"))

	// A turn finished normally.
	begin(t, r, "c", "u3", 1, time.Minute)
	mustAppend(t, r, compact.Chunk("c", "u3", 1, 0, "Done."))
	done, err := compact.Finish(ctx, r, "c", "u3", 1, compact.Options{StopReason: "stop"})
	if err != nil || done.Outcome != repo.Appended {
		t.Fatalf("Finish(u3): %v %v", done.Outcome, err)
	}
	n := count(t, r)
	time.Sleep(300 * time.Millisecond) // u2's lease lapses

	// Nothing has been idle for an hour.
	res, err := compact.Sweep(ctx, r, time.Hour, time.Now())
	if err != nil || res.Finalised != 0 || res.Skipped != 0 || res.Failed != 0 {
		t.Fatalf("Sweep(idle 1h) = %+v, %v; want nothing done", res, err)
	}
	if got := count(t, r); got != n {
		t.Fatalf("Sweep(idle 1h) wrote %d events", got-n)
	}

	res, err = compact.Sweep(ctx, r, 0, time.Now().Add(time.Second))
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if res.Finalised != 2 || res.Failed != 0 || res.Skipped != 0 {
		t.Fatalf("Sweep = %+v, want 2 streams finalised", res)
	}
	// u1: its message, then a result for its call; u2: its message.
	if got := count(t, r); got != n+3 {
		t.Errorf("the sweep wrote %d events, want 3", got-n)
	}

	msg := reply(t, r, "c", "u1")
	if msg.Type != events.TypeAssistantMessage || msg.StopReason != compact.StopInterrupted {
		t.Errorf("u1: %s with stop reason %q, want an assistant_message, %q", msg.Type, msg.StopReason, compact.StopInterrupted)
	}
	if msg.Text() != "Let me check. " {
		t.Errorf("u1: text %q, want the content so far", msg.Text())
	}
	if len(msg.ToolCalls) != 1 || msg.ToolCalls[0] != (events.ToolCall{ID: "call_1", Name: "get_weather", Arguments: "{}"}) {
		t.Errorf("u1: tool calls %+v, want call_1 get_weather with arguments {}", msg.ToolCalls)
	}
	if p, _ := msg.Extra["partial_arguments"].(map[string]any); p["call_1"] != `{"ci` {
		t.Errorf("u1: extra.partial_arguments = %v, want call_1: %q", msg.Extra["partial_arguments"], `{"ci`)
	}
	rest := after(t, r, "c", msg.Seq)
	var result *events.Event
	for i, e := range rest {
		if e.Type == events.TypeToolResult && e.ToolCallID == "call_1" {
			result = &rest[i]
		}
	}
	if result == nil {
		t.Errorf("u1: no tool_result for call_1 after the message (seq %d): %d events after it", msg.Seq, len(rest))
	} else if b, _ := result.ExtraBool("interrupted"); !b {
		t.Errorf("u1: the tool_result's extra.interrupted = %v, want true", result.Extra["interrupted"])
	}

	msg2 := reply(t, r, "d", "u2")
	if msg2.StopReason != compact.StopInterrupted || msg2.Text() != "Partial answer" {
		t.Errorf("u2: stop reason %q text %q, want %q and %q", msg2.StopReason, msg2.Text(), compact.StopInterrupted, "Partial answer")
	}
	if a, _ := msg2.ExtraInt("attempt"); a != 1 {
		t.Errorf("u2: extra.attempt = %v, want 1 (the attempt whose chunks it folds)", msg2.Extra["attempt"])
	}
	st, err := r.BeginTurn(ctx, repo.BeginTurn{UserMessage: user("d", "u2", "question u2"), Lease: time.Minute})
	if err != nil || st.Status != repo.TurnCompleted || st.Reply == nil || st.Reply.ID != msg2.ID {
		t.Errorf("BeginTurn(u2) after the sweep = %s, %v; want completed with the interrupted reply", st.Status, err)
	}
	// The holder, back too late: its chunks are refused, its finish gets
	// the interrupted message.
	_, err = r.Append(ctx, compact.Chunk("d", "u2", 1, 2, " more"), repo.AppendOptions{})
	if !errors.Is(err, repo.ErrStaleAttempt) {
		t.Errorf("the holder's chunk after the sweep: %v, want ErrStaleAttempt", err)
	}
	late, err := compact.Finish(ctx, r, "d", "u2", 1, compact.Options{StopReason: "stop"})
	if err != nil || late.Outcome != repo.Duplicate || late.Event.ID != msg2.ID {
		t.Errorf("the holder's finish after the sweep: %v %v, want the interrupted message as a duplicate", late.Outcome, err)
	}

	// The live turn is untouched: its holder goes on and finishes.
	if _, err := r.ByRequestID(ctx, "d", repo.ReplyRequestID("u4")); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("u4, whose holder's lease is live, has a reply after the sweep: %v", err)
	}
	mustAppend(t, r, compact.Chunk("d", "u4", 1, 1, " done"))
	if res, err := compact.Finish(ctx, r, "d", "u4", 1, compact.Options{StopReason: "stop"}); err != nil || res.Event.Text() != "Thinking done" || res.Event.StopReason != "stop" {
		t.Errorf("u4's holder's finish after the sweep: %q %q, %v; want %q, stop", res.Event.Text(), res.Event.StopReason, err, "Thinking done")
	}

	// The finished stream is untouched.
	if got := reply(t, r, "c", "u3"); got.ID != done.Event.ID || got.StopReason != "stop" {
		t.Errorf("u3's reply changed: %s stop reason %q", got.ID, got.StopReason)
	}

	// The chunks stay for replay.
	deltas := 0
	for e, err := range r.All(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Type == events.TypeAssistantDelta {
			deltas++
		}
	}
	if deltas != 8 {
		t.Errorf("%d chunks left after the sweep, want all 8", deltas)
	}

	n = count(t, r)
	res, err = compact.Sweep(ctx, r, 0, time.Now().Add(time.Second))
	if err != nil || res.Finalised != 0 || res.Failed != 0 {
		t.Errorf("second Sweep = %+v, %v; want nothing finalised", res, err)
	}
	if got := count(t, r); got != n {
		t.Errorf("second Sweep wrote %d events", got-n)
	}

	// What the model sees of the swept conversations is a request both
	// providers accept: the interrupted tool call is answered.
	for _, conv := range []string{"c", "d"} {
		c, err := projection.Read(ctx, r, conv, projection.Options{Unanswered: projection.PolicyDropUnanswered})
		if err != nil {
			t.Fatal(err)
		}
		if err := projection.CheckOpenAI(c.OpenAI()); err != nil {
			t.Errorf("conversation %s after the sweep: OpenAI request invalid: %v", conv, err)
		}
		if err := projection.CheckAnthropic(c.Anthropic()); err != nil {
			t.Errorf("conversation %s after the sweep: Anthropic request invalid: %v", conv, err)
		}
		if conv == "c" {
			// The log itself answers call_1 (no synthetic result needed,
			// even under the drop policy): the call stays, answered.
			found := false
			for _, m := range c.Messages {
				if m.ToolCallID == "call_1" && !m.Synthetic {
					found = true
				}
			}
			if !found {
				t.Errorf("conversation c after the sweep: call_1 has no recorded interrupted result in the projection")
			}
		}
	}
}

// TestFinishGap: a stream with a missing chunk does not finish (nothing is
// written) until the chunk arrives.
func TestFinishGap(t *testing.T) { storetest.Run(t, testFinishGap) }

func testFinishGap(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	r := open(t, b)
	begin(t, r, "c", "u1", 1, time.Minute)
	mustAppend(t, r, compact.Chunk("c", "u1", 1, 0, "a"))
	mustAppend(t, r, compact.Chunk("c", "u1", 1, 2, "c"))
	head, _ := r.Head(ctx, "c")
	_, err := compact.Finish(ctx, r, "c", "u1", 1, compact.Options{})
	var ge *compact.GapError
	if !errors.As(err, &ge) || ge.Missing != 1 {
		t.Fatalf("Finish with index 1 missing: %v, want a *GapError for index 1", err)
	}
	if h, _ := r.Head(ctx, "c"); h != head {
		t.Errorf("a failed finish moved the head from %d to %d", head, h)
	}
	mustAppend(t, r, compact.Chunk("c", "u1", 1, 1, "b"))
	res, err := compact.Finish(ctx, r, "c", "u1", 1, compact.Options{})
	if err != nil || res.Event.Text() != "abc" {
		t.Fatalf("Finish after the chunk arrived: %q, %v; want %q", res.Event.Text(), err, "abc")
	}
}
