// Package logfile reads and writes chatlog's JSONL event logs: one event
// per line, in the wire format of package events.
//
// [Reader] decodes a log line by line in constant memory and reports a bad
// line as a [*LineError] naming the line and the field. [Ingest] appends a
// log to a [repo.Repo], [Import] loads an export keeping its ids, seqs and
// timestamps, and [Export] writes events as a log.
//
// # Lines
//
// Each non-blank line holds one JSON event of at most [MaxLineBytes] bytes
// (a trailing "\r" and a leading UTF-8 byte order mark are ignored). Blank
// lines are skipped but still counted, so line numbers match an editor's.
// A line that does not decode or validate is reported and skipped; the
// lines around it are kept. Line numbers start at 1.
//
// # Idempotency keys
//
// Ingesting the same input twice adds nothing the second time. Events that
// carry a request_id or an id are deduplicated by the store on that key.
// For the others Ingest and Import derive a key from the input itself,
// applying these rules in order:
//
//  1. A streamed chunk (type assistant_delta, including legacy
//     {"type":"meta","extra":{"kind":"assistant_delta"}} lines, which
//     decode to it) without extra.index takes as its index its order among
//     the deltas with the same conversation_id and extra.user_request_id in
//     this input, counting from 0; extra.index is set to it.
//  2. A delta without request_id gets request_id
//     "delta:{user_request_id}:{index}". A delta that names an
//     extra.attempt is left to rule 3 instead, so chunks of different
//     attempts never share a key.
//  3. An event with neither request_id nor id gets request_id
//     "ingest:" + hex(sha256(conversation_id + "\x00" + fingerprint)[:12])
//     + ":" + n, where fingerprint is the event's [dedupe.Of] fingerprint
//     and n counts the earlier valid events of this input with the same
//     conversation and fingerprint, from 0. Two identical keyless
//     messages in one input are therefore two events, and re-ingesting the
//     input maps each to the same key again.
//  4. An event with an id but no request_id is left as it is: the store
//     deduplicates it by its id.
//
// The counts in rules 1 and 3 are taken over the valid events of one
// input in order, so they are stable only as long as the input is
// re-ingested as a whole and unchanged before the event in question.
//
// # Statistics
//
// [Stats] counts the events read (non-blank lines) and what became of
// each: appended, duplicate, conflict (an idempotency key reused with
// another payload, or on import a seq that does not follow the stored
// head) or invalid. Read always equals the sum of the other four.
package logfile
