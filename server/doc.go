// Package server is chatlog's HTTP API, the one INTERFACE.md fixes under
// "HTTP API (chatlog serve)". It holds no domain logic: each handler
// decodes a request, calls the library (repo, compact, projection) and
// encodes the answer; errors become status codes in one place
// (errorFor).
//
// # Endpoints
//
//	POST /v1/conversations/{cid}/events                 append one event
//	GET  /v1/conversations/{cid}/events                 a page of events, or SSE
//	POST /v1/conversations/{cid}/turns                  begin or look up a turn
//	POST /v1/conversations/{cid}/turns/{U}/heartbeat    extend a turn's lease
//	POST /v1/conversations/{cid}/deltas                 record a streamed chunk
//	POST /v1/conversations/{cid}/finish                 fold the chunks
//	GET  /v1/conversations/{cid}/messages               what the model sees
//	GET  /v1/conversations/{cid}                        the read model
//	GET  /v1/conversations                              the conversation list
//	GET  /v1/search                                     full-text search
//	POST /v1/users/{uid}/ledger                         a credit or debit, once per key
//	GET  /v1/users/{uid}/balance                        a user's balance
//	GET  /healthz                                       200 "ok", never authenticated
//	GET  /metrics                                       Prometheus text format
//	GET  /ui/                                           the replay debugger (package ui), never authenticated
//
// # Status codes
//
// Where the contract leaves room, the server decides as follows.
//
//   - Writes (events, deltas, finish) answer 201 with the stored event when
//     it was written, 200 with the stored event and Idempotent-Replayed:
//     true when it was already there. finish follows the same rule: 201
//     the first time, 200 with the header on every later call.
//   - A begun turn answers 201 (started: the caller now holds it), 200
//     (completed: here is the reply), or 409 idempotency_key_in_use with
//     Retry-After, the seconds left on the holder's lease, rounded up
//     (at least 1).
//   - A finish whose chunks have a gap is 409 chunk_gap: the request is
//     well formed, but the log's state refuses it, and the same request
//     succeeds once the missing chunk is sent. Two different chunks at one
//     index are 409 chunk_conflict; tool-call fragments that do not fold
//     into a valid call are 422 invalid_tool_call (resending will not help).
//   - Every 400 has code invalid_request and, where one field is at fault,
//     "field" naming it (a JSON path in the body, or the query parameter or
//     header name). An event body and an Idempotency-Key header that name
//     different keys are 400 (field request_id).
//   - 404 not_found for an unknown route, a conversation without events
//     (GET .../{cid} only; its events are an empty list), a heartbeat for
//     a turn never begun, a finish of a request with neither turn nor
//     chunks. 405 method_not_allowed with Allow for a known path.
//   - A ledger entry answers as other writes: 201 new, 200 with
//     Idempotent-Replayed: true on a retry (judged on kind, amount and
//     note: the running balance in the stored entry may differ), 409
//     idempotency_conflict for a key used with other fields. A debit
//     larger than the balance is 409 insufficient_funds with "balance"
//     and "amount"; nothing is written, and the same request succeeds
//     once the balance allows it. A ledger whose head other writers
//     kept moving first is 503 ledger_contended with Retry-After: 1.
//     Conversation ids beginning with "~" are the users' ledgers: an
//     event appended to one is 400 (field conversation_id).
//   - 503 unavailable while the store is closing.
//
// Error bodies are {"error":{"code":...,"message":...}}, with details
// beside them where they help: "stored" (the stored event) for
// idempotency_conflict, "expected_seq" and "head_seq" for seq_conflict,
// "attempt" and "lease_expires_at" for idempotency_key_in_use, "balance"
// and "amount" for insufficient_funds.
//
// # Server-sent events
//
// A GET of a conversation's events with Accept: text/event-stream sends
// each event as "id: <seq>" and "data: <event JSON>", flushed at once, in
// seq order without gaps or repeats, starting after Last-Event-ID (else
// after_seq); a comment line keeps an idle stream alive
// (Options.KeepAlive).
//
// The streams of one conversation share one repo.Repo.Follow (a feed),
// so an append costs one store read and one encoding however many
// clients follow it. The feed never waits for a stream: it hands each
// event to a per-stream buffer (Options.StreamBuffer) without blocking
// and cuts off a stream whose buffer is full; that stream then reads what
// it missed from the store by itself and joins the feed again. A slow
// client thus delays neither the writers nor the other streams, and one
// that stops reading is cut off by the write timeout, which is extended
// before every write.
//
// # Shutdown
//
// Serve and Run stop on their context: the listener closes, open event
// streams end, requests in flight finish (up to Options.ShutdownTimeout),
// and then they return; the caller closes the store afterwards, which
// commits whatever appends it has queued.
package server
