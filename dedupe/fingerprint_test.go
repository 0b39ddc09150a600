package dedupe_test

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/events"
)

// fingerprint returns dedupe.Of(e) or fails the test.
func fingerprint(tb testing.TB, e events.Event) dedupe.Fingerprint {
	tb.Helper()
	f, err := dedupe.Of(&e)
	if err != nil {
		tb.Fatalf("Of(%+v) = %v", e, err)
	}
	return f
}

// decode decodes line or fails the test.
func decode(tb testing.TB, line string) events.Event {
	tb.Helper()
	e, err := events.Decode([]byte(line))
	if err != nil {
		tb.Fatalf("Decode(%s) = %v", line, err)
	}
	return e
}

// baseEvent is an assistant message that sets every fingerprinted field,
// so each subtest can change exactly one.
func baseEvent() events.Event {
	return events.Event{
		ID:             "01JGZ5Q8W6S4R3T2V1X0Y9Z8A7",
		ConversationID: "c1",
		Seq:            4,
		Pos:            40,
		Type:           events.TypeAssistantMessage,
		SchemaVersion:  events.CurrentSchemaVersion,
		CreatedAt:      time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		Content:        events.NewText("It is cold."),
		ToolCalls:      []events.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}},
		ToolCallID:     "",
		Provider:       "openai",
		Model:          "gpt-4o",
		StopReason:     "tool_calls",
		Usage:          &events.Usage{Input: 10, Output: 5, CacheRead: 2, CacheWrite: 1, Reasoning: 3, Cost: 0.5},
		RequestID:      "assistant:u1",
		Extra:          map[string]any{"user_request_id": "u1", "attempt": json.Number("1")},
		Raw:            json.RawMessage(`{"id":"chatcmpl-1"}`),
	}
}

