package events

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Stored is an event's body in the form storage backends keep it, beside
// their columns for identity, position, type, role and time. It is shaped
// so that the common event, a plain-text message, needs no JSON to read
// back.
type Stored struct {
	// Text is the content when it is plain text; TextSet says it is.
	Text    string
	TextSet bool
	// PartsText is the text of multi-part content's text parts, joined
	// with newlines ("" for plain text): what search indexes.
	PartsText string
	// Body is the JSON of the rest of the payload: multi-part content,
	// tool calls, tool_call_id, provider, model, stop reason, usage and
	// raw. Nil when all of them are absent.
	Body []byte
	// Extra is the extra object as stored, request_id folded in so a
	// backend can index it; "{}" when empty.
	Extra []byte
	// ExtraJSON is the event's Extra alone (request_id excluded) as
	// encoding/json writes it (keys sorted); nil when empty. It is what
	// fingerprints hash (dedupe.OfEncoded).
	ExtraJSON []byte
}

// storedBody is the JSON shape of Stored.Body.
type storedBody struct {
	Content    *Content        `json:"content,omitempty"`
	ToolCalls  []ToolCall      `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
	Provider   string          `json:"provider,omitempty"`
	Model      string          `json:"model,omitempty"`
	StopReason string          `json:"stop_reason,omitempty"`
	Usage      *Usage          `json:"usage,omitempty"`
	Raw        json.RawMessage `json:"raw,omitempty"`
}

// EncodeStored encodes the event's body for a storage backend.
func (e *Event) EncodeStored() (Stored, error) {
	var s Stored
	b := storedBody{
		ToolCalls: e.ToolCalls, ToolCallID: e.ToolCallID, Provider: e.Provider,
		Model: e.Model, StopReason: e.StopReason, Usage: e.Usage, Raw: e.Raw,
	}
	if e.Content != nil {
		if e.Content.Parts == nil {
			s.Text, s.TextSet = e.Content.Text, true
		} else {
			b.Content = e.Content
			s.PartsText = e.Content.PlainText()
		}
	}
	if b.Content != nil || len(b.ToolCalls) > 0 || b.ToolCallID != "" || b.Provider != "" ||
		b.Model != "" || b.StopReason != "" || b.Usage != nil || len(b.Raw) > 0 {
		body, err := json.Marshal(b)
		if err != nil {
			return Stored{}, fmt.Errorf("encode body: %w", err)
		}
		s.Body = body
	}
	if len(e.Extra) > 0 {
		extra, err := json.Marshal(e.Extra)
		if err != nil {
			return Stored{}, fmt.Errorf("encode extra: %w", err)
		}
		s.ExtraJSON = extra
	}
	switch {
	case e.RequestID == "" && s.ExtraJSON == nil:
		s.Extra = []byte("{}")
	case e.RequestID == "":
		s.Extra = s.ExtraJSON
	default:
		// request_id first, then the other members: storage needs a
		// valid object, not sorted keys, and splicing saves encoding
		// the map a second time.
		rid, err := json.Marshal(e.RequestID)
		if err != nil {
			return Stored{}, fmt.Errorf("encode request_id: %w", err)
		}
		out := make([]byte, 0, len(storedRIDPrefix)+len(rid)+len(s.ExtraJSON)+1)
		out = append(append(out, `{"request_id":`...), rid...)
		if s.ExtraJSON == nil {
			out = append(out, '}')
		} else {
			out = append(append(out, ','), s.ExtraJSON[1:]...)
		}
		s.Extra = out
	}
	return s, nil
}

const storedRIDPrefix = `{"request_id":"`

// DecodeStored fills the body and extra of e from what EncodeStored wrote
// (text only when textSet).
func (e *Event) DecodeStored(text string, textSet bool, body, extra []byte) error {
	e.Content, e.ToolCalls, e.ToolCallID = nil, nil, ""
	e.Provider, e.Model, e.StopReason, e.Usage, e.Raw = "", "", "", nil, nil
	if len(body) > 0 {
		var b storedBody
		if err := json.Unmarshal(body, &b); err != nil {
			return fmt.Errorf("decode stored body: %w", err)
		}
		e.Content, e.ToolCalls, e.ToolCallID = b.Content, b.ToolCalls, b.ToolCallID
		e.Provider, e.Model, e.StopReason, e.Usage, e.Raw = b.Provider, b.Model, b.StopReason, b.Usage, b.Raw
	}
	if textSet {
		e.Content = &Content{Text: text}
	}
	rid, rest, err := decodeStoredExtra(extra)
	if err != nil {
		return fmt.Errorf("decode stored extra: %w", err)
	}
	e.RequestID, e.Extra = rid, rest
	return nil
}

// decodeStoredExtra splits a stored extra object into request_id and the
// other members. The common shapes, {} and {"request_id":"k"}, are read
// without a JSON decoder.
func decodeStoredExtra(b []byte) (string, map[string]any, error) {
	if len(b) == 0 || string(b) == "{}" {
		return "", nil, nil
	}
	if bytes.HasPrefix(b, []byte(storedRIDPrefix)) {
		v := b[len(storedRIDPrefix):]
		// Without a backslash before it, the first quote ends the key.
		if end := bytes.IndexByte(v, '"'); end >= 0 && bytes.IndexByte(v[:end], '\\') < 0 {
			rid, tail := string(v[:end]), v[end+1:]
			if string(tail) == "}" {
				return rid, nil, nil
			}
			if len(tail) > 1 && tail[0] == ',' {
				m, err := decodeObject(append([]byte{'{'}, tail[1:]...))
				if err != nil {
					return "", nil, err
				}
				return rid, m, nil
			}
		}
	}
	m, err := decodeObject(b)
	if err != nil {
		return "", nil, err
	}
	var rid string
	if v, ok := m["request_id"]; ok {
		rid, _ = v.(string)
		delete(m, "request_id")
	}
	if len(m) == 0 {
		m = nil
	}
	return rid, m, nil
}
