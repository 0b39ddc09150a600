package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits enforced by Validate.
const (
	// MaxConversationIDBytes caps conversation_id.
	MaxConversationIDBytes = 512
	// MaxRequestIDBytes caps request_id.
	MaxRequestIDBytes = 255
	// MaxIDBytes caps a caller-supplied event id.
	MaxIDBytes = 128
	// MaxNameBytes caps short names: type, provider, model, stop_reason,
	// tool_call_id and a tool call's id and name.
	MaxNameBytes = 256
	// MaxPayloadBytes caps an event's payload: content, tool calls, extra
	// and raw together, as encoded. It matches the HTTP body limit.
	MaxPayloadBytes = 1 << 20
)

// ErrInvalid is matched (errors.Is) by every validation and decoding error.
var ErrInvalid = errors.New("invalid event")

// FieldError says which field of an event is wrong and why.
type FieldError struct {
	// Field is the JSON name of the field, with a path where it helps
	// ("tool_calls[1].name", "extra.index").
	Field string
	// Reason says what is wrong, in words a caller can act on.
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// ValidationError lists every field that failed validation.
type ValidationError struct {
	Fields []*FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return "invalid event: " + strings.Join(parts, "; ")
}

// Unwrap exposes each FieldError to errors.Is and errors.As.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Fields))
	for i, f := range e.Fields {
		errs[i] = f
	}
	return errs
}

// Is makes a ValidationError match ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Earliest and latest created_at that storage can hold (int64 nanoseconds).
var (
	minTime = time.Unix(0, math.MinInt64).UTC()
	maxTime = time.Unix(0, math.MaxInt64).UTC()
)

