package events_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chatlog/chatlog/events"
)

// mustDecode decodes line or fails the test.
func mustDecode(tb testing.TB, line string) events.Event {
	tb.Helper()
	e, err := events.Decode([]byte(line))
	if err != nil {
		tb.Fatalf("Decode(%s) = %v", line, err)
	}
	return e
}

// mustEncode encodes e or fails the test.
func mustEncode(tb testing.TB, e events.Event) string {
	tb.Helper()
	b, err := e.MarshalJSON()
	if err != nil {
		tb.Fatalf("MarshalJSON(%+v) = %v", e, err)
	}
	return string(b)
}

// wireObject parses an encoded event with the standard library alone, so
// tests can check members without trusting the codec under test.
func wireObject(tb testing.TB, b string) map[string]json.RawMessage {
	tb.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(b), &m); err != nil {
		tb.Fatalf("encoded event is not a JSON object: %v\n%s", err, b)
	}
	return m
}

func TestDecode_errors(t *testing.T) {
	tests := []struct {
		name, in, field string
	}{
		{"SeqString", `{"conversation_id":"c1","type":"user_message","seq":"abc"}`, "seq"},
		{"SeqNumericString", `{"conversation_id":"c1","type":"user_message","seq":"5"}`, "seq"},
		{"SeqFraction", `{"conversation_id":"c1","type":"user_message","seq":1.5}`, "seq"},
		{"SeqOverflow", `{"conversation_id":"c1","type":"user_message","seq":9223372036854775808}`, "seq"},
		{"SeqBool", `{"conversation_id":"c1","type":"user_message","seq":true}`, "seq"},
		{"PosString", `{"conversation_id":"c1","type":"user_message","pos":"1"}`, "pos"},
		{"CreatedAtWords", `{"conversation_id":"c1","type":"user_message","created_at":"yesterday"}`, "created_at"},
		{"CreatedAtNoZone", `{"conversation_id":"c1","type":"user_message","created_at":"2026-01-02T03:04:05"}`, "created_at"},
		{"CreatedAtNumber", `{"conversation_id":"c1","type":"user_message","created_at":1700000000}`, "created_at"},
		{"ContentNumber", `{"conversation_id":"c1","type":"user_message","content":42}`, "content"},
		{"ContentObject", `{"conversation_id":"c1","type":"user_message","content":{"text":"hi"}}`, "content"},
		{"ContentPartNotObject", `{"conversation_id":"c1","type":"user_message","content":["hi"]}`, "content"},
		{"ContentPartWithoutType", `{"conversation_id":"c1","type":"user_message","content":[{"text":"hi"}]}`, "content"},
		{"ToolCallsObject", `{"conversation_id":"c1","type":"assistant_message","tool_calls":{"id":"call_1","name":"f"}}`, "tool_calls"},
		{"ToolCallArgumentsObject", `{"conversation_id":"c1","type":"assistant_message","tool_calls":[{"id":"call_1","name":"f","arguments":{"a":1}}]}`, "tool_calls"},
		{"ExtraArray", `{"conversation_id":"c1","type":"user_message","extra":[1,2]}`, "extra"},
		{"ExtraString", `{"conversation_id":"c1","type":"user_message","extra":"x"}`, "extra"},
		{"ExtraRequestIDNumber", `{"conversation_id":"c1","type":"user_message","extra":{"request_id":7}}`, "extra.request_id"},
		{"RequestIDMismatch", `{"conversation_id":"c1","type":"user_message","request_id":"r1","extra":{"request_id":"r2"}}`, "request_id"},
		{"RequestIDNumber", `{"conversation_id":"c1","type":"user_message","request_id":7}`, "request_id"},
		{"TypeNumber", `{"conversation_id":"c1","type":1}`, "type"},
		{"ConversationIDNumber", `{"conversation_id":1,"type":"user_message"}`, "conversation_id"},
		{"UsageInputString", `{"conversation_id":"c1","type":"usage_recorded","usage":{"input":"7"}}`, "usage.input"},
		{"SchemaVersionFraction", `{"conversation_id":"c1","type":"user_message","schema_version":1.5}`, "schema_version"},
		{"RawInvalidNested", `{"conversation_id":"c1","type":"user_message","raw":[}`, "event"},
		{"NotJSON", `not json`, "event"},
		{"Truncated", `{"conversation_id":"c1"`, "event"},
		{"TrailingGarbage", `{"conversation_id":"c1"} x`, "event"},
		{"Array", `[{"conversation_id":"c1"}]`, "event"},
		{"Number", `42`, "event"},
		{"Empty", ``, "event"},
		{"InvalidUTF8", "{\"conversation_id\":\"c1\",\"type\":\"user_message\",\"content\":\"caf\xe9\"}", "event"},
		{"InvalidUTF8Key", "{\"conversation_id\":\"c1\",\"\xff\":1}", "event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := events.Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode(%q) = %+v, nil; want an error naming %q", tt.in, e, tt.field)
			}
			if !errors.Is(err, events.ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			var fe *events.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Decode(%q) error %T %v is not a *events.FieldError", tt.in, err, err)
			}
			if fe.Field != tt.field {
				t.Errorf("Decode(%q) error field = %q, want %q (error: %v)", tt.in, fe.Field, tt.field, err)
			}
			if fe.Reason == "" {
				t.Error("FieldError.Reason is empty")
			}
		})
	}
}

