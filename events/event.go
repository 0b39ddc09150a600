package events

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
)

// Type names what an event records.
type Type string

// Event types. LLM-visible types reach the model through projections;
// the others describe the conversation's lifecycle and metadata.
const (
	TypeUserMessage      Type = "user_message"
	TypeAssistantMessage Type = "assistant_message"
	TypeAssistantDelta   Type = "assistant_delta"
	TypeToolResult       Type = "tool_result"
	TypeSystemUpdate     Type = "system_update"

	TypeConversationStarted  Type = "conversation_started"
	TypeConversationEnded    Type = "conversation_ended"
	TypeConversationReopened Type = "conversation_reopened"
	TypeConversationForked   Type = "conversation_forked"
	TypeConversationCleared  Type = "conversation_cleared"
	TypeSystemPromptSet      Type = "system_prompt_set"
	TypeTitleSet             Type = "title_set"
	TypeUsageRecorded        Type = "usage_recorded"
	TypeMessageRetracted     Type = "message_retracted"
	TypeTurnFailed           Type = "turn_failed"

	// TypeLedgerEntry is one credit or debit of a user's credit ledger
	// (package ledger). It is account-level: it lives only in the user's
	// ledger stream (LedgerStreamPrefix + user), with extra
	// {"kind":"credit"|"debit","amount":N,"balance":B,"note":TEXT}:
	// amount a positive integer in the smallest unit of the currency,
	// balance the running balance after the entry (never negative), note
	// optional.
	TypeLedgerEntry Type = "ledger_entry"

	// TypeCurrentSet moves a user's current-conversation pointers
	// (package conversation). It is account-level: it lives only in the
	// user's stream (UserStreamPrefix + user), with extra
	// {"scope":S,"conversation_id":C,"current":{scope: conversation id,
	// ...}}: the scope it set (C "" clears it) and every scope's pointer
	// after it, so the latest event answers for all scopes.
	TypeCurrentSet Type = "current_conversation_set"

	// TypeMeta is the legacy (schema version 1) catch-all metadata type.
	// Legacy meta events that carried a streamed chunk are upcast to
	// TypeAssistantDelta on decode; other meta events are kept as they are.
	TypeMeta Type = "meta"
)

// CustomTypePrefix marks application-defined event types ("x-feedback").
// They are stored and replayed like any other event and never reach the model.
const CustomTypePrefix = "x-"

// knownTypes maps every built-in type to the role it implies ("" = no role).
var knownTypes = map[Type]Role{
	TypeUserMessage:          RoleUser,
	TypeAssistantMessage:     RoleAssistant,
	TypeAssistantDelta:       RoleAssistant,
	TypeToolResult:           RoleTool,
	TypeSystemUpdate:         RoleSystem,
	TypeConversationStarted:  "",
	TypeConversationEnded:    "",
	TypeConversationReopened: "",
	TypeConversationForked:   "",
	TypeConversationCleared:  "",
	TypeSystemPromptSet:      "",
	TypeTitleSet:             "",
	TypeUsageRecorded:        "",
	TypeMessageRetracted:     "",
	TypeTurnFailed:           "",
	TypeMeta:                 "",
	TypeLedgerEntry:          "",
	TypeCurrentSet:           "",
}

// accountTypes are the account-level types: the only ones account
// streams hold, and found nowhere else.
var accountTypes = map[Type]bool{
	TypeLedgerEntry: true,
	TypeCurrentSet:  true,
}

// AccountStreamPrefix begins the conversation ids reserved for chatlog's
// own per-user streams (account streams), such as a user's credit ledger.
// An account stream holds account-level events only, and those live
// nowhere else (Validate enforces both), so a user's ledger can never be
// written by an ordinary append nor mistaken for a conversation.
const AccountStreamPrefix = "~"

// LedgerStreamPrefix begins the id of a user's ledger stream, which is
// LedgerStreamPrefix + the user's id.
const LedgerStreamPrefix = AccountStreamPrefix + "ledger/"