// Validate checks the event as a caller submits it for appending. It
// returns nil or a *ValidationError listing every problem found.
func (e *Event) Validate() error {
	var errs []*FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	checkName := func(field, s string, limit int, required bool) {
		switch {
		case s == "" && required:
			bad(field, "is required")
		case len(s) > limit:
			bad(field, "is %d bytes, over the limit of %d", len(s), limit)
		case !utf8.ValidString(s):
			bad(field, "is not valid UTF-8")
		case hasControl(s):
			bad(field, "contains control characters")
		}
	}

	checkName("conversation_id", e.ConversationID, MaxConversationIDBytes, true)
	if e.ConversationID != "" && e.Type != "" {
		switch account := IsAccountStream(e.ConversationID); {
		case account && !e.Type.AccountLevel():
			bad("conversation_id", "ids beginning with %q are reserved for chatlog's per-user account streams, which hold no %s events",
				AccountStreamPrefix, truncate(string(e.Type), 64))
		case !account && e.Type.AccountLevel():
			bad("conversation_id", "a %s belongs in a per-user account stream, whose id begins with %q", e.Type, AccountStreamPrefix)
		case e.Type == TypeLedgerEntry && (!strings.HasPrefix(e.ConversationID, LedgerStreamPrefix) || len(e.ConversationID) == len(LedgerStreamPrefix)):
			bad("conversation_id", "a ledger_entry belongs in a user's ledger stream, %q followed by the user's id", LedgerStreamPrefix)
		case e.Type == TypeCurrentSet && (!strings.HasPrefix(e.ConversationID, UserStreamPrefix) || len(e.ConversationID) == len(UserStreamPrefix)):
			bad("conversation_id", "a %s belongs in a user's stream, %q followed by the user's id", e.Type, UserStreamPrefix)
		}
	}
	checkName("request_id", e.RequestID, MaxRequestIDBytes, false)
	checkName("id", e.ID, MaxIDBytes, false)
	switch {
	case e.Type == "":
		bad("type", "is required")
	case !e.Type.Known():
		bad("type", "%q is not a known event type (custom types start with %q)", truncate(string(e.Type), 64), CustomTypePrefix)
	}
	checkName("type", string(e.Type), MaxNameBytes, false)
	if e.Role != "" {
		implied := e.Type.ImpliedRole()
		switch {
		case e.Role != RoleUser && e.Role != RoleAssistant && e.Role != RoleTool && e.Role != RoleSystem:
			bad("role", "%q is not one of user, assistant, tool, system", truncate(string(e.Role), 64))
		case implied != "" && e.Role != implied:
			bad("role", "%q contradicts type %s, which is %s", e.Role, e.Type, implied)
		case implied == "" && e.Type.Known() && !strings.HasPrefix(string(e.Type), CustomTypePrefix) && e.Type != TypeMeta:
			bad("role", "type %s carries no role", e.Type)
		}
	}
	if e.Seq < 0 {
		bad("seq", "must not be negative")
	}
	if e.Pos < 0 {
		bad("pos", "must not be negative")
	}
	if e.SchemaVersion < 0 || e.SchemaVersion > CurrentSchemaVersion {
		bad("schema_version", "must be between 1 and %d", CurrentSchemaVersion)
	}
	if !e.CreatedAt.IsZero() && (e.CreatedAt.Before(minTime) || e.CreatedAt.After(maxTime)) {
		bad("created_at", "must be between years 1678 and 2262")
	}
	checkName("provider", e.Provider, MaxNameBytes, false)
	checkName("model", e.Model, MaxNameBytes, false)
	checkName("stop_reason", e.StopReason, MaxNameBytes, false)
	checkName("tool_call_id", e.ToolCallID, MaxNameBytes, false)

	size := 0
	if e.Content != nil {
		if e.Content.Parts == nil {
			if !utf8.ValidString(e.Content.Text) {
				bad("content", "is not valid UTF-8")
			}
			size += len(e.Content.Text)
		}
		for i, p := range e.Content.Parts {
			field := fmt.Sprintf("content[%d]", i)
			switch {
			case p.Type == "":
				bad(field+".type", "is required")
			case !utf8.ValidString(p.Type) || !utf8.ValidString(p.Text):
				bad(field, "is not valid UTF-8")
			case p.Type == "text" && len(p.Fields) > 0 && p.Text == "":
				bad(field+".text", "is required for a text part")
			}
			size += len(p.Type) + len(p.Text)
			for k, v := range p.Fields {
				size += len(k) + len(v)
				if !json.Valid(v) {
					bad(field+"."+k, "is not valid JSON")
				}
			}
		}
	}
	switch e.Type {
	case TypeUserMessage:
		if e.Content == nil {
			bad("content", "is required for a %s", e.Type)
		}
	case TypeToolResult:
		if e.ToolCallID == "" {
			bad("tool_call_id", "is required for a tool_result")
		}
		if e.Content == nil {
			bad("content", "is required for a tool_result")
		}
	case TypeAssistantMessage:
		if e.Content == nil && len(e.ToolCalls) == 0 {
			bad("content", "an assistant_message needs content or tool_calls")
		}
	case TypeAssistantDelta:
		if urid, ok := e.Extra["user_request_id"]; !ok {
			bad("extra.user_request_id", "is required for an assistant_delta")
		} else if s, ok := urid.(string); !ok || s == "" {
			bad("extra.user_request_id", "must be a non-empty string")
		} else if len(s) > MaxRequestIDBytes {
			bad("extra.user_request_id", "is %d bytes, over the limit of %d", len(s), MaxRequestIDBytes)
		}
		for _, key := range []string{"index", "attempt"} {
			if _, present := e.Extra[key]; present {
				if n, ok := e.ExtraInt(key); !ok || n < 0 {
					bad("extra."+key, "must be a non-negative integer")
				}
			}
		}
	case TypeSystemUpdate:
		if e.Content == nil {
			bad("content", "is required for a system_update")
		}
	case TypeLedgerEntry:
		if kind, _ := e.ExtraString("kind"); kind != "credit" && kind != "debit" {
			bad("extra.kind", `must be "credit" or "debit"`)
		}
		if n, ok := e.ExtraInt("amount"); !ok || n <= 0 {
			bad("extra.amount", "must be a positive integer (in the smallest unit) of at most %d", int64(math.MaxInt64))
		}
		if n, ok := e.ExtraInt("balance"); !ok || n < 0 {
			bad("extra.balance", "must be a non-negative integer of at most %d: the balance after the entry", int64(math.MaxInt64))
		}
		if note, present := e.Extra["note"]; present {
			if _, ok := note.(string); !ok {
				bad("extra.note", "must be a string")
			}
		}
	case TypeConversationForked:
		// A branch points at its parent instead of copying it: the
		// store reads the branch's history through these two.
		if p, ok := e.ExtraString("parent_id"); !ok || p == "" {
			bad("extra.parent_id", "is required for a conversation_forked (the conversation forked from)")
		} else if p == e.ConversationID {
			bad("extra.parent_id", "a conversation cannot fork from itself")
		} else if len(p) > MaxConversationIDBytes {
			bad("extra.parent_id", "is %d bytes, over the limit of %d", len(p), MaxConversationIDBytes)
		} else if IsAccountStream(p) {
			// A branch inherits its parent's events: a ledger's entries
			// would then be read as a conversation's.
			bad("extra.parent_id", "%q is a per-user account stream, not a conversation; it cannot be forked", truncate(p, 64))
		}
		if n, ok := e.ExtraInt("parent_seq"); !ok || n <= 0 {
			bad("extra.parent_seq", "must be a positive integer (the parent's seq the branch forks at)")
		}
	case TypeTitleSet:
		if _, present := e.Extra["title"]; present {
			if _, ok := e.ExtraString("title"); !ok {
				bad("extra.title", "must be a string")
			}
		}
	}
	if len(e.ToolCalls) > 0 && e.Type != TypeAssistantMessage && e.Type != TypeAssistantDelta {
		bad("tool_calls", "only assistant_message and assistant_delta events carry tool calls")
	}
	seen := make(map[string]bool, len(e.ToolCalls))
	for i, tc := range e.ToolCalls {
		field := fmt.Sprintf("tool_calls[%d]", i)
		// A streamed fragment may carry only a piece of the arguments;
		// the fold checks the whole.
		fragment := e.Type == TypeAssistantDelta
		if !fragment {
			checkName(field+".id", tc.ID, MaxNameBytes, true)
			checkName(field+".name", tc.Name, MaxNameBytes, true)
			if tc.Arguments != "" && !json.Valid([]byte(tc.Arguments)) {
				bad(field+".arguments", "must be a JSON document in a string")
			}
			if seen[tc.ID] && tc.ID != "" {
				bad(field+".id", "%q appears twice", truncate(tc.ID, 64))
			}
			seen[tc.ID] = true
		} else {
			checkName(field+".id", tc.ID, MaxNameBytes, false)
			checkName(field+".name", tc.Name, MaxNameBytes, false)
		}
		if !utf8.ValidString(tc.Arguments) {
			bad(field+".arguments", "is not valid UTF-8")
		}
		size += len(tc.ID) + len(tc.Name) + len(tc.Arguments)
	}
	if u := e.Usage; u != nil {
		if u.Input < 0 || u.Output < 0 || u.CacheRead < 0 || u.CacheWrite < 0 || u.Reasoning < 0 {
			bad("usage", "token counts must not be negative")
		}
		if math.IsNaN(u.Cost) || math.IsInf(u.Cost, 0) {
			bad("usage.cost", "must be a finite number")
		}
		if math.IsNaN(u.ActualCost) || math.IsInf(u.ActualCost, 0) {
			bad("usage.actual_cost", "must be a finite number")
		}
		checkName("usage.currency", u.Currency, MaxNameBytes, false)
		checkName("usage.pricing_version", u.PricingVersion, MaxNameBytes, false)
		checkName("usage.billing_provider", u.BillingProvider, MaxNameBytes, false)
	}
	if _, ok := e.Extra["request_id"]; ok {
		// The wire and storage fold RequestID into extra.request_id and
		// decode it back out, so a value here would not round-trip.
		bad("extra.request_id", "must be set as RequestID, not inside extra")
	}
	if e.Type == TypeMeta {
		if kind, _ := e.ExtraString("kind"); kind == string(TypeAssistantDelta) {
			// Decoding upcasts this legacy shape, so it would not
			// round-trip as meta.
			bad("extra.kind", "a meta event of kind assistant_delta is the legacy delta shape; use type assistant_delta")
		}
	}
	if len(e.Extra) > 0 {
		n, ok, valid := jsonSize(e.Extra)
		if !ok {
			// A Go value the walk does not know: let encoding/json judge.
			b, err := json.Marshal(e.Extra)
			if err != nil {
				bad("extra", "cannot be encoded as JSON: %v", err)
			}
			n = len(b)
		}
		if !valid {
			bad("extra", "holds text that is not valid UTF-8, or a number that is not a JSON number")
		}
		size += n
	}
	if e.Raw != nil {
		if !json.Valid(e.Raw) {
			bad("raw", "must be valid JSON")
		}
		size += len(e.Raw)
	}
	if size > MaxPayloadBytes {
		bad("event", "payload is %d bytes, over the limit of %d", size, MaxPayloadBytes)
	}
	if len(errs) == 0 {
		return nil
	}
	return &ValidationError{Fields: errs}
}

