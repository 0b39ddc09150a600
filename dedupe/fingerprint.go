// Package dedupe holds chatlog's idempotency rules: the fingerprint that
// decides whether a retried request carries the same payload as the one
// stored under its key.
package dedupe

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"math"

	"github.com/chatlog/chatlog/events"
)

// FingerprintSize is the length in bytes of a Fingerprint.
const FingerprintSize = 16

// Fingerprint identifies what a request asks for, so a retry can be told
// from a key reused for something else.
type Fingerprint [FingerprintSize]byte

// Of returns the fingerprint of an event: a hash over the fields that make
// the request what it is: type, effective role, content, tool calls,
// tool_call_id, provider, model, stop reason, usage, extra and raw.
//
// Left out, because a faithful retry may differ in them: the event id, seq
// and pos (assigned by the store), created_at (the retry happens later),
// schema_version (a legacy and a current encoding of one event are the same
// request) and request_id (it is the key itself; the conversation id is too).
//
// Every backend uses Of, so "same payload" means one thing everywhere.
func Of(e *events.Event) (Fingerprint, error) {
	var extra []byte
	if len(e.Extra) > 0 {
		// encoding/json writes map keys sorted, so equal maps encode
		// equally.
		b, err := json.Marshal(e.Extra)
		if err != nil {
			return Fingerprint{}, err
		}
		extra = b
	}
	return OfEncoded(e, extra)
}

// OfEncoded is Of for a caller that already holds e.Extra encoded by
// encoding/json (nil when empty), as events.Stored.ExtraJSON does: the
// append path encodes extra once for storage and fingerprint alike.
func OfEncoded(e *events.Event, extraJSON []byte) (Fingerprint, error) {
	buf := make([]byte, 0, 256+len(extraJSON)+len(e.Content.PlainText()))
	str := func(s string) {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	i64 := func(n int64) {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(n))
	}
	str(string(e.Type))
	str(string(e.EffectiveRole()))
	switch {
	case e.Content == nil:
		i64(0)
	case e.Content.Parts == nil:
		i64(1)
		str(e.Content.Text)
	default:
		b, err := json.Marshal(e.Content.Parts)
		if err != nil {
			return Fingerprint{}, err
		}
		i64(2)
		str(string(b))
	}
	i64(int64(len(e.ToolCalls)))
	for _, tc := range e.ToolCalls {
		str(tc.ID)
		str(tc.Name)
		str(tc.Arguments)
	}
	str(e.ToolCallID)
	str(e.Provider)
	str(e.Model)
	str(e.StopReason)
	if u := e.Usage; u != nil {
		i64(1)
		i64(u.Input)
		i64(u.Output)
		i64(u.CacheRead)
		i64(u.CacheWrite)
		i64(u.Reasoning)
		cost := u.Cost
		if cost == 0 {
			cost = 0 // -0 encodes as 0 (omitted), so it must hash as 0
		}
		i64(int64(math.Float64bits(cost)))
	} else {
		i64(0)
	}
	str(string(extraJSON))
	// Raw in the form encoding/json writes it (compact, HTML-escaped),
	// which is how the store and the wire hand it back: a Go caller's
	// indented payload and its stored copy are one request. JSON null is
	// "no raw", as decoding treats it.
	if len(e.Raw) > 0 {
		b, err := json.Marshal(e.Raw)
		if err != nil {
			return Fingerprint{}, err
		}
		if string(b) == "null" {
			b = nil
		}
		str(string(b))
	} else {
		str("")
	}
	sum := sha256.Sum256(buf)
	var f Fingerprint
	copy(f[:], sum[:])
	return f, nil
}