func TestDecode_requestID(t *testing.T) {
	tests := []struct {
		name, in  string
		wantExtra map[string]any
	}{
		{"TopLevel", `{"conversation_id":"c1","type":"user_message","content":"hi","request_id":"r1"}`, nil},
		{"InExtra", `{"conversation_id":"c1","type":"user_message","content":"hi","extra":{"request_id":"r1"}}`, nil},
		{"Both", `{"conversation_id":"c1","type":"user_message","content":"hi","request_id":"r1","extra":{"request_id":"r1"}}`, nil},
		{"InExtraWithOthers", `{"conversation_id":"c1","type":"user_message","content":"hi","extra":{"request_id":"r1","source":"web"}}`,
			map[string]any{"source": "web"}},
		{"TopLevelExtraNull", `{"conversation_id":"c1","type":"user_message","content":"hi","request_id":"r1","extra":{"request_id":null,"a":true}}`,
			map[string]any{"a": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustDecode(t, tt.in)
			if e.RequestID != "r1" {
				t.Errorf("RequestID = %q, want %q", e.RequestID, "r1")
			}
			if !reflect.DeepEqual(e.Extra, tt.wantExtra) {
				t.Errorf("Extra = %#v, want %#v", e.Extra, tt.wantExtra)
			}
		})
	}
	t.Run("Absent", func(t *testing.T) {
		e := mustDecode(t, `{"conversation_id":"c1","type":"user_message","content":"hi"}`)
		if e.RequestID != "" || e.Extra != nil {
			t.Errorf("RequestID, Extra = %q, %#v; want empty", e.RequestID, e.Extra)
		}
	})
}

