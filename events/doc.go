// Package events defines the ChatEvent, the unit of chatlog's append-only
// log: its fields and types, validation with field-level errors, the JSON
// codec, schema versions with upcasting of legacy shapes, and id generation.
//
// It depends on the standard library and the id generators only, so every
// other package (storage backends, projections, the command line) can share
// one definition of what an event is.
//
// # Wire format
//
// An event in JSON:
//
//	{"id":"01J...","conversation_id":"c1","seq":3,"pos":17,"type":"user_message",
//	 "schema_version":2,"created_at":"2026-01-02T03:04:05.000000006Z",
//	 "role":"user","content":"hi","request_id":"r1","extra":{"request_id":"r1"}}
//
// created_at is RFC 3339 in UTC with exactly nine fractional digits, so it
// round-trips to the nanosecond. content is a string or an array of parts.
// A tool call's arguments are a JSON document held in a string.
//
// The idempotency key request_id may be given top level or inside extra (the
// legacy format); in Go it lives in [Event.RequestID] and on the wire it is
// written both top level and inside extra, where storage indexes it.
//
// # Account streams
//
// Conversation ids beginning with "~" ([AccountStreamPrefix]) are reserved
// for chatlog's own per-user streams, such as a user's credit ledger
// ("~ledger/" + user, holding [TypeLedgerEntry] events) and a user's
// current-conversation pointers ("~user/" + user, holding
// [TypeCurrentSet] events). Validate admits
// only account-level types there and nowhere else, so an ordinary event
// never lands in such a stream and an account event never lands in a
// conversation. [IsAccountStream] is the one test read models use to
// leave these streams out.
//
// # Legacy shapes
//
// Events without schema_version are version 1. Version 1 stored streamed
// chunks as {"type":"meta","extra":{"kind":"assistant_delta",...}}; decoding
// upcasts them to first-class [TypeAssistantDelta] events.
package events
