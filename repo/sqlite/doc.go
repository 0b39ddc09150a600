// Package sqlite is chatlog's SQLite event store, built on
// github.com/ncruces/go-sqlite3 (no cgo).
//
// # Concurrency
//
// One writer goroutine owns the only write connection. Appends from every
// goroutine are queued to it; it takes whatever is queued (up to
// Options.MaxBatch events) and writes it in one BEGIN IMMEDIATE transaction,
// so the commit's fsync is shared: group commit without a fixed wait. Each
// request succeeds or fails on its own within the batch. Reads use a pool
// of read-only connections (Options.ReadConns); in WAL mode they never block
// the writer or each other. Several processes may open one file: their
// writers take turns on SQLite's write lock, waiting up to
// Options.BusyTimeout, and the unique indexes decide between them.
//
// # Durability
//
// An append returns only after its transaction committed. With the default
// SyncFull the WAL is fsynced at every commit, so an acknowledged event
// survives kill -9 and power loss; SyncNormal keeps kill -9 safety only.
// Once queued, an append's outcome is always reported truthfully: a
// cancelled context either stops it before it is written or is ignored.
//
// # Tables
//
//   - events: the log. pos INTEGER PRIMARY KEY, the global position,
//     assigned by the writer; unique (conversation_id, seq); unique id;
//     content (plain text) and body (the rest of the payload, JSON);
//     request_id, a virtual column generated from json_extract(extra,
//     '$.request_id'), with a partial unique index on (conversation_id,
//     request_id); fingerprint, the dedupe.Of hash a retry must match.
//     content, body and parts_text (the text of multi-part content, for
//     search) are compressed above CompressThreshold; see Compression.
//   - log_state: the highest pos ever assigned, so erasing the newest
//     events never lets a pos be reused.
//   - schema_migrations: the numbered migrations (migrations/*.sql,
//     embedded) applied, each in its own transaction at Open.
//
// With Options.TablePrefix every table, index and view (the search
// index's content view too) carries the prefix, schema_migrations
// included: stores under different prefixes share a file and nothing
// else, each migrated on its own. The SQL writes each name as {p}name;
// the validated prefix is spliced in when a statement is first prepared.
//
// # Compression
//
// A payload column value above CompressThreshold (512 bytes) is stored
// compressed (Zstandard) when that makes it smaller: content and parts_text
// then hold a BLOB instead of TEXT, body a BLOB that starts with a NUL
// marker (JSON never does), each with a header naming the codec and the
// uncompressed length. Chat text above the threshold typically halves.
// Reads decompress; a damaged value is an error matching ErrCorrupt. Rows
// written before compression stay as they are and read as before.
// Fingerprints are of events, not stored bytes, so retries and conflicts
// are judged the same either way. extra is never compressed: the
// request_id column and its unique index are generated from it.
//
// The search index reads message text through the searchable_messages
// view, which decompresses with the SQL function chatlog_inflate. Open
// registers it on every connection; another client of the file needs
// RegisterFunctions (or cannot read that view; the tables read as usual).
//
// # PRAGMAs
//
// Every connection: busy_timeout (Options.BusyTimeout, default 30s),
// foreign_keys=ON. The writer: journal_mode=WAL, synchronous=FULL (or
// NORMAL), cache_size 64 MiB, wal_autocheckpoint=10000. Readers:
// query_only=ON, cache_size 8 MiB. ANALYZE is never run: with this build's
// STAT4 it makes point lookups re-prepare and slows them twofold.
//
// ":memory:" opens a private in-memory database shared by the writer and
// the readers of one Repo (the memdb VFS, rollback journal instead of WAL).
package sqlite