func TestOf(t *testing.T) {
	base := fingerprint(t, baseEvent())

	t.Run("Deterministic", func(t *testing.T) {
		if got := fingerprint(t, baseEvent()); got != base {
			t.Errorf("Of differs for the same event: %x vs %x", got, base)
		}
		if base == (dedupe.Fingerprint{}) {
			t.Error("Of returned the zero fingerprint")
		}
	})

	same := map[string]func(*events.Event){
		"ID":             func(e *events.Event) { e.ID = "01JGZ5Q8W6S4R3T2V1X0Y9Z8A8" },
		"NoID":           func(e *events.Event) { e.ID = "" },
		"Seq":            func(e *events.Event) { e.Seq = 99 },
		"Pos":            func(e *events.Event) { e.Pos = 0 },
		"CreatedAt":      func(e *events.Event) { e.CreatedAt = e.CreatedAt.Add(time.Hour) },
		"NoCreatedAt":    func(e *events.Event) { e.CreatedAt = time.Time{} },
		"SchemaVersion":  func(e *events.Event) { e.SchemaVersion = 1 },
		"NoVersion":      func(e *events.Event) { e.SchemaVersion = 0 },
		"RequestID":      func(e *events.Event) { e.RequestID = "other" },
		"ConversationID": func(e *events.Event) { e.ConversationID = "c2" },
		"ImpliedRole":    func(e *events.Event) { e.Role = events.RoleAssistant },
		"ExtraOrder": func(e *events.Event) {
			// Same content, built in the opposite insertion order.
			m := make(map[string]any)
			m["attempt"] = json.Number("1")
			m["user_request_id"] = "u1"
			e.Extra = m
		},
		"Clone": func(e *events.Event) { *e = e.Clone() },
	}
	for name, mutate := range same {
		t.Run("Same/"+name, func(t *testing.T) {
			e := baseEvent()
			mutate(&e)
			if got := fingerprint(t, e); got != base {
				t.Errorf("Of changed when only %s changed", name)
			}
		})
	}

	differ := map[string]func(*events.Event){
		"Content":         func(e *events.Event) { e.Content = events.NewText("It is warm.") },
		"NoContent":       func(e *events.Event) { e.Content = nil },
		"EmptyContent":    func(e *events.Event) { e.Content = events.NewText("") },
		"ContentAsParts":  func(e *events.Event) { e.Content = events.NewParts(events.TextPart("It is cold.")) },
		"Type":            func(e *events.Event) { e.Type = events.TypeAssistantDelta },
		"Role":            func(e *events.Event) { e.Role = events.RoleSystem },
		"ToolCallArgs":    func(e *events.Event) { e.ToolCalls[0].Arguments = `{"city":"Bergen"}` },
		"ToolCallName":    func(e *events.Event) { e.ToolCalls[0].Name = "get_time" },
		"ToolCallID":      func(e *events.Event) { e.ToolCalls[0].ID = "call_2" },
		"NoToolCalls":     func(e *events.Event) { e.ToolCalls = nil },
		"ExtraToolCall":   func(e *events.Event) { e.ToolCalls = append(e.ToolCalls, events.ToolCall{ID: "call_2", Name: "f"}) },
		"ResultCallID":    func(e *events.Event) { e.ToolCallID = "call_1" },
		"ExtraValue":      func(e *events.Event) { e.Extra["attempt"] = json.Number("2") },
		"ExtraKey":        func(e *events.Event) { e.Extra["x"] = true },
		"NoExtra":         func(e *events.Event) { e.Extra = nil },
		"UsageInput":      func(e *events.Event) { e.Usage.Input++ },
		"UsageOutput":     func(e *events.Event) { e.Usage.Output++ },
		"UsageCacheRead":  func(e *events.Event) { e.Usage.CacheRead++ },
		"UsageCacheWrite": func(e *events.Event) { e.Usage.CacheWrite++ },
		"UsageReasoning":  func(e *events.Event) { e.Usage.Reasoning++ },
		"UsageCost":       func(e *events.Event) { e.Usage.Cost = 0.25 },
		"NoUsage":         func(e *events.Event) { e.Usage = nil },
		"ZeroUsage":       func(e *events.Event) { e.Usage = &events.Usage{} },
		"Raw":             func(e *events.Event) { e.Raw = json.RawMessage(`{"id":"chatcmpl-2"}`) },
		"NoRaw":           func(e *events.Event) { e.Raw = nil },
		"Model":           func(e *events.Event) { e.Model = "gpt-4o-mini" },
		"Provider":        func(e *events.Event) { e.Provider = "azure" },
		"StopReason":      func(e *events.Event) { e.StopReason = "stop" },
	}
	seen := map[dedupe.Fingerprint]string{base: "base"}
	for name, mutate := range differ {
		t.Run("Differs/"+name, func(t *testing.T) {
			e := baseEvent()
			mutate(&e)
			got := fingerprint(t, e)
			if got == base {
				t.Fatalf("Of unchanged when %s changed", name)
			}
			if other, dup := seen[got]; dup {
				t.Errorf("Of(%s) == Of(%s)", name, other)
			}
			seen[got] = name
		})
	}

	t.Run("NegativeZeroCost", func(t *testing.T) {
		pos, neg := baseEvent(), baseEvent()
		pos.Usage.Cost = 0
		neg.Usage.Cost = math.Copysign(0, -1)
		if fingerprint(t, pos) != fingerprint(t, neg) {
			t.Error("usage cost 0 and -0 differ")
		}
	})

	t.Run("FieldBoundaries", func(t *testing.T) {
		// Moving text from one string field to the next must change the
		// fingerprint: fields are framed, not concatenated.
		a := events.Event{Type: events.TypeAssistantMessage, Provider: "ab", Model: "c"}
		b := events.Event{Type: events.TypeAssistantMessage, Provider: "a", Model: "bc"}
		if fingerprint(t, a) == fingerprint(t, b) {
			t.Error("Of(provider ab, model c) == Of(provider a, model bc)")
		}
	})
}