// jsonSize estimates the encoded size of a decoded JSON value without
// encoding it (the append path would otherwise encode extra an extra
// time). known is false for Go values outside JSON's shapes; valid is
// false when a string (keys included) is not UTF-8, which encoding/json
// would silently replace, or a json.Number is not a JSON number, which it
// would refuse (or, for "", write as 0).
func jsonSize(v any) (size int, known, valid bool) {
	switch v := v.(type) {
	case nil, bool:
		return 5, true, true
	case string:
		return len(v) + 2, true, utf8.ValidString(v)
	case json.Number:
		// A json.Number is written as it is: anything but a JSON number
		// (json.Number("A")) would make the event impossible to encode.
		return len(v), true, isJSONNumber(string(v))
	case float64:
		return 24, !math.IsNaN(v) && !math.IsInf(v, 0), true
	case int, int64, int32, uint, uint64, uint32:
		return 20, true, true
	case map[string]any:
		size, known, valid = 2, true, true
		for k, x := range v {
			n, k2, v2 := jsonSize(x)
			size += len(k) + 4 + n
			known = known && k2
			valid = valid && v2 && utf8.ValidString(k)
		}
		return size, known, valid
	case []any:
		size, known, valid = 2, true, true
		for _, x := range v {
			n, k2, v2 := jsonSize(x)
			size += n + 1
			known, valid = known && k2, valid && v2
		}
		return size, known, valid
	}
	return 0, false, true
}

// isJSONNumber reports whether s is a number in JSON's grammar.
func isJSONNumber(s string) bool {
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return false
	}
	return json.Valid([]byte(s))
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
