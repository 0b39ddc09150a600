// Package projection builds what the model sees from a conversation's log:
// the LLM-visible conversation, in the OpenAI chat-completions and the
// Anthropic messages shapes, as of any seq, windowed to the most recent
// turns.
//
// # What the model sees
//
// A conversation's events, in seq order up to Options.AsOfSeq, become
// messages: user_message, assistant_message and tool_result events, and
// system_update events whose extra.visible_to_model is true. The system
// prompt is Options.System, else the latest system_prompt_set (or the
// extra.system of conversation_started) before the view's end; it always
// comes first. A conversation_cleared hides everything before it; a
// message_retracted hides the message it names (extra.retracted_seq).
// Streamed chunks, lifecycle events and unknown types never reach the
// model.
//
// # Always a valid request
//
// Every assistant tool call is followed by one result for each of its ids,
// in the order of the calls; a tool result that answers no earlier call,
// or answers one already answered, is left out. A tool call without a
// result is answered, by default, with a synthetic result saying it was
// interrupted (PolicyAnswerInterrupted), or dropped with its call
// (PolicyDropUnanswered); the assistant message then left with nothing is
// dropped too.
//
// # Windows
//
// A turn is a user message and everything after it up to the next user
// message. Windows keep the most recent whole turns whose messages fit
// MaxMessages, MaxTurns and MaxTokens (counted by Options.Counter), so a
// window never starts on a tool result or splits a call from its results.
// The newest turn is always kept, even when it alone is over a limit.
package projection

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"

	"github.com/chatlog/chatlog/events"
)

// Message is one message of the LLM-visible conversation, provider-neutral.
type Message struct {
	Role       events.Role
	Content    *events.Content
	ToolCalls  []events.ToolCall
	ToolCallID string
	// Reasoning is assistant reasoning text providers ask to be replayed
	// (extra.reasoning), and ReasoningBlocks the provider's raw reasoning
	// blocks (extra.reasoning_blocks, e.g. Anthropic thinking blocks with
	// signatures), kept on assistant messages.
	Reasoning       string
	ReasoningBlocks json.RawMessage
	// Seq is the seq of the event the message comes from (0: synthetic).
	Seq int64
	// Synthetic marks a result made up for an unanswered tool call.
	Synthetic bool
}

// Conversation is the LLM-visible conversation.
type Conversation struct {
	// System is the system prompt ("" when none).
	System string
	// Messages are the messages after the system prompt, in order.
	Messages []Message
	// AsOfSeq is the last seq the view includes.
	AsOfSeq int64
}

// Policy says what to do with a tool call that has no result.
type Policy int

// Unanswered tool-call policies.
const (
	// PolicyAnswerInterrupted answers it with a synthetic result saying
	// the call was interrupted. The default.
	PolicyAnswerInterrupted Policy = iota
	// PolicyDropUnanswered removes the call (and its message when nothing
	// else is left in it).
	PolicyDropUnanswered
)

// InterruptedResult is the text of a synthetic tool result.
const InterruptedResult = "interrupted: no result was recorded for this tool call"

// Counter counts the tokens of a message; Options.Counter plugs in a real
// tokenizer.
type Counter func(Message) int

// ApproxTokens is the default Counter: about four bytes of text per token,
// plus a few for the message's framing.
func ApproxTokens(m Message) int {
	n := len(m.Content.PlainText())
	if m.Content.IsParts() {
		for _, p := range m.Content.Parts {
			if p.Type != "text" {
				n += 1000 // images and files: a flat estimate
			}
		}
	}
	for _, tc := range m.ToolCalls {
		n += len(tc.Name) + len(tc.Arguments) + len(tc.ID)
	}
	n += len(m.Reasoning)
	return n/4 + 4
}

// Options shape a projection. The zero value is the whole conversation.
type Options struct {
	// AsOfSeq ends the view at this seq (0: the whole log).
	AsOfSeq int64
	// System, when set, is the system prompt, overriding the log's.
	System string
	// MaxMessages, MaxTurns and MaxTokens bound the window (0: no bound).
	MaxMessages int
	MaxTurns    int
	MaxTokens   int
	// Counter counts tokens for MaxTokens. Default ApproxTokens.
	Counter Counter
	// Unanswered is the policy for tool calls without results.
	Unanswered Policy
}