func TestEvent_MarshalJSON(t *testing.T) {
	t.Run("Documented", func(t *testing.T) {
		e := events.Event{
			ID: "01J", ConversationID: "c1", Seq: 3, Pos: 17,
			Type: events.TypeUserMessage, SchemaVersion: 2,
			CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
			Role:      events.RoleUser, Content: events.NewText("hi"), RequestID: "r1",
		}
		want := `{"id":"01J","conversation_id":"c1","seq":3,"pos":17,"type":"user_message",` +
			`"schema_version":2,"created_at":"2026-01-02T03:04:05.000000006Z",` +
			`"role":"user","content":"hi","request_id":"r1","extra":{"request_id":"r1"}}`
		if got := mustEncode(t, e); got != want {
			t.Errorf("MarshalJSON() =\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("Minimal", func(t *testing.T) {
		e := events.Event{ConversationID: "c1", Type: events.TypeConversationStarted}
		want := `{"conversation_id":"c1","type":"conversation_started"}`
		if got := mustEncode(t, e); got != want {
			t.Errorf("MarshalJSON() = %s, want %s", got, want)
		}
	})
	t.Run("RequestIDWithExtra", func(t *testing.T) {
		e := events.Event{
			ConversationID: "c1", Type: events.TypeAssistantDelta, RequestID: "delta:u1:0",
			Extra: map[string]any{"user_request_id": "u1", "index": json.Number("0")},
		}
		want := `{"conversation_id":"c1","type":"assistant_delta","request_id":"delta:u1:0",` +
			`"extra":{"index":0,"request_id":"delta:u1:0","user_request_id":"u1"}}`
		if got := mustEncode(t, e); got != want {
			t.Errorf("MarshalJSON() =\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("ViaEncodingJSON", func(t *testing.T) {
		// json.Marshal of an Event (and of a pointer) uses the wire format.
		e := events.Event{ConversationID: "c1", Type: events.TypeTitleSet, RequestID: "r"}
		want := `{"conversation_id":"c1","type":"title_set","request_id":"r","extra":{"request_id":"r"}}`
		for _, v := range []any{e, &e} {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != want {
				t.Errorf("json.Marshal(%T) = %s, want %s", v, b, want)
			}
		}
	})
	t.Run("Everything", func(t *testing.T) {
		e := events.Event{
			ConversationID: "c1", Type: events.TypeAssistantMessage,
			ToolCalls:  []events.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}},
			ToolCallID: "t", Provider: "openai", Model: "gpt-x", StopReason: "tool_calls",
			Usage: &events.Usage{Input: 1, Output: 2, CacheRead: 3, CacheWrite: 4, Reasoning: 5, Cost: 0.25},
			Raw:   json.RawMessage(`{"id":"x"}`),
		}
		want := `{"conversation_id":"c1","type":"assistant_message",` +
			`"tool_calls":[{"id":"call_1","name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}],` +
			`"tool_call_id":"t","provider":"openai","model":"gpt-x","stop_reason":"tool_calls",` +
			`"usage":{"input":1,"output":2,"cache_read":3,"cache_write":4,"reasoning":5,"cost":0.25},` +
			`"raw":{"id":"x"}}`
		if got := mustEncode(t, e); got != want {
			t.Errorf("MarshalJSON() =\n%s\nwant\n%s", got, want)
		}
	})
}

func TestDecode_createdAt(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		wire string
	}{
		{"2026-01-02T03:04:05.123456789+02:00", time.Date(2026, 1, 2, 1, 4, 5, 123456789, time.UTC), "2026-01-02T01:04:05.123456789Z"},
		{"2026-01-02T03:04:05Z", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "2026-01-02T03:04:05.000000000Z"},
		{"2026-01-02T03:04:05.5Z", time.Date(2026, 1, 2, 3, 4, 5, 500000000, time.UTC), "2026-01-02T03:04:05.500000000Z"},
		{"2026-01-02T03:04:05.000000001-05:30", time.Date(2026, 1, 2, 8, 34, 5, 1, time.UTC), "2026-01-02T08:34:05.000000001Z"},
		{"2025-12-31T23:59:59.999999999-01:00", time.Date(2026, 1, 1, 0, 59, 59, 999999999, time.UTC), "2026-01-01T00:59:59.999999999Z"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			e := mustDecode(t, `{"conversation_id":"c1","type":"title_set","created_at":"`+tt.in+`"}`)
			if !e.CreatedAt.Equal(tt.want) {
				t.Errorf("CreatedAt = %v, want %v", e.CreatedAt, tt.want)
			}
			if e.CreatedAt.Location() != time.UTC {
				t.Errorf("CreatedAt location = %v, want UTC", e.CreatedAt.Location())
			}
			m := wireObject(t, mustEncode(t, e))
			if got := string(m["created_at"]); got != `"`+tt.wire+`"` {
				t.Errorf("encoded created_at = %s, want %q", got, tt.wire)
			}
			again := mustDecode(t, mustEncode(t, e))
			if !again.CreatedAt.Equal(tt.want) {
				t.Errorf("re-decoded CreatedAt = %v, want %v", again.CreatedAt, tt.want)
			}
		})
	}
	t.Run("FormatTime", func(t *testing.T) {
		oslo := time.FixedZone("CET", 3600)
		got := events.FormatTime(time.Date(2026, 7, 1, 12, 0, 0, 42, oslo))
		if want := "2026-07-01T11:00:00.000000042Z"; got != want {
			t.Errorf("FormatTime() = %q, want %q", got, want)
		}
	})
	t.Run("LocalTimeEncodesUTC", func(t *testing.T) {
		e := events.Event{ConversationID: "c1", Type: events.TypeTitleSet,
			CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 2*3600))}
		m := wireObject(t, mustEncode(t, e))
		if got, want := string(m["created_at"]), `"2026-01-02T01:04:05.123456789Z"`; got != want {
			t.Errorf("encoded created_at = %s, want %s", got, want)
		}
	})
}

