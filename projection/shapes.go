package projection

import (
	"encoding/json"
	"strings"

	"github.com/chatlog/chatlog/events"
)

// OpenAIMessage is one message of an OpenAI chat-completions request.
type OpenAIMessage struct {
	Role string `json:"role"`
	// Content is a string, an array of parts, or null (an assistant
	// message with only tool calls).
	Content          json.RawMessage  `json:"content"`
	ToolCalls        []OpenAIToolCall `json:"tool_calls,omitempty"`
	ToolCallID       string           `json:"tool_call_id,omitempty"`
	ReasoningContent string           `json:"reasoning_content,omitempty"`
}

// OpenAIToolCall is a tool call in the OpenAI shape.
type OpenAIToolCall struct {
	ID       string         `json:"id"`
	Type     string         `json:"type"`
	Function OpenAIFunction `json:"function"`
}

// OpenAIFunction names the function a tool call runs.
type OpenAIFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// OpenAI returns the conversation as an OpenAI chat-completions messages
// array, the system prompt first.
func (c Conversation) OpenAI() []OpenAIMessage {
	out := make([]OpenAIMessage, 0, len(c.Messages)+1)
	if c.System != "" {
		out = append(out, OpenAIMessage{Role: "system", Content: jsonString(c.System)})
	}
	for _, m := range c.Messages {
		om := OpenAIMessage{Role: string(m.Role), ToolCallID: m.ToolCallID, ReasoningContent: m.Reasoning}
		switch {
		case m.Content.IsParts():
			om.Content = openAIParts(m.Content.Parts)
		case m.Content == nil && m.Role == events.RoleAssistant && len(m.ToolCalls) > 0:
			om.Content = json.RawMessage("null")
		default:
			om.Content = jsonString(m.Content.PlainText())
		}
		for _, tc := range m.ToolCalls {
			args := tc.Arguments
			if args == "" {
				args = "{}"
			}
			om.ToolCalls = append(om.ToolCalls, OpenAIToolCall{ID: tc.ID, Type: "function",
				Function: OpenAIFunction{Name: tc.Name, Arguments: args}})
		}
		out = append(out, om)
	}
	return out
}

func openAIParts(parts []events.Part) json.RawMessage {
	out := make([]json.RawMessage, 0, len(parts))
	for _, p := range parts {
		if p.Type == "image" {
			// An Anthropic-style image: OpenAI takes it as image_url.
			if url, ok := imageURL(p); ok {
				out = append(out, mustJSON(map[string]any{"type": "image_url", "image_url": map[string]string{"url": url}}))
				continue
			}
		}
		out = append(out, mustJSON(p))
	}
	return mustJSON(out)
}

// imageURL turns an Anthropic image source into a URL (data: for base64).
func imageURL(p events.Part) (string, bool) {
	var src struct {
		Type      string `json:"type"`
		MediaType string `json:"media_type"`
		Data      string `json:"data"`
		URL       string `json:"url"`
	}
	if err := json.Unmarshal(p.Fields["source"], &src); err != nil {
		return "", false
	}
	switch src.Type {
	case "base64":
		return "data:" + src.MediaType + ";base64," + src.Data, true
	case "url":
		return src.URL, true
	}
	return "", false
}

// AnthropicRequest is the conversation in the Anthropic messages shape.
type AnthropicRequest struct {
	System   string             `json:"system,omitempty"`
	Messages []AnthropicMessage `json:"messages"`
}

// AnthropicMessage is one message: a role and content blocks.
type AnthropicMessage struct {
	Role    string            `json:"role"`
	Content []json.RawMessage `json:"content"`
}

