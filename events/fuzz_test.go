package events_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/events"
)

// seedLines are realistic log lines, current and legacy, valid and not.
var seedLines = []string{
	`{"id":"01JGZ5Q8W6S4R3T2V1X0Y9Z8A7","conversation_id":"c1","seq":3,"pos":17,"type":"user_message","schema_version":2,"created_at":"2026-01-02T03:04:05.000000006Z","role":"user","content":"hi","request_id":"r1","extra":{"request_id":"r1"}}`,
	`{"conversation_id":"c1","type":"user_message","content":"What's the weather in Oslo?","request_id":"req-1"}`,
	`{"conversation_id":"c1","type":"assistant_message","tool_calls":[{"id":"call_1","name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}],"provider":"openai","model":"gpt-4o","stop_reason":"tool_calls","usage":{"input":120,"output":15,"cost":0.00042},"raw":{"id":"chatcmpl-1"}}`,
	`{"conversation_id":"c1","type":"tool_result","tool_call_id":"call_1","content":"{\"temp_c\":-3}"}`,
	`{"conversation_id":"c1","type":"assistant_delta","request_id":"delta:u1:1:0","extra":{"user_request_id":"u1","index":0,"attempt":1},"content":"Hel"}`,
	`{"conversation_id":"c1","type":"meta","extra":{"kind":"assistant_delta","user_request_id":"u1","request_id":"delta:u1:0"},"content":"Hel"}`,
	`{"conversation_id":"c1","type":"meta","extra":{"kind":"title","title":"Weather"}}`,
	`{"conversation_id":"c1","type":"user_message","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"https://example.com/cat.png","detail":"low"}}]}`,
	`{"conversation_id":"c1","type":"system_update","content":"be brief","extra":{"visible_to_model":true}}`,
	`{"conversation_id":"c1","type":"x-feedback","extra":{"score":12345678901234567890,"ratio":0.1,"tags":["a",null]}}`,
	`{"conversation_id":"c1","type":"usage_recorded","usage":{"input":1,"cost":-0}}`,
	`{"conversation_id":"c1","type":"title_set","created_at":"2026-01-02T03:04:05.123456789+02:00","extra":{}}`,
	`{"conversation_id":"c1","type":"title_set","raw": { "a" : "<&>" } }`,
	`{"conversation_id":"c1","type":"user_message","content":[{"type":"image_url","image_url": { "url" : "a<b" } }]}`,
	`{"conversation_id":"c1","type":"assistant_message","content":"ok","tool_calls":[]}`,
	`{"conversation_id":"c1","type":"title_set","schema_version":-1}`,
	`{"conversation_id":"c1","type":"user_message","seq":"abc"}`,
	`{"conversation_id":"c1","type":"user_message","request_id":"r1","extra":{"request_id":"r2"}}`,
	"{\"conversation_id\":\"c1\",\"type\":\"user_message\",\"content\":\"caf\xe9\"}",
	`not json`,
}

func FuzzDecodeValidate(f *testing.F) {
	for _, line := range seedLines {
		f.Add([]byte(line))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := events.Decode(data)
		if err != nil {
			var fe *events.FieldError
			if !errors.As(err, &fe) || !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Decode error %T %v is not a *FieldError matching ErrInvalid", err, err)
			}
			return
		}
		if e.Validate() != nil {
			return
		}
		enc, err := e.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON of a valid decoded event: %v\n%#v", err, e)
		}
		if !json.Valid(enc) {
			t.Fatalf("MarshalJSON wrote invalid JSON: %s", enc)
		}
		again, err := events.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(MarshalJSON(e)) = %v\nencoded: %s", err, enc)
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("Decode(MarshalJSON(e)) != e\ninput:   %q\nencoded: %s\ngot:  %#v\nwant: %#v", data, enc, again, e)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("re-decoded event does not validate: %v", err)
		}
		if enc2, err := again.MarshalJSON(); err != nil || string(enc2) != string(enc) {
			t.Fatalf("encoding is not stable:\n%s\n%s (err %v)", enc, enc2, err)
		}
		f1, err1 := dedupe.Of(&e)
		f2, err2 := dedupe.Of(&again)
		if err1 != nil || err2 != nil {
			t.Fatalf("dedupe.Of = %v, %v", err1, err2)
		}
		if f1 != f2 {
			t.Fatalf("fingerprint changed across a round trip\nencoded: %s", enc)
		}
		// The storage path (payload and extra columns) keeps the event
		// and its fingerprint too.
		stored := storedRoundTrip(t, e)
		if !reflect.DeepEqual(stored, e) {
			t.Fatalf("DecodeStored(EncodeStored(e)) != e\ngot:  %#v\nwant: %#v", stored, e)
		}
		if f3, err := dedupe.Of(&stored); err != nil || f3 != f1 {
			t.Fatalf("fingerprint changed through storage (err %v)", err)
		}
	})
}