func TestContent_roundTrip(t *testing.T) {
	t.Run("String", func(t *testing.T) {
		e := mustDecode(t, `{"conversation_id":"c1","type":"user_message","content":"héllo \"there\"\n"}`)
		if e.Content == nil || e.Content.IsParts() || e.Content.Text != "héllo \"there\"\n" {
			t.Fatalf("Content = %#v, want text", e.Content)
		}
		m := wireObject(t, mustEncode(t, e))
		var s string
		if err := json.Unmarshal(m["content"], &s); err != nil || s != "héllo \"there\"\n" {
			t.Errorf("encoded content = %s, want the same string", m["content"])
		}
	})
	t.Run("EmptyString", func(t *testing.T) {
		e := mustDecode(t, `{"conversation_id":"c1","type":"user_message","content":""}`)
		if e.Content == nil || e.Content.IsParts() || e.Content.Text != "" {
			t.Fatalf("Content = %#v, want empty text (present)", e.Content)
		}
		if got := string(wireObject(t, mustEncode(t, e))["content"]); got != `""` {
			t.Errorf("encoded content = %s, want \"\"", got)
		}
	})
	t.Run("Absent", func(t *testing.T) {
		for _, in := range []string{
			`{"conversation_id":"c1","type":"title_set"}`,
			`{"conversation_id":"c1","type":"title_set","content":null}`,
		} {
			if e := mustDecode(t, in); e.Content != nil {
				t.Errorf("Decode(%s).Content = %#v, want nil", in, e.Content)
			}
		}
	})
	t.Run("EmptyParts", func(t *testing.T) {
		e := mustDecode(t, `{"conversation_id":"c1","type":"user_message","content":[]}`)
		if !e.Content.IsParts() || len(e.Content.Parts) != 0 {
			t.Fatalf("Content = %#v, want empty parts", e.Content)
		}
		if got := string(wireObject(t, mustEncode(t, e))["content"]); got != `[]` {
			t.Errorf("encoded content = %s, want []", got)
		}
	})
	t.Run("Parts", func(t *testing.T) {
		const imageURL = `{"url":"https://example.com/cat.png","detail":"low"}`
		in := `{"conversation_id":"c1","type":"user_message","content":[` +
			`{"type":"text","text":"what is this?"},` +
			`{"type":"image_url","image_url":` + imageURL + `},` +
			`{"type":"text","text":"and this","cache_control":{"type":"ephemeral"}}]}`
		e := mustDecode(t, in)
		want := events.NewParts(
			events.TextPart("what is this?"),
			events.Part{Type: "image_url", Fields: map[string]json.RawMessage{"image_url": json.RawMessage(imageURL)}},
			events.Part{Type: "text", Text: "and this", Fields: map[string]json.RawMessage{"cache_control": json.RawMessage(`{"type":"ephemeral"}`)}},
		)
		if !reflect.DeepEqual(e.Content, want) {
			t.Fatalf("Content =\n%#v\nwant\n%#v", e.Content, want)
		}
		if got, want := e.Text(), "what is this?\nand this"; got != want {
			t.Errorf("Text() = %q, want %q", got, want)
		}
		enc := mustEncode(t, e)
		// Unknown members are written back byte for byte (key order kept).
		if !strings.Contains(enc, `"image_url":`+imageURL) {
			t.Errorf("encoded event lost image_url verbatim:\n%s", enc)
		}
		var parts []map[string]json.RawMessage
		if err := json.Unmarshal(wireObject(t, enc)["content"], &parts); err != nil {
			t.Fatalf("encoded content is not an array of objects: %v", err)
		}
		wantParts := []map[string]json.RawMessage{
			{"type": json.RawMessage(`"text"`), "text": json.RawMessage(`"what is this?"`)},
			{"type": json.RawMessage(`"image_url"`), "image_url": json.RawMessage(imageURL)},
			{"type": json.RawMessage(`"text"`), "text": json.RawMessage(`"and this"`), "cache_control": json.RawMessage(`{"type":"ephemeral"}`)},
		}
		if !reflect.DeepEqual(parts, wantParts) {
			t.Errorf("encoded parts =\n%s\nwant\n%s", parts, wantParts)
		}
		if again := mustDecode(t, enc); !reflect.DeepEqual(again.Content, want) {
			t.Errorf("re-decoded Content =\n%#v\nwant\n%#v", again.Content, want)
		}
	})
	t.Run("PartFieldsCanonical", func(t *testing.T) {
		// Whitespace inside an unknown member is not kept: decoding
		// yields the compact form, the same that encoding writes, so a
		// second round trip changes nothing.
		e := mustDecode(t, `{"conversation_id":"c1","type":"user_message","content":[{"type":"image_url","image_url": { "url" : "a<b" } }]}`)
		want := json.RawMessage(`{"url":"a\u003cb"}`)
		if got := e.Content.Parts[0].Fields["image_url"]; string(got) != string(want) {
			t.Errorf("Fields[image_url] = %s, want %s", got, want)
		}
		if again := mustDecode(t, mustEncode(t, e)); !reflect.DeepEqual(again, e) {
			t.Errorf("round trip changed the event:\n%#v\n%#v", again, e)
		}
	})
}

