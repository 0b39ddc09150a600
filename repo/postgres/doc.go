// Package postgres is chatlog's PostgreSQL event store, built on
// github.com/jackc/pgx/v5 (pgxpool): one database that any number of
// replicas share, with the guarantees of package repo and its
// conformance suite (repo/repotest).
//
// # Concurrency
//
// Each Repo has Options.Writers writers (default 2), goroutines that each
// own a connection and group-commit what is queued to them: appends,
// turns, titles, forks and erasures of the conversations of their share
// of a hash, up to Options.MaxBatch events per transaction. A transaction
// goes in two round trips:
//
//  1. BEGIN; its id (pg_current_xact_id); the shared write lock and the
//     advisory locks of the conversations (and title lineages) it
//     touches, in key order, so that no two writers, in this process or
//     another, ever wait on each other in a cycle; then the reads every
//     decision needs: heads, read models, the events stored under the
//     keys it appends, turns, titles.
//  2. The insert of the new events (pos drawn from the column's sequence
//     in seq order), the read models, the turns' changes in request
//     order, NOTIFY, COMMIT.
//
// In between, seqs, duplicates, conflicts, stale attempts and titles are
// decided in Go against what the first round trip read: under its
// conversations' locks no other writer changes any of it, so seq is
// head+1 without a table-wide lock. The unique indexes remain the final
// arbiter: a row they refuse (an event id another conversation took at
// the same moment), a deadlock or a serialization failure rolls the
// transaction back, and it runs again (SQLSTATEs 23505, 40P01, 40001).
// Reads use the pool's other connections and never block writers.
//
// # Durability
//
// An append returns once its transaction committed, at the server's
// synchronous_commit (on by default: flushed to the WAL). When the
// connection breaks with COMMIT on its way, or a FATAL error answers it,
// the outcome is settled, not guessed: once the server has ended that
// backend, pg_xact_status of the transaction's id says whether it
// committed; if it did, the append succeeded, else it runs again on a
// fresh connection. Once queued, an append's outcome is always reported
// truthfully: a cancelled context either stops it before it is written
// or is ignored.
//
// # Followers across replicas
//
// A commit wakes this process's followers at once, and NOTIFYs (in the
// same transaction, so at commit and only then) the conversations it
// touched on a channel of the schema. Each Repo LISTENs on a connection
// of its own and wakes its followers when another replica's notification
// arrives; Follow also reads every Options.PollInterval (default 1s), the
// fallback for notifications lost while the listener reconnects.
//
// # Positions
//
// pos is unique and grows with seq within a conversation (it is drawn
// while the conversation is locked). Across conversations, writers in
// several processes commit positions out of order, so All may, while
// others write, pass a position whose event commits later; what was
// committed before it started, it yields.
//
// # Tables
//
// In the schema Options.Schema names (or the connection's search_path),
// created when missing:
//
//   - events: the log. pos (identity, the global position), id, unique;
//     conversation_id and seq, unique together; created_at in Unix
//     nanoseconds (timestamptz keeps microseconds); content (plain text;
//     NULL otherwise, and for text holding a NUL byte, which goes to
//     body), body (the rest of the payload, JSON bytes), extra (json, with
//     request_id folded in) and request_id, a column generated from
//     extra ->> 'request_id' with a partial unique index on
//     (conversation_id, request_id); fingerprint (dedupe.Of); parts_text
//     (multi-part content's text); search, the tsvector of a message's
//     words, with a GIN index.
//   - turns: leases and open streams, as in the SQLite backend.
//   - conversations: the conversation list's read model (summary JSON,
//     and the columns listing filters and sorts on).
//   - branches: forks' lineage.
//   - projections: each read model's code version and the pos of its
//     last rebuild (appends do not move it: a row every writer updated
//     would serialise them all).
//   - schema_migrations: the numbered migrations (migrations/*.sql,
//     embedded) applied, each in its own transaction at Open under an
//     advisory lock, so replicas may open a new database together.
//
// Text keys are COLLATE "C", compared bytewise as SQLite compares them.
//
// # Sessions
//
// Open sets, unless the connection string does: application_name
// "chatlog" (sessions are easy to find in pg_stat_activity),
// plan_cache_mode force_generic_plan (the statements are written for one
// plan per statement; custom plans made the server re-plan every
// statement of every commit), and search_path to the schema.
package postgres