// UserStreamPrefix begins the id of a user's own stream (the current
// conversation pointers), which is UserStreamPrefix + the user's id.
const UserStreamPrefix = AccountStreamPrefix + "user/"

// IsAccountStream reports whether conversationID names an account stream.
// Read models (the conversation list, summaries, search) leave these
// streams out; this is the one place that says which they are.
func IsAccountStream(conversationID string) bool {
	return strings.HasPrefix(conversationID, AccountStreamPrefix)
}

// AccountLevel reports whether events of type t belong in account streams
// (and only there).
func (t Type) AccountLevel() bool { return accountTypes[t] }

// Known reports whether t is a built-in type or a custom ("x-") one.
func (t Type) Known() bool {
	if _, ok := knownTypes[t]; ok {
		return true
	}
	return strings.HasPrefix(string(t), CustomTypePrefix) && len(t) > len(CustomTypePrefix)
}

// ImpliedRole is the role that events of type t carry: user, assistant,
// tool or system for message types, empty for lifecycle and custom types.
func (t Type) ImpliedRole() Role { return knownTypes[t] }

// Role is the speaker of a message.
type Role string

// Roles, as the providers name them.
const (
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
	RoleTool      Role = "tool"
	RoleSystem    Role = "system"
)

// CurrentSchemaVersion is the version this package writes. Decoding upcasts
// older versions to it.
const CurrentSchemaVersion = 2

// Event is one immutable entry in a conversation's log.
//
// The store assigns ID (when empty), Seq, Pos and CreatedAt (when zero);
// everything else is the caller's. The zero values of the optional fields
// are "absent".
type Event struct {
	// ID is a ULID the store mints when the caller leaves it empty. A caller
	// may supply its own (imports keep theirs); it is unique across the log.
	ID string
	// ConversationID names the conversation; required.
	ConversationID string
	// Seq is the event's position in its conversation, from 1, assigned by
	// the store inside the write transaction.
	Seq int64
	// Pos is the event's global position across all conversations,
	// assigned by the store; projections checkpoint on it.
	Pos int64
	// Type says what the event records; required.
	Type Type
	// SchemaVersion is the wire schema version; the store writes
	// CurrentSchemaVersion.
	SchemaVersion int
	// CreatedAt is when the event happened; the store sets it when zero.
	CreatedAt time.Time
	// Role is the speaker; empty means the role the type implies.
	Role Role
	// Content is the message: text or an array of parts. Nil when absent.
	Content *Content
	// ToolCalls are the tools an assistant message asks to run.
	ToolCalls []ToolCall
	// ToolCallID pairs a tool_result with the assistant tool call it answers.
	ToolCallID string
	// Provider is the LLM provider that produced an assistant event.
	Provider string
	// Model is the model that produced an assistant event.
	Model string
	// StopReason is why generation stopped ("stop", "tool_calls",
	// "interrupted", ...).
	StopReason string
	// Usage is the tokens and cost an event accounts for. Nil when absent.
	Usage *Usage
	// RequestID is the idempotency key, unique per conversation. On the wire
	// it is accepted top level or as extra.request_id.
	RequestID string
	// Extra holds free-form metadata (a JSON object, request_id excluded).
	// Numbers decode as json.Number so they round-trip exactly.
	Extra map[string]any
	// Raw is the provider's raw payload, kept as given up to JSON
	// whitespace and escaping: decoding stores it in the compact form
	// encoding/json writes. Nil when absent.
	Raw json.RawMessage
}

// ToolCall is a provider-neutral tool invocation.
type ToolCall struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Arguments is a JSON document held as a string, as providers stream it.
	Arguments string `json:"arguments"`
}