func TestDecode_extraNumbers(t *testing.T) {
	in := `{"conversation_id":"c1","type":"title_set","extra":{"big":12345678901234567890,"f":0.1,"e":1.0e3,"neg":-7,"nested":{"n":[1.50,2]}}}`
	e := mustDecode(t, in)
	want := map[string]any{
		"big":    json.Number("12345678901234567890"),
		"f":      json.Number("0.1"),
		"e":      json.Number("1.0e3"),
		"neg":    json.Number("-7"),
		"nested": map[string]any{"n": []any{json.Number("1.50"), json.Number("2")}},
	}
	if !reflect.DeepEqual(e.Extra, want) {
		t.Fatalf("Extra = %#v, want %#v", e.Extra, want)
	}
	got := string(wireObject(t, mustEncode(t, e))["extra"])
	if wantWire := `{"big":12345678901234567890,"e":1.0e3,"f":0.1,"neg":-7,"nested":{"n":[1.50,2]}}`; got != wantWire {
		t.Errorf("encoded extra = %s, want %s", got, wantWire)
	}
	if n, ok := e.ExtraInt("neg"); !ok || n != -7 {
		t.Errorf("ExtraInt(neg) = %d, %v; want -7, true", n, ok)
	}
	if _, ok := e.ExtraInt("f"); ok {
		t.Error("ExtraInt(f) ok for 0.1")
	}
}

