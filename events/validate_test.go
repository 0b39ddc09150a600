package events_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatlog/chatlog/events"
)

// validEvent returns an event of type t that passes Validate: the minimum
// each type needs, so a test can break one field at a time.
func validEvent(tb testing.TB, t events.Type) events.Event {
	tb.Helper()
	e := events.Event{ConversationID: "c1", Type: t}
	switch t {
	case events.TypeUserMessage, events.TypeSystemUpdate:
		e.Content = events.NewText("hello")
	case events.TypeAssistantMessage:
		e.Content = events.NewText("hi there")
	case events.TypeAssistantDelta:
		e.Content = events.NewText("Hel")
		e.Extra = map[string]any{"user_request_id": "u1", "index": json.Number("0")}
	case events.TypeToolResult:
		e.ToolCallID = "call_1"
		e.Content = events.NewText(`{"temp":3}`)
	case events.TypeLedgerEntry:
		e.ConversationID = events.LedgerStreamPrefix + "u1"
		e.Extra = map[string]any{"kind": "debit", "amount": json.Number("30"), "balance": json.Number("70"), "note": "3 replies"}
	case events.TypeConversationForked:
		e.Extra = map[string]any{"parent_id": "p1", "parent_seq": json.Number("3")}
	}
	return e
}

func TestEvent_ValidateFork(t *testing.T) {
	for name, tc := range map[string]struct {
		extra map[string]any
		want  []string
	}{
		"no parent":          {map[string]any{"parent_seq": 1}, []string{"extra.parent_id"}},
		"itself":             {map[string]any{"parent_id": "c1", "parent_seq": 1}, []string{"extra.parent_id"}},
		"no seq":             {map[string]any{"parent_id": "p"}, []string{"extra.parent_seq"}},
		"zero seq":           {map[string]any{"parent_id": "p", "parent_seq": 0}, []string{"extra.parent_seq"}},
		"fractional seq":     {map[string]any{"parent_id": "p", "parent_seq": 1.5}, []string{"extra.parent_seq"}},
		"both wrong":         {map[string]any{"parent_id": 7, "parent_seq": "x"}, []string{"extra.parent_id", "extra.parent_seq"}},
		"ledger parent":      {map[string]any{"parent_id": "~ledger/u1", "parent_seq": 1}, []string{"extra.parent_id"}},
		"title not a string": {},
	} {
		t.Run(name, func(t *testing.T) {
			e := events.Event{ConversationID: "c1", Type: events.TypeConversationForked, Extra: tc.extra}
			want := tc.want
			if tc.extra == nil {
				e = events.Event{ConversationID: "c1", Type: events.TypeTitleSet, Extra: map[string]any{"title": 3}}
				want = []string{"extra.title"}
			}
			if got := fieldNames(t, e.Validate()); !slices.Equal(got, want) {
				t.Errorf("fields %v, want %v", got, want)
			}
		})
	}
}

// fieldNames returns the Field of every FieldError in a *ValidationError,
// failing the test when err is anything else.
func fieldNames(tb testing.TB, err error) []string {
	tb.Helper()
	if err == nil {
		tb.Fatal("Validate() = nil, want a *events.ValidationError")
	}
	if !errors.Is(err, events.ErrInvalid) {
		tb.Errorf("errors.Is(%v, ErrInvalid) = false, want true", err)
	}
	var ve *events.ValidationError
	if !errors.As(err, &ve) {
		tb.Fatalf("Validate() = %T %v, want a *events.ValidationError", err, err)
	}
	var names []string
	for _, f := range ve.Fields {
		if !errors.Is(f, events.ErrInvalid) {
			tb.Errorf("errors.Is(%v, ErrInvalid) = false, want true", f)
		}
		if f.Reason == "" {
			tb.Errorf("field %q has an empty Reason", f.Field)
		}
		names = append(names, f.Field)
	}
	return names
}