// storedRoundTrip returns e as a storage backend reads it back.
func storedRoundTrip(tb testing.TB, e events.Event) events.Event {
	tb.Helper()
	st, err := e.EncodeStored()
	if err != nil {
		tb.Fatalf("EncodeStored: %v", err)
	}
	s := events.Event{
		ID: e.ID, ConversationID: e.ConversationID, Seq: e.Seq, Pos: e.Pos, Type: e.Type,
		SchemaVersion: e.SchemaVersion, CreatedAt: e.CreatedAt, Role: e.Role,
	}
	if err := s.DecodeStored(st.Text, st.TextSet, st.Body, st.Extra); err != nil {
		tb.Fatalf("DecodeStored: %v", err)
	}
	return s
}

// fuzzTypes are the types FuzzRoundTrip picks from by index; past the end,
// the fuzzed string itself is the type.
var fuzzTypes = append(append([]events.Type(nil), builtinTypes...), "x-foo")

func FuzzRoundTrip(f *testing.F) {
	// typ, typeName, role, conv, reqID, id, seq, pos, version,
	// hasTime, sec, nsec, text, parts, partType, partField,
	// tcID, tcName, tcArgs, toolCallID, model, usage, input, cost,
	// extraKey, extraStr, extraNum, raw
	f.Add(uint8(0), "", "user", "c1", "r1", "", int64(1), int64(1), 2,
		true, int64(1767323045), int64(6), "hi", false, "", "",
		"", "", "", "", "", false, int64(0), 0.0,
		"source", "web", "", "")
	f.Add(uint8(1), "", "", "0194a7a0-0000-7000-8000-000000000001", "assistant:r1", "01JGZ5Q8W6S4R3T2V1X0Y9Z8A7", int64(2), int64(9), 0,
		true, int64(-1), int64(999999999), "", false, "", "",
		"call_1", "get_weather", `{"city":"Oslo"}`, "", "gpt-4o", true, int64(12), 0.00042,
		"attempt", "", "1", `{"id":"chatcmpl-1","choices":[]}`)
	f.Add(uint8(2), "", "assistant", "c1", "delta:u1:0", "", int64(0), int64(0), 1,
		false, int64(0), int64(0), "Hel", false, "", "",
		"", "", `{"ci`, "", "", false, int64(0), 0.0,
		"user_request_id", "u1", "", "")
	f.Add(uint8(0), "", "", "c1", "", "", int64(0), int64(0), 0,
		false, int64(0), int64(0), "look", true, "image_url", ` { "url" : "a<b" } `,
		"", "", "", "", "", false, int64(0), 0.0,
		"n", "", "12345678901234567890", ` [1, "<&>", "\u2028"] `)
	f.Add(uint8(15), "", "", "c1", "", "", int64(0), int64(0), 0,
		false, int64(0), int64(0), "", false, "", "",
		"", "", "", "", "", true, int64(0), -0.0,
		"kind", "assistant_delta", "", "null")
	f.Add(uint8(255), "x-feedback", "", "c1", "", "", int64(0), int64(0), 0,
		true, int64(-6795364579), int64(0), "", false, "", "",
		"", "", "", "", "", false, int64(0), 0.0,
		"score", "", "0.1", "")
	f.Fuzz(func(t *testing.T, typ uint8, typeName, role, conv, reqID, id string, seq, pos int64, version int,
		hasTime bool, sec, nsec int64, text string, parts bool, partType, partField string,
		tcID, tcName, tcArgs, toolCallID, model string, usage bool, input int64, cost float64,
		extraKey, extraStr, extraNum, raw string,
	) {
		e := events.Event{
			ID: id, ConversationID: conv, Seq: seq, Pos: pos, SchemaVersion: version,
			Role: events.Role(role), RequestID: reqID, ToolCallID: toolCallID, Model: model,
		}
		if int(typ) < len(fuzzTypes) {
			e.Type = fuzzTypes[typ]
		} else {
			e.Type = events.Type(typeName)
		}
		if hasTime {
			e.CreatedAt = time.Unix(sec, nsec).UTC()
		}
		switch {
		case parts:
			p := events.Part{Type: partType, Text: text}
			if partField != "" {
				p.Fields = map[string]json.RawMessage{"data": json.RawMessage(partField)}
			}
			e.Content = events.NewParts(events.TextPart(text), p)
		case text != "":
			e.Content = events.NewText(text)
		}
		if tcID != "" || tcName != "" || tcArgs != "" {
			e.ToolCalls = []events.ToolCall{{ID: tcID, Name: tcName, Arguments: tcArgs}}
		}
		if usage {
			e.Usage = &events.Usage{Input: input, Output: 1, Cost: cost}
		}
		if extraKey != "" {
			e.Extra = map[string]any{extraKey: extraStr}
			if extraNum != "" {
				e.Extra[extraKey] = json.Number(extraNum)
			}
		}
		if raw != "" {
			e.Raw = json.RawMessage(raw)
		}
		if e.Validate() != nil {
			return
		}

		enc, err := e.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON of a valid event: %v\n%#v", err, e)
		}
		got, err := events.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(MarshalJSON(e)) = %v\nencoded: %s", err, enc)
		}
		want := normalise(t, e)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode(MarshalJSON(e)) != e\nencoded: %s\ngot:  %#v\nwant: %#v", enc, got, want)
		}
		f1, err1 := dedupe.Of(&e)
		f2, err2 := dedupe.Of(&got)
		if err1 != nil || err2 != nil {
			t.Fatalf("dedupe.Of = %v, %v", err1, err2)
		}
		if f1 != f2 {
			t.Fatalf("fingerprint of e and of Decode(MarshalJSON(e)) differ\nencoded: %s", enc)
		}
	})
}

// normalise returns what decoding a valid Go-built event's encoding
// should give, computed with the standard library only: the current
// schema version, empty collections as nil, raw JSON members in the form
// encoding/json writes (compact, HTML-escaped), JSON null raw as absent.
func normalise(tb testing.TB, e events.Event) events.Event {
	tb.Helper()
	e = e.Clone()
	if e.SchemaVersion < events.CurrentSchemaVersion {
		e.SchemaVersion = events.CurrentSchemaVersion
	}
	if len(e.ToolCalls) == 0 {
		e.ToolCalls = nil
	}
	if len(e.Extra) == 0 {
		e.Extra = nil
	}
	canon := func(b json.RawMessage) json.RawMessage {
		c, err := json.Marshal(b)
		if err != nil {
			tb.Fatalf("json.Marshal(%s): %v", b, err)
		}
		return c
	}
	if e.Raw != nil {
		if e.Raw = canon(e.Raw); string(e.Raw) == "null" {
			e.Raw = nil
		}
	}
	if e.Content != nil {
		for i := range e.Content.Parts {
			for k, v := range e.Content.Parts[i].Fields {
				e.Content.Parts[i].Fields[k] = canon(v)
			}
		}
	}
	return e
}