func TestDecode_normalForm(t *testing.T) {
	// What Decode returns is what Decode(MarshalJSON(...)) returns:
	// empty objects and null members vanish, raw is compact.
	tests := []struct {
		name, in string
		check    func(testing.TB, events.Event)
	}{
		{"EmptyExtra", `{"conversation_id":"c1","type":"title_set","extra":{}}`, func(tb testing.TB, e events.Event) {
			if e.Extra != nil {
				tb.Errorf("Extra = %#v, want nil", e.Extra)
			}
		}},
		{"ExtraOnlyRequestID", `{"conversation_id":"c1","type":"title_set","extra":{"request_id":"r"}}`, func(tb testing.TB, e events.Event) {
			if e.Extra != nil {
				tb.Errorf("Extra = %#v, want nil", e.Extra)
			}
		}},
		{"RawCompact", `{"conversation_id":"c1","type":"title_set","raw": { "a" : [1, 2] , "b":"<&>" } }`, func(tb testing.TB, e events.Event) {
			if want := `{"a":[1,2],"b":"\u003c\u0026\u003e"}`; string(e.Raw) != want {
				tb.Errorf("Raw = %s, want %s", e.Raw, want)
			}
		}},
		{"RawNull", `{"conversation_id":"c1","type":"title_set","raw":null}`, func(tb testing.TB, e events.Event) {
			if e.Raw != nil {
				tb.Errorf("Raw = %s, want nil", e.Raw)
			}
		}},
		{"SchemaVersionMissing", `{"conversation_id":"c1","type":"title_set"}`, func(tb testing.TB, e events.Event) {
			if e.SchemaVersion != events.CurrentSchemaVersion {
				tb.Errorf("SchemaVersion = %d, want %d", e.SchemaVersion, events.CurrentSchemaVersion)
			}
		}},
		{"SchemaVersionNegative", `{"conversation_id":"c1","type":"title_set","schema_version":-1}`, func(tb testing.TB, e events.Event) {
			if e.Validate() == nil {
				tb.Errorf("schema_version -1 decoded to %d and validates", e.SchemaVersion)
			}
		}},
		{"EmptyToolCalls", `{"conversation_id":"c1","type":"assistant_message","content":"ok","tool_calls":[]}`, func(tb testing.TB, e events.Event) {
			if e.ToolCalls != nil {
				tb.Errorf("ToolCalls = %#v, want nil", e.ToolCalls)
			}
		}},
		{"LegacyDeltaOnlyKind", `{"conversation_id":"c1","type":"meta","extra":{"kind":"assistant_delta"}}`, func(tb testing.TB, e events.Event) {
			if e.Type != events.TypeAssistantDelta || e.Extra != nil {
				tb.Errorf("Type, Extra = %q, %#v; want assistant_delta, nil", e.Type, e.Extra)
			}
		}},
		{"SeqNull", `{"conversation_id":"c1","type":"title_set","seq":null}`, func(tb testing.TB, e events.Event) {
			if e.Seq != 0 {
				tb.Errorf("Seq = %d, want 0", e.Seq)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustDecode(t, tt.in)
			tt.check(t, e)
			if again := mustDecode(t, mustEncode(t, e)); !reflect.DeepEqual(again, e) {
				t.Errorf("Decode(MarshalJSON(e)) != e:\n%#v\n%#v", again, e)
			}
		})
	}
}

// roundTripEvents are hand-built events in normal form: UTC times, the
// current schema version, extra numbers as json.Number, compact raw.
func roundTripEvents() map[string]events.Event {
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	return map[string]events.Event{
		"UserMessage": {
			ID: "01JGZ5Q8W6S4R3T2V1X0Y9Z8A7", ConversationID: "0194a7a0-0000-7000-8000-000000000001",
			Seq: 1, Pos: 10, Type: events.TypeUserMessage, SchemaVersion: 2, CreatedAt: at,
			Role: events.RoleUser, Content: events.NewText("What's the weather in Oslo?"), RequestID: "req-1",
		},
		"AssistantToolCall": {
			ConversationID: "c1", Seq: 2, Type: events.TypeAssistantMessage, SchemaVersion: 2, CreatedAt: at,
			ToolCalls: []events.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}},
			Provider:  "openai", Model: "gpt-4o", StopReason: "tool_calls",
			Usage:     &events.Usage{Input: 120, Output: 15, CacheRead: 100, Cost: 0.00042},
			RequestID: "assistant:req-1",
			Raw:       json.RawMessage(`{"id":"chatcmpl-1","choices":[{"index":0}]}`),
		},
		"ToolResult": {
			ConversationID: "c1", Seq: 3, Type: events.TypeToolResult, SchemaVersion: 2,
			ToolCallID: "call_1", Content: events.NewText(`{"temp_c":-3}`),
		},
		"Delta": {
			ConversationID: "c1", Seq: 4, Type: events.TypeAssistantDelta, SchemaVersion: 2,
			Role: events.RoleAssistant, Content: events.NewText("Hel"), RequestID: "delta:req-2:1:0",
			Extra: map[string]any{"user_request_id": "req-2", "index": json.Number("0"), "attempt": json.Number("1")},
		},
		"Parts": {
			ConversationID: "c1", Type: events.TypeUserMessage, SchemaVersion: 2,
			Content: events.NewParts(events.TextPart("see"), events.Part{Type: "image", Fields: map[string]json.RawMessage{
				"source": json.RawMessage(`{"type":"base64","media_type":"image/png","data":"iVBORw0K"}`),
			}}),
		},
		"Custom": {
			ConversationID: "c1", Type: "x-feedback", SchemaVersion: 2,
			Extra: map[string]any{"score": json.Number("0.1"), "ok": true, "tags": []any{"a", nil}, "n": nil},
		},
		"UsageZero": {
			ConversationID: "c1", Type: events.TypeUsageRecorded, SchemaVersion: 2, Usage: &events.Usage{},
		},
	}
}

