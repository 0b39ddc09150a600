// Package repo declares chatlog's event store: the Repo interface every
// backend implements, its options and its errors.
//
// # Guarantees
//
// Append is idempotent on (conversation_id, request_id) and on the event id:
// a retry with the same payload (same [dedupe.Of] fingerprint) returns the
// stored event with outcome [Duplicate] and writes nothing; a key reused with
// another payload fails with a [*ConflictError] carrying the stored event.
// seq is assigned inside the write transaction, from 1, without gaps; the
// store's unique indexes are the final arbiter, also across processes.
// An append that returned without error is durable at the backend's
// configured sync level; an append that returned an error wrote nothing.
//
// # Reading
//
// Reads are iterators ([iter.Seq2]) that fetch in pages, so memory stays
// flat on any log size and no read transaction is held while the caller
// works. An iteration sees every event committed before it started and
// may see events committed while it runs (never a gap: seq and pos are
// committed in order). Each iterator yields a non-nil error at most once,
// as its last value, when a read fails.
//
// Backends live in sub-packages (repo/sqlite); repo/repotest is the
// conformance suite they all pass.
package repo
