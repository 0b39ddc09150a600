package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// TimeFormat is how created_at is written: RFC 3339 in UTC with exactly
// nine fractional digits, so timestamps round-trip to the nanosecond and
// sort as text.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// FormatTime formats t as TimeFormat in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// wire is the JSON shape of an event. Fields whose decoding errors must name
// the field precisely are kept raw and parsed one by one.
type wire struct {
	ID             string          `json:"id,omitempty"`
	ConversationID string          `json:"conversation_id"`
	Seq            json.RawMessage `json:"seq,omitempty"`
	Pos            int64           `json:"pos,omitempty"`
	Type           Type            `json:"type"`
	SchemaVersion  int             `json:"schema_version,omitempty"`
	CreatedAt      string          `json:"created_at,omitempty"`
	Role           Role            `json:"role,omitempty"`
	Content        json.RawMessage `json:"content,omitempty"`
	ToolCalls      json.RawMessage `json:"tool_calls,omitempty"`
	ToolCallID     string          `json:"tool_call_id,omitempty"`
	Provider       string          `json:"provider,omitempty"`
	Model          string          `json:"model,omitempty"`
	StopReason     string          `json:"stop_reason,omitempty"`
	Usage          *Usage          `json:"usage,omitempty"`
	RequestID      string          `json:"request_id,omitempty"`
	Extra          json.RawMessage `json:"extra,omitempty"`
	Raw            json.RawMessage `json:"raw,omitempty"`
}

// Decode parses one event from JSON, upcasts legacy shapes to the current
// schema and normalises it (UTC timestamps; raw and unknown content-part
// members in the compact form the encoder writes; empty extra and tool_calls
// as nil), so Decode(MarshalJSON(e)) == e for a decoded e. It does
// not validate: call [Event.Validate] for that. Malformed input yields a
// *FieldError naming the field.
func Decode(data []byte) (Event, error) {
	var e Event
	err := e.UnmarshalJSON(data)
	return e, err
}

// UnmarshalJSON implements json.Unmarshaler with the rules of [Decode].
func (e *Event) UnmarshalJSON(data []byte) error {
	*e = Event{}
	if !utf8.Valid(data) {
		return &FieldError{Field: "event", Reason: fmt.Sprintf("invalid UTF-8 at byte %d", invalidUTF8Offset(data))}
	}
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		return decodeError(err)
	}
	e.ID = w.ID
	e.ConversationID = w.ConversationID
	e.Pos = w.Pos
	e.Type = w.Type
	e.SchemaVersion = w.SchemaVersion
	e.Role = w.Role
	e.ToolCallID = w.ToolCallID
	e.Provider = w.Provider
	e.Model = w.Model
	e.StopReason = w.StopReason
	e.Usage = w.Usage
	if len(w.Seq) > 0 && string(w.Seq) != "null" {
		n, err := strconv.ParseInt(string(w.Seq), 10, 64)
		if err != nil {
			return &FieldError{Field: "seq", Reason: "must be an integer"}
		}
		e.Seq = n
	}
	if w.CreatedAt != "" {
		t, err := time.Parse(time.RFC3339Nano, w.CreatedAt)
		if err != nil {
			return &FieldError{Field: "created_at", Reason: "must be an RFC 3339 timestamp"}
		}
		e.CreatedAt = t.UTC()
	}
	if len(w.Content) > 0 && string(w.Content) != "null" {
		var c Content
		if err := c.UnmarshalJSON(w.Content); err != nil {
			return &FieldError{Field: "content", Reason: err.Error()}
		}
		e.Content = &c
	}
	if len(w.ToolCalls) > 0 && string(w.ToolCalls) != "null" {
		if err := json.Unmarshal(w.ToolCalls, &e.ToolCalls); err != nil {
			return &FieldError{Field: "tool_calls", Reason: "must be an array of {id, name, arguments} objects with string members"}
		}
		if len(e.ToolCalls) == 0 {
			e.ToolCalls = nil // [] is "no tool calls", as storage keeps it
		}
	}
	if len(w.Extra) > 0 && string(w.Extra) != "null" {
		m, err := decodeObject(w.Extra)
		if err != nil {
			return &FieldError{Field: "extra", Reason: "must be a JSON object"}
		}
		if len(m) > 0 {
			e.Extra = m // {} is "no extra", as MarshalJSON writes it
		}
	}
	if len(w.Raw) > 0 && string(w.Raw) != "null" {
		raw, err := canonicalJSON(w.Raw)
		if err != nil {
			return &FieldError{Field: "raw", Reason: "must be valid JSON"}
		}
		e.Raw = raw
	}
	e.RequestID = w.RequestID
	if v, ok := e.Extra["request_id"]; ok {
		s, isString := v.(string)
		switch {
		case v == nil:
		case !isString:
			return &FieldError{Field: "extra.request_id", Reason: "must be a string"}
		case e.RequestID != "" && s != e.RequestID:
			return &FieldError{Field: "request_id", Reason: "differs from extra.request_id"}
		default:
			e.RequestID = s
		}
		delete(e.Extra, "request_id")
		if len(e.Extra) == 0 {
			e.Extra = nil
		}
	}
	e.upcast()
	return nil
}