func TestOf_decoded(t *testing.T) {
	t.Run("LegacyDelta", func(t *testing.T) {
		legacy := decode(t, `{"id":"01A","conversation_id":"c1","seq":5,"type":"meta","created_at":"2025-06-01T10:00:00Z",`+
			`"extra":{"kind":"assistant_delta","user_request_id":"u1","index":0,"request_id":"delta:u1:0"},"content":"Hel"}`)
		current := decode(t, `{"id":"01B","conversation_id":"c1","seq":9,"type":"assistant_delta","schema_version":2,`+
			`"created_at":"2026-01-02T03:04:05.000000000Z","request_id":"delta:u1:0",`+
			`"extra":{"index":0,"user_request_id":"u1"},"content":"Hel"}`)
		if fingerprint(t, legacy) != fingerprint(t, current) {
			t.Errorf("legacy and current encodings of one delta differ:\n%+v\n%+v", legacy, current)
		}
		other := decode(t, `{"conversation_id":"c1","type":"assistant_delta","request_id":"delta:u1:0",`+
			`"extra":{"index":0,"user_request_id":"u1"},"content":"Hello"}`)
		if fingerprint(t, other) == fingerprint(t, current) {
			t.Error("deltas with different content have one fingerprint")
		}
	})
	t.Run("RequestIDPlacement", func(t *testing.T) {
		a := decode(t, `{"conversation_id":"c1","type":"user_message","content":"hi","request_id":"r1"}`)
		b := decode(t, `{"conversation_id":"c1","type":"user_message","content":"hi","extra":{"request_id":"r1"}}`)
		if fingerprint(t, a) != fingerprint(t, b) {
			t.Error("request_id top level and in extra give different fingerprints")
		}
	})
	t.Run("ExtraKeyOrder", func(t *testing.T) {
		a := decode(t, `{"conversation_id":"c1","type":"x-note","extra":{"a":1,"b":{"c":2,"d":[3]}}}`)
		b := decode(t, `{"conversation_id":"c1","type":"x-note","extra":{"b":{"d":[3],"c":2},"a":1}}`)
		if fingerprint(t, a) != fingerprint(t, b) {
			t.Error("extra objects differing only in key order give different fingerprints")
		}
	})
	t.Run("Whitespace", func(t *testing.T) {
		a := decode(t, `{"conversation_id":"c1","type":"user_message","content":[{"type":"image_url","image_url":{"url":"u"}}],"raw":{"a":1}}`)
		b := decode(t, "{ \"conversation_id\" : \"c1\" ,\n \"type\":\"user_message\", \"content\": [ { \"type\": \"image_url\", \"image_url\": { \"url\": \"u\" } } ], \"raw\": { \"a\": 1 } }")
		if fingerprint(t, a) != fingerprint(t, b) {
			t.Error("JSON whitespace changes the fingerprint")
		}
	})
	t.Run("StoredAndRetried", func(t *testing.T) {
		// A retry arrives as JSON; the stored copy comes back through
		// EncodeStored/DecodeStored. Both must fingerprint alike.
		const line = `{"conversation_id":"c1","type":"assistant_message","content":"a < b & c",` +
			`"raw":{"html":"<b>bold</b> & more","sep":"\u2028"},"request_id":"assistant:u1","extra":{"user_request_id":"u1"}}`
		retry := decode(t, line)
		stored := storedCopy(t, retry)
		if fingerprint(t, retry) != fingerprint(t, stored) {
			t.Errorf("stored and retried event differ:\nraw %s\nraw %s", retry.Raw, stored.Raw)
		}
	})
	t.Run("GoBuiltRaw", func(t *testing.T) {
		// A Go caller's raw payload need not be compact; the stored copy
		// is, and a retry must still match it.
		e := baseEvent()
		e.Raw = json.RawMessage("{ \"id\" : \"<x>\" }\n")
		stored := storedCopy(t, e)
		if fingerprint(t, e) != fingerprint(t, stored) {
			t.Errorf("stored and retried event differ:\nraw %s\nraw %s", e.Raw, stored.Raw)
		}
		e.Raw = json.RawMessage(`null`)
		noRaw := baseEvent()
		noRaw.Raw = nil
		if fingerprint(t, e) != fingerprint(t, noRaw) {
			t.Error("raw null and no raw differ")
		}
	})
	t.Run("NegativeZeroCostRoundTrip", func(t *testing.T) {
		a := decode(t, `{"conversation_id":"c1","type":"usage_recorded","usage":{"input":1,"cost":-0}}`)
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		again := decode(t, string(b))
		if fingerprint(t, a) != fingerprint(t, again) {
			t.Error("cost -0 and its re-encoding (0) differ")
		}
	})
}

// storedCopy returns e as a backend reads it back: the columns beside the
// payload plus what EncodeStored wrote. It also checks that the append
// path's fingerprint (OfEncoded over the stored ExtraJSON) equals Of.
func storedCopy(tb testing.TB, e events.Event) events.Event {
	tb.Helper()
	st, err := e.EncodeStored()
	if err != nil {
		tb.Fatal(err)
	}
	f1, err1 := dedupe.Of(&e)
	f2, err2 := dedupe.OfEncoded(&e, st.ExtraJSON)
	if err1 != nil || err2 != nil || f1 != f2 {
		tb.Fatalf("Of = %x, %v; OfEncoded(ExtraJSON) = %x, %v", f1, err1, f2, err2)
	}
	s := events.Event{ConversationID: e.ConversationID, Type: e.Type, Role: e.Role}
	if err := s.DecodeStored(st.Text, st.TextSet, st.Body, st.Extra); err != nil {
		tb.Fatal(err)
	}
	return s
}