func TestEvent_roundTrip(t *testing.T) {
	for name, e := range roundTripEvents() {
		t.Run(name, func(t *testing.T) {
			if err := e.Validate(); err != nil {
				t.Fatalf("test event does not validate: %v", err)
			}
			got := mustDecode(t, mustEncode(t, e))
			if !reflect.DeepEqual(got, e) {
				t.Errorf("Decode(MarshalJSON(e)) =\n%#v\nwant\n%#v", got, e)
			}
			// encoding/json reaches the same codec.
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			var viaStd events.Event
			if err := json.Unmarshal(b, &viaStd); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(viaStd, e) {
				t.Errorf("json.Unmarshal(json.Marshal(e)) =\n%#v\nwant\n%#v", viaStd, e)
			}
		})
	}
}

func TestEvent_DecodeStored(t *testing.T) {
	for name, e := range roundTripEvents() {
		t.Run(name, func(t *testing.T) {
			st, err := e.EncodeStored()
			if err != nil {
				t.Fatal(err)
			}
			// The columns stored beside the payload.
			got := events.Event{
				ID: e.ID, ConversationID: e.ConversationID, Seq: e.Seq, Pos: e.Pos, Type: e.Type,
				SchemaVersion: e.SchemaVersion, CreatedAt: e.CreatedAt, Role: e.Role,
			}
			if err := got.DecodeStored(st.Text, st.TextSet, st.Body, st.Extra); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, e) {
				t.Errorf("DecodeStored =\n%#v\nwant\n%#v", got, e)
			}
			if !json.Valid(st.Extra) {
				t.Errorf("stored extra %s is not valid JSON", st.Extra)
			}
		})
	}
	t.Run("MarshalExtra", func(t *testing.T) {
		tests := []struct {
			e    events.Event
			want string
		}{
			{events.Event{}, `{}`},
			{events.Event{RequestID: "r1"}, `{"request_id":"r1"}`},
			{events.Event{RequestID: `a"b`}, `{"request_id":"a\"b"}`},
			{events.Event{Extra: map[string]any{"z": "1", "a": json.Number("2")}}, `{"a":2,"z":"1"}`},
			{events.Event{RequestID: "r1", Extra: map[string]any{"z": "1", "a": json.Number("2")}}, `{"a":2,"request_id":"r1","z":"1"}`},
		}
		for _, tt := range tests {
			got, err := tt.e.MarshalExtra()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("MarshalExtra(%+v) = %s, want %s", tt.e, got, tt.want)
			}
		}
	})
}