// upcast rewrites older schema versions into the current one.
func (e *Event) upcast() {
	if e.SchemaVersion == 0 {
		e.SchemaVersion = 1
	}
	if e.Type == TypeMeta {
		if kind, _ := e.ExtraString("kind"); kind == string(TypeAssistantDelta) {
			e.Type = TypeAssistantDelta
			delete(e.Extra, "kind")
			if len(e.Extra) == 0 {
				e.Extra = nil
			}
			if e.Role == "" {
				e.Role = RoleAssistant
			}
		}
	}
	// A negative version is not an old one: leave it for Validate to
	// reject rather than passing it off as current.
	if e.SchemaVersion > 0 && e.SchemaVersion < CurrentSchemaVersion {
		e.SchemaVersion = CurrentSchemaVersion
	}
}

// MarshalJSON implements json.Marshaler: the wire format described in the
// package documentation.
func (e Event) MarshalJSON() ([]byte, error) {
	w := wire{
		ID:             e.ID,
		ConversationID: e.ConversationID,
		Pos:            e.Pos,
		Type:           e.Type,
		SchemaVersion:  e.SchemaVersion,
		Role:           e.Role,
		ToolCallID:     e.ToolCallID,
		Provider:       e.Provider,
		Model:          e.Model,
		StopReason:     e.StopReason,
		Usage:          e.Usage,
		RequestID:      e.RequestID,
		Raw:            e.Raw,
	}
	if e.Seq != 0 {
		w.Seq = strconv.AppendInt(nil, e.Seq, 10)
	}
	if !e.CreatedAt.IsZero() {
		w.CreatedAt = FormatTime(e.CreatedAt)
	}
	var err error
	if e.Content != nil {
		if w.Content, err = e.Content.MarshalJSON(); err != nil {
			return nil, err
		}
	}
	if len(e.ToolCalls) > 0 {
		if w.ToolCalls, err = json.Marshal(e.ToolCalls); err != nil {
			return nil, err
		}
	}
	if w.Extra, err = e.MarshalExtra(); err != nil {
		return nil, err
	}
	if string(w.Extra) == "{}" {
		w.Extra = nil
	}
	return json.Marshal(w)
}

// MarshalExtra encodes extra as stored: the extra object with request_id
// folded in (so storage can index it), keys in sorted order. It is "{}"
// when there is nothing to store.
func (e *Event) MarshalExtra() ([]byte, error) {
	if e.RequestID == "" {
		if len(e.Extra) == 0 {
			return []byte("{}"), nil
		}
		return json.Marshal(e.Extra)
	}
	if len(e.Extra) == 0 {
		rid, err := json.Marshal(e.RequestID)
		if err != nil {
			return nil, err
		}
		return append(append([]byte(`{"request_id":`), rid...), '}'), nil
	}
	m := make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		m[k] = v
	}
	m["request_id"] = e.RequestID
	return json.Marshal(m)
}

// canonicalJSON returns b in the form encoding/json writes a
// json.RawMessage: compact, with <, >, &, U+2028 and U+2029 escaped. Raw
// members are kept in this form so that encoding an event and decoding it
// again yields the same bytes (and the same dedupe fingerprint). It fails
// when b is not valid JSON.
func canonicalJSON(b []byte) ([]byte, error) {
	return json.Marshal(json.RawMessage(b))
}

// decodeObject decodes a JSON object keeping numbers as json.Number.
func decodeObject(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not an object")
	}
	if d.More() {
		return nil, errors.New("trailing data after object")
	}
	return m, nil
}

// decodeError turns a json error into a FieldError naming the field.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "event"
			return &FieldError{Field: field, Reason: "must be a JSON object"}
		}
		return &FieldError{Field: field, Reason: "must be a " + jsonKind(te.Type.Kind().String())}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &FieldError{Field: "event", Reason: fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se)}
	}
	return &FieldError{Field: "event", Reason: "malformed JSON: " + err.Error()}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "int", "int64", "int32", "uint", "uint64":
		return "integer"
	case "float64", "float32":
		return "number"
	case "struct", "map", "ptr":
		return "JSON object"
	case "slice":
		return "JSON array"
	case "bool":
		return "boolean"
	}
	return goKind
}

func invalidUTF8Offset(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}
