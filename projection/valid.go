package projection

import (
	"encoding/json"
	"fmt"
)

// CheckOpenAI reports the first way msgs would be refused as an OpenAI
// chat-completions request: a tool call not
// followed by exactly one result per id, a tool message that answers no
// call just made, an assistant message with neither content nor calls.
func CheckOpenAI(msgs []OpenAIMessage) error {
	var open map[string]bool // ids of the calls awaiting results
	for i, m := range msgs {
		if len(open) > 0 && m.Role != "tool" {
			return fmt.Errorf("message %d (%s): tool calls %v still await results", i, m.Role, keys(open))
		}
		switch m.Role {
		case "system", "user":
			// System messages may come anywhere (model-visible updates);
			// Build puts the prompt first.
		case "assistant":
			if string(m.Content) == "null" && len(m.ToolCalls) == 0 {
				return fmt.Errorf("message %d: assistant message with neither content nor tool calls", i)
			}
			open = map[string]bool{}
			for _, tc := range m.ToolCalls {
				if tc.ID == "" || tc.Function.Name == "" || !json.Valid([]byte(tc.Function.Arguments)) {
					return fmt.Errorf("message %d: malformed tool call %+v", i, tc)
				}
				if open[tc.ID] {
					return fmt.Errorf("message %d: tool call id %q twice", i, tc.ID)
				}
				open[tc.ID] = true
			}
		case "tool":
			if !open[m.ToolCallID] {
				return fmt.Errorf("message %d: tool result %q answers no pending call", i, m.ToolCallID)
			}
			delete(open, m.ToolCallID)
		default:
			return fmt.Errorf("message %d: unknown role %q", i, m.Role)
		}
	}
	if len(open) > 0 {
		return fmt.Errorf("the conversation ends with tool calls %v unanswered", keys(open))
	}
	return nil
}

// CheckAnthropic reports the first way r would be refused by the Anthropic
// messages API: roles not alternating from user, empty content, a
// tool_result that does not answer a tool_use of the message just before.
func CheckAnthropic(r AnthropicRequest) error {
	var uses map[string]bool
	for i, m := range r.Messages {
		want := "user"
		if i%2 == 1 {
			want = "assistant"
		}
		if m.Role != want {
			return fmt.Errorf("message %d: role %s, want %s (roles alternate from user)", i, m.Role, want)
		}
		if len(m.Content) == 0 {
			return fmt.Errorf("message %d: no content blocks", i)
		}
		next := map[string]bool{}
		for _, b := range m.Content {
			var blk struct {
				Type      string `json:"type"`
				ID        string `json:"id"`
				ToolUseID string `json:"tool_use_id"`
				Text      string `json:"text"`
			}
			if err := json.Unmarshal(b, &blk); err != nil {
				return fmt.Errorf("message %d: block is not an object: %v", i, err)
			}
			switch blk.Type {
			case "text":
				if blk.Text == "" {
					return fmt.Errorf("message %d: empty text block", i)
				}
			case "tool_use":
				if m.Role != "assistant" {
					return fmt.Errorf("message %d: tool_use in a %s message", i, m.Role)
				}
				next[blk.ID] = true
			case "tool_result":
				if m.Role != "user" || !uses[blk.ToolUseID] {
					return fmt.Errorf("message %d: tool_result %q answers no tool_use of the previous message", i, blk.ToolUseID)
				}
				delete(uses, blk.ToolUseID)
			}
		}
		if m.Role == "user" && len(uses) > 0 {
			return fmt.Errorf("message %d: tool_use %v of the previous message unanswered", i, keys(uses))
		}
		uses = next
	}
	if len(uses) > 0 {
		return fmt.Errorf("the conversation ends with tool_use %v unanswered", keys(uses))
	}
	return nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