var builtinTypes = []events.Type{
	events.TypeUserMessage,
	events.TypeAssistantMessage,
	events.TypeAssistantDelta,
	events.TypeToolResult,
	events.TypeSystemUpdate,
	events.TypeConversationStarted,
	events.TypeConversationEnded,
	events.TypeConversationReopened,
	events.TypeConversationForked,
	events.TypeConversationCleared,
	events.TypeSystemPromptSet,
	events.TypeTitleSet,
	events.TypeUsageRecorded,
	events.TypeMessageRetracted,
	events.TypeTurnFailed,
	events.TypeMeta,
	events.TypeLedgerEntry,
}

func TestEvent_Validate(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		for _, typ := range append(slices.Clone(builtinTypes), "x-foo") {
			t.Run(string(typ), func(t *testing.T) {
				e := validEvent(t, typ)
				if err := e.Validate(); err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
			})
		}
	})

	t.Run("OKFull", func(t *testing.T) {
		e := events.Event{
			ID:             "01JGZ5Q0000000000000000000",
			ConversationID: "c1",
			Seq:            7,
			Pos:            42,
			Type:           events.TypeAssistantMessage,
			SchemaVersion:  events.CurrentSchemaVersion,
			CreatedAt:      time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
			Role:           events.RoleAssistant,
			Content: events.NewParts(events.TextPart("look"), events.Part{
				Type:   "image_url",
				Fields: map[string]json.RawMessage{"image_url": json.RawMessage(`{"url":"https://example.com/a.png"}`)},
			}),
			ToolCalls: []events.ToolCall{
				{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`},
				{ID: "call_2", Name: "now"},
			},
			Provider:   "openai",
			Model:      "gpt-x",
			StopReason: "tool_calls",
			Usage:      &events.Usage{Input: 10, Output: 5, Cost: 0.001},
			RequestID:  "assistant:u1",
			Extra:      map[string]any{"nested": map[string]any{"a": []any{"b", json.Number("1")}}},
			Raw:        json.RawMessage(`{"id":"chatcmpl-1"}`),
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("Validate() = %v, want nil", err)
		}
	})

	t.Run("OKBoundaries", func(t *testing.T) {
		for name, mutate := range map[string]func(*events.Event){
			"ConversationID512": func(e *events.Event) { e.ConversationID = strings.Repeat("c", 512) },
			"RequestID255":      func(e *events.Event) { e.RequestID = strings.Repeat("r", 255) },
			"PayloadAtLimit":    func(e *events.Event) { e.Content = events.NewText(strings.Repeat("a", events.MaxPayloadBytes)) },
			"CreatedAtMin":      func(e *events.Event) { e.CreatedAt = time.Date(1678, 1, 1, 0, 0, 0, 0, time.UTC) },
			"CreatedAtMax":      func(e *events.Event) { e.CreatedAt = time.Date(2262, 4, 11, 0, 0, 0, 0, time.UTC) },
			"RoleImplied":       func(e *events.Event) { e.Role = events.RoleUser },
			"EmptyContent":      func(e *events.Event) { e.Content = events.NewText("") },
		} {
			t.Run(name, func(t *testing.T) {
				e := validEvent(t, events.TypeUserMessage)
				mutate(&e)
				if err := e.Validate(); err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
			})
		}
	})

	tests := []struct {
		name   string
		typ    events.Type
		mutate func(*events.Event)
		want   []string // Field of every error, in order
	}{
		{"EmptyConversationID", events.TypeUserMessage, func(e *events.Event) { e.ConversationID = "" }, []string{"conversation_id"}},
		{"LongConversationID", events.TypeUserMessage, func(e *events.Event) { e.ConversationID = strings.Repeat("c", 513) }, []string{"conversation_id"}},
		{"LongRequestID", events.TypeUserMessage, func(e *events.Event) { e.RequestID = strings.Repeat("r", 256) }, []string{"request_id"}},
		{"ControlInRequestID", events.TypeUserMessage, func(e *events.Event) { e.RequestID = "r\n1" }, []string{"request_id"}},
		{"LongID", events.TypeUserMessage, func(e *events.Event) { e.ID = strings.Repeat("i", 129) }, []string{"id"}},
		{"MissingType", events.TypeUserMessage, func(e *events.Event) { e.Type = "" }, []string{"type"}},
		{"UnknownType", events.TypeUserMessage, func(e *events.Event) { e.Type = "user_msg" }, []string{"type"}},
		{"BarePrefixType", events.TypeUserMessage, func(e *events.Event) { e.Type = "x-" }, []string{"type"}},
		{"RoleContradictsType", events.TypeUserMessage, func(e *events.Event) { e.Role = events.RoleAssistant }, []string{"role"}},
		{"UnknownRole", events.TypeUserMessage, func(e *events.Event) { e.Role = "bot" }, []string{"role"}},
		{"RoleOnLifecycleType", events.TypeTitleSet, func(e *events.Event) { e.Role = events.RoleUser }, []string{"role"}},
		{"InvalidUTF8Content", events.TypeUserMessage, func(e *events.Event) { e.Content = events.NewText("caf\xe9") }, []string{"content"}},
		{"InvalidUTF8ContentPart", events.TypeUserMessage, func(e *events.Event) { e.Content = events.NewParts(events.TextPart("\xff")) }, []string{"content[0]"}},
		{"InvalidUTF8ConversationID", events.TypeUserMessage, func(e *events.Event) { e.ConversationID = "c\xff1" }, []string{"conversation_id"}},
		{"InvalidUTF8ExtraValue", events.TypeUserMessage, func(e *events.Event) { e.Extra = map[string]any{"k": "v\xff"} }, []string{"extra"}},
		{"InvalidUTF8ExtraKey", events.TypeUserMessage, func(e *events.Event) { e.Extra = map[string]any{"k\xff": "v"} }, []string{"extra"}},
		{"InvalidUTF8ExtraNested", events.TypeUserMessage, func(e *events.Event) {
			e.Extra = map[string]any{"a": []any{map[string]any{"b": "\xc3"}}}
		}, []string{"extra"}},
		{"NegativeSeq", events.TypeUserMessage, func(e *events.Event) { e.Seq = -1 }, []string{"seq"}},
		{"NegativePos", events.TypeUserMessage, func(e *events.Event) { e.Pos = -1 }, []string{"pos"}},
		{"FutureSchemaVersion", events.TypeUserMessage, func(e *events.Event) { e.SchemaVersion = events.CurrentSchemaVersion + 1 }, []string{"schema_version"}},
		{"ToolResultWithoutToolCallID", events.TypeToolResult, func(e *events.Event) { e.ToolCallID = "" }, []string{"tool_call_id"}},
		{"ToolResultWithoutContent", events.TypeToolResult, func(e *events.Event) { e.Content = nil }, []string{"content"}},
		{"UserMessageWithoutContent", events.TypeUserMessage, func(e *events.Event) { e.Content = nil }, []string{"content"}},
		{"AssistantMessageEmpty", events.TypeAssistantMessage, func(e *events.Event) { e.Content = nil }, []string{"content"}},
		{"ToolCallMissingID", events.TypeAssistantMessage, func(e *events.Event) {
			e.ToolCalls = []events.ToolCall{{Name: "f", Arguments: "{}"}}
		}, []string{"tool_calls[0].id"}},
		{"ToolCallMissingName", events.TypeAssistantMessage, func(e *events.Event) {
			e.ToolCalls = []events.ToolCall{{ID: "call_1", Arguments: "{}"}}
		}, []string{"tool_calls[0].name"}},
		{"ToolCallArgumentsNotJSON", events.TypeAssistantMessage, func(e *events.Event) {
			e.ToolCalls = []events.ToolCall{{ID: "call_1", Name: "f", Arguments: "{city: Oslo}"}}
		}, []string{"tool_calls[0].arguments"}},
		{"ToolCallDuplicateIDs", events.TypeAssistantMessage, func(e *events.Event) {
			e.ToolCalls = []events.ToolCall{{ID: "call_1", Name: "f"}, {ID: "call_1", Name: "g"}}
		}, []string{"tool_calls[1].id"}},
		{"ToolCallsOnUserMessage", events.TypeUserMessage, func(e *events.Event) {
			e.ToolCalls = []events.ToolCall{{ID: "call_1", Name: "f", Arguments: "{}"}}
		}, []string{"tool_calls"}},
		{"PayloadTooLarge", events.TypeUserMessage, func(e *events.Event) {
			e.Content = events.NewText(strings.Repeat("a", events.MaxPayloadBytes+1))
		}, []string{"event"}},
		{"PayloadTooLargeAcrossFields", events.TypeUserMessage, func(e *events.Event) {
			half := strings.Repeat("a", events.MaxPayloadBytes/2)
			e.Content = events.NewText(half)
			e.Raw = json.RawMessage(`"` + half + `"`)
		}, []string{"event"}},
		{"DeltaWithoutUserRequestID", events.TypeAssistantDelta, func(e *events.Event) { delete(e.Extra, "user_request_id") }, []string{"extra.user_request_id"}},
		{"DeltaUserRequestIDNotString", events.TypeAssistantDelta, func(e *events.Event) { e.Extra["user_request_id"] = json.Number("1") }, []string{"extra.user_request_id"}},
		{"DeltaNegativeIndex", events.TypeAssistantDelta, func(e *events.Event) { e.Extra["index"] = json.Number("-1") }, []string{"extra.index"}},
		{"DeltaNegativeIndexGoInt", events.TypeAssistantDelta, func(e *events.Event) { e.Extra["index"] = -1 }, []string{"extra.index"}},
		{"DeltaFractionalIndex", events.TypeAssistantDelta, func(e *events.Event) { e.Extra["index"] = json.Number("1.5") }, []string{"extra.index"}},
		{"DeltaNegativeAttempt", events.TypeAssistantDelta, func(e *events.Event) { e.Extra["attempt"] = json.Number("-2") }, []string{"extra.attempt"}},
		{"UsageNegativeTokens", events.TypeAssistantMessage, func(e *events.Event) { e.Usage = &events.Usage{Input: 3, Output: -1} }, []string{"usage"}},
		{"UsageNegativeReasoning", events.TypeAssistantMessage, func(e *events.Event) { e.Usage = &events.Usage{Reasoning: -1} }, []string{"usage"}},
		{"CreatedAtTooEarly", events.TypeUserMessage, func(e *events.Event) { e.CreatedAt = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC) }, []string{"created_at"}},
		{"CreatedAtTooLate", events.TypeUserMessage, func(e *events.Event) { e.CreatedAt = time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC) }, []string{"created_at"}},
		{"RawNotJSON", events.TypeAssistantMessage, func(e *events.Event) { e.Raw = json.RawMessage(`{"a":`) }, []string{"raw"}},
		{"ExtraNotEncodable", events.TypeUserMessage, func(e *events.Event) { e.Extra = map[string]any{"ch": make(chan int)} }, []string{"extra"}},
		{"ControlInModel", events.TypeAssistantMessage, func(e *events.Event) { e.Model = "gpt\x00" }, []string{"model"}},
		{"TextPartWithoutText", events.TypeUserMessage, func(e *events.Event) {
			e.Content = events.NewParts(events.Part{Type: "text", Fields: map[string]json.RawMessage{"cache_control": json.RawMessage(`{}`)}})
		}, []string{"content[0].text"}},
		{"PartWithoutType", events.TypeUserMessage, func(e *events.Event) { e.Content = events.NewParts(events.Part{Text: "hi"}) }, []string{"content[0].type"}},
		{"PartFieldNotJSON", events.TypeUserMessage, func(e *events.Event) {
			e.Content = events.NewParts(events.Part{Type: "image_url", Fields: map[string]json.RawMessage{"image_url": json.RawMessage(`{`)}})
		}, []string{"content[0].image_url"}},
		{"ExtraRequestID", events.TypeUserMessage, func(e *events.Event) { e.Extra = map[string]any{"request_id": "r1"} }, []string{"extra.request_id"}},
		{"LegacyDeltaShape", events.TypeMeta, func(e *events.Event) {
			e.Extra = map[string]any{"kind": "assistant_delta", "user_request_id": "u1"}
		}, []string{"extra.kind"}},
		{"NegativeSchemaVersion", events.TypeUserMessage, func(e *events.Event) { e.SchemaVersion = -1 }, []string{"schema_version"}},
		{"MessageInLedgerStream", events.TypeUserMessage, func(e *events.Event) { e.ConversationID = "~ledger/u1" }, []string{"conversation_id"}},
		{"LifecycleInAccountStream", events.TypeTitleSet, func(e *events.Event) { e.ConversationID = "~" }, []string{"conversation_id"}},
		{"CustomTypeInAccountStream", events.TypeUserMessage, func(e *events.Event) {
			e.ConversationID, e.Type, e.Content = "~notes/u1", "x-note", nil
		}, []string{"conversation_id"}},
		{"LedgerEntryInConversation", events.TypeLedgerEntry, func(e *events.Event) { e.ConversationID = "c1" }, []string{"conversation_id"}},
		{"LedgerEntryInOtherAccountStream", events.TypeLedgerEntry, func(e *events.Event) { e.ConversationID = "~usage/u1" }, []string{"conversation_id"}},
		{"LedgerEntryWithoutUser", events.TypeLedgerEntry, func(e *events.Event) { e.ConversationID = events.LedgerStreamPrefix }, []string{"conversation_id"}},
		{"LedgerEntryUnknownKind", events.TypeLedgerEntry, func(e *events.Event) { e.Extra["kind"] = "refund" }, []string{"extra.kind"}},
		{"LedgerEntryWithoutKind", events.TypeLedgerEntry, func(e *events.Event) { delete(e.Extra, "kind") }, []string{"extra.kind"}},
		{"LedgerEntryZeroAmount", events.TypeLedgerEntry, func(e *events.Event) { e.Extra["amount"] = json.Number("0") }, []string{"extra.amount"}},
		{"LedgerEntryNegativeAmount", events.TypeLedgerEntry, func(e *events.Event) { e.Extra["amount"] = int64(-5) }, []string{"extra.amount"}},
		{"LedgerEntryAmountOverflow", events.TypeLedgerEntry, func(e *events.Event) {
			e.Extra["amount"] = json.Number("9223372036854775808")
		}, []string{"extra.amount"}},
		{"LedgerEntryFractionalAmount", events.TypeLedgerEntry, func(e *events.Event) { e.Extra["amount"] = json.Number("2.5") }, []string{"extra.amount"}},
		{"LedgerEntryAmountString", events.TypeLedgerEntry, func(e *events.Event) { e.Extra["amount"] = "30" }, []string{"extra.amount"}},
		{"LedgerEntryWithoutBalance", events.TypeLedgerEntry, func(e *events.Event) { delete(e.Extra, "balance") }, []string{"extra.balance"}},
		{"LedgerEntryNegativeBalance", events.TypeLedgerEntry, func(e *events.Event) { e.Extra["balance"] = json.Number("-1") }, []string{"extra.balance"}},
		{"LedgerEntryNoteNotString", events.TypeLedgerEntry, func(e *events.Event) { e.Extra["note"] = json.Number("3") }, []string{"extra.note"}},
		{"LedgerEntryWithRole", events.TypeLedgerEntry, func(e *events.Event) { e.Role = events.RoleUser }, []string{"role"}},
		{"Several", events.TypeUserMessage, func(e *events.Event) {
			e.ConversationID = ""
			e.Seq = -1
			e.Role = "bot"
		}, []string{"conversation_id", "role", "seq"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validEvent(t, tt.typ)
			tt.mutate(&e)
			err := e.Validate()
			if got := fieldNames(t, err); !slices.Equal(got, tt.want) {
				t.Fatalf("Validate() fields = %q, want %q (error: %v)", got, tt.want, err)
			}
			var fe *events.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("errors.As(%v, *FieldError) = false", err)
			}
			if fe.Field != tt.want[0] {
				t.Errorf("errors.As FieldError.Field = %q, want %q", fe.Field, tt.want[0])
			}
			if !strings.Contains(err.Error(), tt.want[0]+": ") {
				t.Errorf("Error() = %q, want it to name %q", err.Error(), tt.want[0])
			}
		})
	}
}

func TestEvent_Validate_ledgerBoundaries(t *testing.T) {
	for name, mutate := range map[string]func(*events.Event){
		"AmountMax":       func(e *events.Event) { e.Extra["amount"] = json.Number("9223372036854775807") },
		"AmountGoInt":     func(e *events.Event) { e.Extra["amount"] = int64(1) },
		"BalanceZero":     func(e *events.Event) { e.Extra["balance"] = 0 },
		"NoNote":          func(e *events.Event) { delete(e.Extra, "note") },
		"Credit":          func(e *events.Event) { e.Extra["kind"] = "credit" },
		"UserWithSlashes": func(e *events.Event) { e.ConversationID = events.LedgerStreamPrefix + "org/7/user 3" },
		"UserLongestValid": func(e *events.Event) {
			e.ConversationID += strings.Repeat("u", events.MaxConversationIDBytes-len(e.ConversationID))
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := validEvent(t, events.TypeLedgerEntry)
			mutate(&e)
			if err := e.Validate(); err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestIsAccountStream(t *testing.T) {
	for id, want := range map[string]bool{
		"~ledger/alice": true,
		"~":             true,
		"~anything":     true,
		"c1":            false,
		"":              false,
		"a~b":           false,
		" ~ledger/x":    false,
	} {
		if got := events.IsAccountStream(id); got != want {
			t.Errorf("IsAccountStream(%q) = %v, want %v", id, got, want)
		}
	}
	for _, typ := range builtinTypes {
		if got, want := typ.AccountLevel(), typ == events.TypeLedgerEntry; got != want {
			t.Errorf("%s.AccountLevel() = %v, want %v", typ, got, want)
		}
	}
	if events.Type("x-ledger_entry").AccountLevel() {
		t.Error("a custom type is account-level")
	}
}

func TestEvent_Validate_deltaFragments(t *testing.T) {
	// A streamed chunk may carry a tool call fragment: no id, no name,
	// arguments that are only a piece of a JSON document.
	e := validEvent(t, events.TypeAssistantDelta)
	e.ToolCalls = []events.ToolCall{{Arguments: `{"city":`}}
	if err := e.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
}

func TestFieldError(t *testing.T) {
	fe := &events.FieldError{Field: "seq", Reason: "must be an integer"}
	if got, want := fe.Error(), "seq: must be an integer"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(fe, events.ErrInvalid) {
		t.Error("errors.Is(FieldError, ErrInvalid) = false")
	}
	if errors.Is(fe, errors.New("invalid event")) {
		t.Error("errors.Is(FieldError, other error) = true")
	}
}

// TestEvent_ValidateNumber: a json.Number that is no JSON number would
// make the event impossible to encode, so it is refused up front.
func TestEvent_ValidateNumber(t *testing.T) {
	for _, n := range []string{"A", "", "1e", "--1", "0x10", "1 2"} {
		e := events.Event{ConversationID: "c", Type: events.TypeUserMessage, Content: events.NewText("x"),
			Extra: map[string]any{"n": json.Number(n)}}
		if err := e.Validate(); err == nil {
			t.Errorf("extra json.Number(%q) accepted", n)
		} else if _, err := e.MarshalJSON(); err == nil && n != "" {
			t.Errorf("json.Number(%q): refused but encodes", n)
		}
	}
	for _, n := range []string{"0", "-1.5e10", "12345678901234567890"} {
		e := events.Event{ConversationID: "c", Type: events.TypeUserMessage, Content: events.NewText("x"),
			Extra: map[string]any{"n": json.Number(n)}}
		if err := e.Validate(); err != nil {
			t.Errorf("extra json.Number(%q): %v", n, err)
		}
	}
}