// Anthropic returns the conversation in the Anthropic messages shape: the
// system prompt (with model-visible system updates appended) in system,
// tool calls as tool_use blocks, results as tool_result blocks in user
// messages, consecutive messages of one role merged so roles alternate,
// and the first message a user message.
func (c Conversation) Anthropic() AnthropicRequest {
	var updates []string
	var msgs []AnthropicMessage
	add := func(role string, blocks ...json.RawMessage) {
		if len(blocks) == 0 {
			return
		}
		if n := len(msgs); n > 0 && msgs[n-1].Role == role {
			msgs[n-1].Content = append(msgs[n-1].Content, blocks...)
			return
		}
		msgs = append(msgs, AnthropicMessage{Role: role, Content: blocks})
	}
	for _, m := range c.Messages {
		switch m.Role {
		case events.RoleSystem:
			updates = append(updates, m.Content.PlainText())
		case events.RoleUser:
			add("user", anthropicContent(m.Content)...)
		case events.RoleTool:
			add("user", mustJSON(struct {
				Type      string `json:"type"`
				ToolUseID string `json:"tool_use_id"`
				Content   string `json:"content"`
			}{"tool_result", m.ToolCallID, m.Content.PlainText()}))
		case events.RoleAssistant:
			var blocks []json.RawMessage
			var thinking []json.RawMessage
			if json.Unmarshal(m.ReasoningBlocks, &thinking) == nil {
				blocks = append(blocks, thinking...)
			}
			blocks = append(blocks, anthropicContent(m.Content)...)
			for _, tc := range m.ToolCalls {
				input := json.RawMessage(tc.Arguments)
				if tc.Arguments == "" || !json.Valid(input) {
					input = json.RawMessage("{}")
				}
				blocks = append(blocks, mustJSON(struct {
					Type  string          `json:"type"`
					ID    string          `json:"id"`
					Name  string          `json:"name"`
					Input json.RawMessage `json:"input"`
				}{"tool_use", tc.ID, tc.Name, input}))
			}
			add("assistant", blocks...)
		}
	}
	// The first message must be the user's: drop leading assistant
	// messages and the results of their tool calls, again and again
	// while dropping results empties the user message that held them.
	dropped := map[string]bool{}
	for len(msgs) > 0 {
		if msgs[0].Role == "assistant" {
			for _, b := range msgs[0].Content {
				var tu struct{ Type, ID string }
				if json.Unmarshal(b, &tu) == nil && tu.Type == "tool_use" {
					dropped[tu.ID] = true
				}
			}
			msgs = msgs[1:]
			continue
		}
		var kept []json.RawMessage
		for _, b := range msgs[0].Content {
			var tr struct {
				Type      string `json:"type"`
				ToolUseID string `json:"tool_use_id"`
			}
			if json.Unmarshal(b, &tr) == nil && tr.Type == "tool_result" && dropped[tr.ToolUseID] {
				continue
			}
			kept = append(kept, b)
		}
		if len(kept) == 0 {
			msgs = msgs[1:]
			continue
		}
		msgs[0].Content = kept
		break
	}
	if msgs == nil {
		msgs = []AnthropicMessage{}
	}
	return AnthropicRequest{System: systemText(c.System, updates), Messages: msgs}
}

// anthropicContent turns content into Anthropic blocks; empty text, which
// the API refuses, becomes no block.
func anthropicContent(c *events.Content) []json.RawMessage {
	if !c.IsParts() {
		if t := c.PlainText(); strings.TrimSpace(t) != "" {
			return []json.RawMessage{textBlock(t)}
		}
		return nil
	}
	var out []json.RawMessage
	for _, p := range c.Parts {
		switch p.Type {
		case "text":
			if strings.TrimSpace(p.Text) != "" {
				out = append(out, textBlock(p.Text))
			}
		case "image_url":
			var iu struct {
				URL string `json:"url"`
			}
			if json.Unmarshal(p.Fields["image_url"], &iu) != nil {
				continue
			}
			if media, data, ok := strings.Cut(strings.TrimPrefix(iu.URL, "data:"), ";base64,"); ok && strings.HasPrefix(iu.URL, "data:") {
				out = append(out, mustJSON(map[string]any{"type": "image", "source": map[string]string{"type": "base64", "media_type": media, "data": data}}))
			} else {
				out = append(out, mustJSON(map[string]any{"type": "image", "source": map[string]string{"type": "url", "url": iu.URL}}))
			}
		default:
			out = append(out, mustJSON(p))
		}
	}
	return out
}

func textBlock(t string) json.RawMessage {
	return mustJSON(struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}{"text", t})
}

func jsonString(s string) json.RawMessage { return mustJSON(s) }

// mustJSON encodes values that cannot fail to encode (strings, parts
// validated on append, maps of strings).
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic("projection: encode: " + err.Error())
	}
	return b
}