// Build projects a conversation's events (in seq order) to what the model
// sees. It is a pure function of its arguments.
func Build(evs []events.Event, opts Options) Conversation {
	var conv Conversation
	system := ""
	var msgs []Message
	retracted := map[int64]bool{}
	for _, e := range evs {
		if opts.AsOfSeq > 0 && e.Seq > opts.AsOfSeq {
			break
		}
		conv.AsOfSeq = e.Seq
		switch e.Type {
		case events.TypeConversationStarted:
			if s, ok := e.ExtraString("system"); ok {
				system = s
			}
		case events.TypeSystemPromptSet:
			system = e.Text()
		case events.TypeConversationCleared:
			msgs = msgs[:0]
		case events.TypeMessageRetracted:
			if n, ok := e.ExtraInt("retracted_seq"); ok {
				retracted[n] = true
			}
		case events.TypeUserMessage:
			msgs = append(msgs, Message{Role: events.RoleUser, Content: e.Content, Seq: e.Seq})
		case events.TypeAssistantMessage:
			m := Message{Role: events.RoleAssistant, Content: e.Content, ToolCalls: e.ToolCalls, Seq: e.Seq}
			m.Reasoning, _ = e.ExtraString("reasoning")
			if b, ok := e.Extra["reasoning_blocks"]; ok {
				m.ReasoningBlocks, _ = json.Marshal(b)
			}
			msgs = append(msgs, m)
		case events.TypeToolResult:
			msgs = append(msgs, Message{Role: events.RoleTool, Content: e.Content, ToolCallID: e.ToolCallID, Seq: e.Seq})
		case events.TypeSystemUpdate:
			if v, _ := e.ExtraBool("visible_to_model"); v {
				msgs = append(msgs, Message{Role: events.RoleSystem, Content: e.Content, Seq: e.Seq})
			}
		}
	}
	if len(retracted) > 0 {
		msgs = slices.DeleteFunc(msgs, func(m Message) bool { return retracted[m.Seq] })
	}
	conv.System = cmp.Or(opts.System, system)
	conv.Messages = window(pairToolCalls(msgs, opts.Unanswered), opts, conv.System)
	return conv
}

// pairToolCalls puts each assistant message's tool results right after it,
// in call order, drops results that answer nothing, and applies the policy
// to calls without a result.
func pairToolCalls(msgs []Message, policy Policy) []Message {
	// Each tool result answers the nearest earlier unanswered call with
	// its id.
	owner := map[string]int{}      // call id -> index of its assistant message, while open
	results := map[int][]Message{} // assistant index -> its results
	answered := map[int]map[string]bool{}
	var out []Message
	for _, m := range msgs {
		switch {
		case m.Role == events.RoleAssistant:
			i := len(out)
			out = append(out, m)
			for _, tc := range m.ToolCalls {
				owner[tc.ID] = i
			}
			answered[i] = map[string]bool{}
		case m.Role == events.RoleTool:
			i, ok := owner[m.ToolCallID]
			if !ok || answered[i][m.ToolCallID] {
				continue // an orphan, or a second answer
			}
			answered[i][m.ToolCallID] = true
			results[i] = append(results[i], m)
		default:
			out = append(out, m)
		}
	}
	final := make([]Message, 0, len(out)+len(results))
	for i, m := range out {
		if m.Role != events.RoleAssistant || len(m.ToolCalls) == 0 {
			final = append(final, m)
			continue
		}
		byID := map[string]Message{}
		for _, r := range results[i] {
			byID[r.ToolCallID] = r
		}
		var calls []events.ToolCall
		var answers []Message
		for _, tc := range m.ToolCalls {
			r, ok := byID[tc.ID]
			switch {
			case ok:
				answers = append(answers, r)
			case policy == PolicyDropUnanswered:
				continue
			default:
				answers = append(answers, Message{Role: events.RoleTool, ToolCallID: tc.ID,
					Content: events.NewText(InterruptedResult), Synthetic: true})
			}
			calls = append(calls, tc)
		}
		m.ToolCalls = calls
		if len(calls) == 0 && m.Content.PlainText() == "" && !m.Content.IsParts() {
			continue // nothing left of it
		}
		final = append(final, m)
		final = append(final, answers...)
	}
	return final
}

// window keeps the most recent whole turns within the bounds; the system
// prompt counts against the token budget.
func window(msgs []Message, opts Options, system string) []Message {
	if opts.MaxMessages <= 0 && opts.MaxTurns <= 0 && opts.MaxTokens <= 0 {
		return msgs
	}
	count := opts.Counter
	if count == nil {
		count = ApproxTokens
	}
	// Turn starts: each user message, and the first message (messages
	// before the first user message form a turn of their own).
	var starts []int
	for i, m := range msgs {
		if i == 0 || m.Role == events.RoleUser {
			starts = append(starts, i)
		}
	}
	keepFrom := len(msgs)
	tokens, turns := 0, 0
	if system != "" && opts.MaxTokens > 0 {
		tokens = count(Message{Role: events.RoleSystem, Content: events.NewText(system)})
	}
	for t := len(starts) - 1; t >= 0; t-- {
		from := starts[t]
		turnTokens := 0
		if opts.MaxTokens > 0 {
			for _, m := range msgs[from:keepFrom] {
				turnTokens += count(m)
			}
		}
		fits := (opts.MaxMessages <= 0 || len(msgs)-from <= opts.MaxMessages) &&
			(opts.MaxTurns <= 0 || turns+1 <= opts.MaxTurns) &&
			(opts.MaxTokens <= 0 || tokens+turnTokens <= opts.MaxTokens)
		if !fits && keepFrom < len(msgs) {
			break // the newest turn is kept whatever its size
		}
		keepFrom, tokens, turns = from, tokens+turnTokens, turns+1
		if !fits {
			break
		}
	}
	return msgs[keepFrom:]
}

// systemText joins the system prompt with the model-visible system updates
// (for shapes that allow only one system prompt).
func systemText(prompt string, updates []string) string {
	parts := make([]string, 0, len(updates)+1)
	if prompt != "" {
		parts = append(parts, prompt)
	}
	parts = append(parts, updates...)
	return strings.Join(parts, "\n\n")
}