// Usage counts tokens and cost.
type Usage struct {
	Input      int64 `json:"input,omitempty"`
	Output     int64 `json:"output,omitempty"`
	CacheRead  int64 `json:"cache_read,omitempty"`
	CacheWrite int64 `json:"cache_write,omitempty"`
	Reasoning  int64 `json:"reasoning,omitempty"`
	// Cost is the estimated cost (from the caller's price list),
	// ActualCost what the billing provider charged, when known.
	Cost       float64 `json:"cost,omitempty"`
	ActualCost float64 `json:"actual_cost,omitempty"`
	// Currency (e.g. "USD"), PricingVersion (the price list the estimate
	// used) and BillingProvider label the costs. Sums keep a label the
	// parts agree on and mark a disagreement MixedLabel.
	Currency        string `json:"currency,omitempty"`
	PricingVersion  string `json:"pricing_version,omitempty"`
	BillingProvider string `json:"billing_provider,omitempty"`
}

// MixedLabel is a Usage label of a sum whose parts disagree (costs in two
// currencies, say): the totals are not to be read as one amount.
const MixedLabel = "mixed"

// Add returns the field-wise sum of u and v; either may be nil.
func (u *Usage) Add(v *Usage) Usage {
	var s Usage
	for _, x := range []*Usage{u, v} {
		if x == nil {
			continue
		}
		s.Input += x.Input
		s.Output += x.Output
		s.CacheRead += x.CacheRead
		s.CacheWrite += x.CacheWrite
		s.Reasoning += x.Reasoning
		s.Cost += x.Cost
		s.ActualCost += x.ActualCost
		s.Currency = mergeLabel(s.Currency, x.Currency)
		s.PricingVersion = mergeLabel(s.PricingVersion, x.PricingVersion)
		s.BillingProvider = mergeLabel(s.BillingProvider, x.BillingProvider)
	}
	// Sums of decimal costs pick up binary noise (0.1 + 0.2); a
	// millionth of a millionth of a unit is below any price.
	s.Cost = math.Round(s.Cost*1e12) / 1e12
	s.ActualCost = math.Round(s.ActualCost*1e12) / 1e12
	return s
}

func mergeLabel(a, b string) string {
	switch {
	case a == "" || a == b:
		return b
	case b == "":
		return a
	}
	return MixedLabel
}

// EffectiveRole is the event's role, or the role its type implies when the
// role is empty.
func (e *Event) EffectiveRole() Role {
	if e.Role != "" {
		return e.Role
	}
	return e.Type.ImpliedRole()
}

// Text is the event's content as plain text: the string itself, or the text
// parts joined. Empty when there is no content.
func (e *Event) Text() string { return e.Content.PlainText() }

// ExtraString returns extra[key] when it is a string.
func (e *Event) ExtraString(key string) (string, bool) {
	s, ok := e.Extra[key].(string)
	return s, ok
}

// ExtraInt returns extra[key] when it is an integer (a JSON number without
// fraction, or a Go integer).
func (e *Event) ExtraInt(key string) (int64, bool) {
	switch v := e.Extra[key].(type) {
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 64)
		return n, err == nil
	case int:
		return int64(v), true
	case int64:
		return v, true
	case float64:
		if v == float64(int64(v)) {
			return int64(v), true
		}
	}
	return 0, false
}

// ExtraBool returns extra[key] when it is a boolean.
func (e *Event) ExtraBool(key string) (bool, bool) {
	b, ok := e.Extra[key].(bool)
	return b, ok
}

// SetExtra sets extra[key] = value, creating the map when needed.
func (e *Event) SetExtra(key string, value any) {
	if e.Extra == nil {
		e.Extra = make(map[string]any)
	}
	e.Extra[key] = value
}

// Clone returns a deep copy of e, so a caller may change it freely.
func (e Event) Clone() Event {
	if e.Content != nil {
		c := e.Content.clone()
		e.Content = &c
	}
	if e.ToolCalls != nil {
		e.ToolCalls = append([]ToolCall(nil), e.ToolCalls...)
	}
	if e.Usage != nil {
		u := *e.Usage
		e.Usage = &u
	}
	if e.Extra != nil {
		e.Extra = cloneValue(e.Extra).(map[string]any)
	}
	if e.Raw != nil {
		e.Raw = append(json.RawMessage(nil), e.Raw...)
	}
	return e
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = cloneValue(x)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, x := range v {
			s[i] = cloneValue(x)
		}
		return s
	default:
		return v
	}
}