func TestDecode_legacy(t *testing.T) {
	t.Run("Delta", func(t *testing.T) {
		e := mustDecode(t, `{"conversation_id":"c1","type":"meta","extra":{"kind":"assistant_delta","user_request_id":"u1","request_id":"delta:u1:0"},"content":"Hel"}`)
		if e.Type != events.TypeAssistantDelta {
			t.Errorf("Type = %q, want %q", e.Type, events.TypeAssistantDelta)
		}
		if e.Role != events.RoleAssistant {
			t.Errorf("Role = %q, want %q", e.Role, events.RoleAssistant)
		}
		if e.SchemaVersion != events.CurrentSchemaVersion {
			t.Errorf("SchemaVersion = %d, want %d", e.SchemaVersion, events.CurrentSchemaVersion)
		}
		if e.RequestID != "delta:u1:0" {
			t.Errorf("RequestID = %q, want delta:u1:0", e.RequestID)
		}
		if want := map[string]any{"user_request_id": "u1"}; !reflect.DeepEqual(e.Extra, want) {
			t.Errorf("Extra = %#v, want %#v", e.Extra, want)
		}
		if e.Text() != "Hel" {
			t.Errorf("Text() = %q, want Hel", e.Text())
		}
		if err := e.Validate(); err != nil {
			t.Errorf("upcast delta does not validate: %v", err)
		}
	})
	t.Run("DeltaWithVersion1", func(t *testing.T) {
		e := mustDecode(t, `{"conversation_id":"c1","type":"meta","schema_version":1,"extra":{"kind":"assistant_delta","user_request_id":"u1","index":3}}`)
		if e.Type != events.TypeAssistantDelta || e.SchemaVersion != events.CurrentSchemaVersion {
			t.Errorf("Type, SchemaVersion = %q, %d; want assistant_delta, %d", e.Type, e.SchemaVersion, events.CurrentSchemaVersion)
		}
		if n, ok := e.ExtraInt("index"); !ok || n != 3 {
			t.Errorf("ExtraInt(index) = %d, %v; want 3, true", n, ok)
		}
	})
	t.Run("OtherMeta", func(t *testing.T) {
		e := mustDecode(t, `{"conversation_id":"c1","type":"meta","extra":{"kind":"title","title":"Weather"}}`)
		if e.Type != events.TypeMeta {
			t.Errorf("Type = %q, want meta", e.Type)
		}
		if e.Role != "" {
			t.Errorf("Role = %q, want empty", e.Role)
		}
		if want := map[string]any{"kind": "title", "title": "Weather"}; !reflect.DeepEqual(e.Extra, want) {
			t.Errorf("Extra = %#v, want %#v", e.Extra, want)
		}
		if e.SchemaVersion != events.CurrentSchemaVersion {
			t.Errorf("SchemaVersion = %d, want %d", e.SchemaVersion, events.CurrentSchemaVersion)
		}
	})
	t.Run("MetaWithoutKind", func(t *testing.T) {
		e := mustDecode(t, `{"conversation_id":"c1","type":"meta"}`)
		if e.Type != events.TypeMeta || e.Extra != nil {
			t.Errorf("Type, Extra = %q, %#v; want meta, nil", e.Type, e.Extra)
		}
	})
	t.Run("KindOnlyOnMeta", func(t *testing.T) {
		e := mustDecode(t, `{"conversation_id":"c1","type":"x-log","extra":{"kind":"assistant_delta"}}`)
		if e.Type != "x-log" {
			t.Errorf("Type = %q, want x-log", e.Type)
		}
	})
}
