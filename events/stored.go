package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
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
				rest := append([]byte{'{'}, tail[1:]...)
				m, ok := parseFlatObject(rest)
				if !ok {
					var err error
					if m, err = decodeObject(rest); err != nil {
						return "", nil, err
					}
				}
				return rid, m, nil
			}
		}
	}
	m, ok := parseFlatObject(b)
	if !ok {
		var err error
		if m, err = decodeObject(b); err != nil {
			return "", nil, err
		}
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

// parseFlatObject reads the common shape of stored extra without a JSON
// decoder: one object whose values are strings without escapes, numbers,
// booleans or null (a chunk's user_request_id, attempt and index). It
// reports false for anything else, which the caller then decodes fully;
// what it returns equals what decodeObject would.
func parseFlatObject(b []byte) (map[string]any, bool) {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return nil, false
	}
	m := make(map[string]any, 4)
	i, n := 1, len(b)-1
	str := func() (string, bool) {
		if i >= n || b[i] != '"' {
			return "", false
		}
		j := i + 1
		for j < n && b[j] != '"' {
			if b[j] == '\\' || b[j] < 0x20 {
				return "", false
			}
			j++
		}
		if j >= n || !utf8.Valid(b[i+1:j]) {
			return "", false
		}
		s := string(b[i+1 : j])
		i = j + 1
		return s, true
	}
	for i < n {
		k, ok := str()
		if !ok || i >= n || b[i] != ':' {
			return nil, false
		}
		if _, dup := m[k]; dup {
			return nil, false // the decoder keeps the last; leave it to it
		}
		i++
		if i >= n {
			return nil, false
		}
		switch c := b[i]; {
		case c == '"':
			v, ok := str()
			if !ok {
				return nil, false
			}
			m[k] = v
		case c == '-' || (c >= '0' && c <= '9'):
			j := i
			for j < n && strings.IndexByte("+-.0123456789eE", b[j]) >= 0 {
				j++
			}
			num := json.Number(b[i:j])
			if !json.Valid([]byte(num)) {
				return nil, false
			}
			m[k] = num
			i = j
		case bytes.HasPrefix(b[i:n], []byte("true")):
			m[k], i = true, i+4
		case bytes.HasPrefix(b[i:n], []byte("false")):
			m[k], i = false, i+5
		case bytes.HasPrefix(b[i:n], []byte("null")):
			m[k], i = nil, i+4
		default:
			return nil, false // nested, or spaced: decode fully
		}
		switch {
		case i == n:
		case b[i] == ',' && i+1 < n:
			i++
		default:
			return nil, false
		}
	}
	return m, true
}
