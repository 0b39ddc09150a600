package sqlite

// The SQL of the backend, in one place. Placeholders only: no value is
// ever spliced into a statement. Table, index and view names are written
// {p}name, here and in migrations/*.sql; render replaces {p} with
// Options.TablePrefix, the one identifier spliced, validated at Open.
//
// Bound limits are written LIMIT ?+0: this SQLite plans with a bound
// LIMIT's value, so rebinding it expires the statement and every run
// re-prepared it (a third of a read's CPU); an expression hides the value
// from the planner.

const eventColumns = `pos, id, conversation_id, seq, type, schema_version, created_at, role, content, body, extra`

const (
	qMigrationsTable = `CREATE TABLE IF NOT EXISTS {p}schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
)`
	qMigrationVersion = `SELECT coalesce(max(version), 0) FROM {p}schema_migrations`
	qMigrationRecord  = `INSERT INTO {p}schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`

	qDataVersion = `PRAGMA data_version`

	// OR IGNORE: a unique-index clash changes nothing instead of aborting,
	// so SQLite needs no statement journal per insert (it cost a fifth of
	// the append path); the writer then looks up what clashed.
	// pos is assigned by the writer (see writer.lastPos).
	qInsert = `INSERT OR IGNORE INTO {p}events (pos, id, conversation_id, seq, type, schema_version, created_at, role, content, body, extra, fingerprint, parts_text)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

	// The highest pos ever assigned: log_state keeps it even after the
	// newest events are erased, so a pos is never reused.
	qLastPos    = `SELECT max((SELECT last_pos FROM {p}log_state WHERE id = 1), coalesce((SELECT max(pos) FROM {p}events), 0))`
	qSetLastPos = `UPDATE {p}log_state SET last_pos = ? WHERE id = 1 AND last_pos < ?`

	qHead = `SELECT seq FROM {p}events WHERE conversation_id = ? ORDER BY seq DESC LIMIT 1`

	// The lookups return the fingerprint after the event columns.
	qByRequestID = `SELECT ` + eventColumns + `, fingerprint FROM {p}events
WHERE conversation_id = ? AND request_id = ?`
	qByID = `SELECT ` + eventColumns + `, fingerprint FROM {p}events WHERE id = ?`

	qRange = `SELECT ` + eventColumns + ` FROM {p}events
WHERE conversation_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?+0`
	qAfterPos = `SELECT ` + eventColumns + ` FROM {p}events WHERE pos > ? ORDER BY pos LIMIT ?+0`

	qIntegrityCheck = `PRAGMA integrity_check`
)

// Turns.
const (
	qTurnGet = `SELECT attempt, owner, lease_ns, lease_expires_at, state, last_error
FROM {p}turns WHERE conversation_id = ? AND user_request_id = ?`
	qTurnPut = `INSERT INTO {p}turns (conversation_id, user_request_id, attempt, owner, lease_ns, lease_expires_at, state, last_chunk_at, last_error)
VALUES (?, ?, ?, ?, ?, ?, 'running', NULL, ?)
ON CONFLICT (conversation_id, user_request_id) DO UPDATE SET
    attempt = excluded.attempt, owner = excluded.owner, lease_ns = excluded.lease_ns,
    lease_expires_at = excluded.lease_expires_at, state = 'running', last_chunk_at = NULL`
	qTurnHeartbeat = `UPDATE {p}turns SET lease_expires_at = ? + lease_ns
WHERE conversation_id = ? AND user_request_id = ? AND attempt = ? AND state = 'running'
RETURNING lease_expires_at`
	qTurnFail = `UPDATE {p}turns SET state = 'failed', last_error = ?, lease_expires_at = 0
WHERE conversation_id = ? AND user_request_id = ?`
	qTurnComplete = `UPDATE {p}turns SET state = 'completed', lease_expires_at = 0
WHERE conversation_id = ? AND user_request_id = ?`
	// A chunk: track the stream (creating the row of a stream begun
	// without a turn).
	// A stream got chunks: create its row (a stream begun without a turn)
	// or move last_chunk_at on, at most once a second
	// (repo.StreamTimeResolution): sweeps wait
	// minutes, and rewriting the row (and its open-streams index entry)
	// at every commit cost more than the chunks. A chunk loaded from a
	// log raises the turn's attempt to its own (a live chunk always has
	// the holder's), unless a holder's lease is live: history never
	// takes a running turn away.
	qTurnChunk = `INSERT INTO {p}turns (conversation_id, user_request_id, attempt, state, last_chunk_at)
VALUES (?1, ?2, ?3, 'running', ?4)
ON CONFLICT (conversation_id, user_request_id) DO UPDATE SET
    last_chunk_at = max(coalesce(last_chunk_at, 0), excluded.last_chunk_at),
    attempt = CASE WHEN state = 'running' AND attempt > 0 AND lease_expires_at > ?5 THEN attempt
                   ELSE max(attempt, excluded.attempt) END
WHERE last_chunk_at IS NULL OR last_chunk_at <= excluded.last_chunk_at - 1000000000
   OR attempt < excluded.attempt`
	qOpenStreams = `SELECT conversation_id, user_request_id, attempt, last_chunk_at FROM {p}turns
WHERE state = 'running' AND last_chunk_at IS NOT NULL AND last_chunk_at < ?
  AND (attempt = 0 OR lease_expires_at <= ?)
ORDER BY last_chunk_at LIMIT ?+0`

	// Retention of folded chunks: the rows stay (no holes in seq), their
	// content goes. Only chunks of completed turns.
	qPurgeChunks = `UPDATE {p}events SET content = NULL, body = NULL, extra = json_set(extra, '$.purged', json('true'))
WHERE type = 'assistant_delta' AND created_at < ? AND json_extract(extra, '$.purged') IS NULL
  AND EXISTS (SELECT 1 FROM {p}turns t WHERE t.conversation_id = {p}events.conversation_id
      AND t.user_request_id = json_extract({p}events.extra, '$.user_request_id') AND t.state = 'completed')`

	// The chunks of a user request: its chunk keys share a prefix
	// (repo.ChunkRequestID), read as a range of the request_id index.
	qChunksByKey = `SELECT ` + eventColumns + ` FROM {p}events
WHERE conversation_id = ? AND request_id >= ? AND request_id < ? AND type = 'assistant_delta'`
	// Chunks stored under other keys (hand-made logs): a scan of the
	// conversation, only when the key range finds none.
	qChunksScan = `SELECT ` + eventColumns + ` FROM {p}events
WHERE conversation_id = ? AND type = 'assistant_delta' ORDER BY seq`
)

// Read models.
const (
	qSummaryGet = `SELECT summary FROM {p}conversations WHERE conversation_id = ?`
	qSummaryPut = `INSERT INTO {p}conversations (conversation_id, last_active_at, user_id, source, title, ended, summary)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (conversation_id) DO UPDATE SET
    last_active_at = excluded.last_active_at, user_id = excluded.user_id, source = excluded.source,
    title = excluded.title, ended = excluded.ended, summary = excluded.summary`
	qSummaryAll   = `SELECT conversation_id, summary FROM {p}conversations ORDER BY conversation_id`
	qSummaryClear = `DELETE FROM {p}conversations`

	// The events of one transaction, by their pos range (a transaction's
	// events are the only ones in it).
	qSearchIndexRange = `INSERT INTO {p}message_search (rowid, content)
SELECT pos, content FROM {p}searchable_messages WHERE pos BETWEEN ? AND ?`
	qSearchRebuild = `INSERT INTO {p}message_search ({p}message_search) VALUES ('rebuild')`
	qSearchCheck   = `INSERT INTO {p}message_search ({p}message_search, rank) VALUES ('integrity-check', 1)`

	qProjections     = `SELECT name, version, pos FROM {p}projections ORDER BY name`
	qProjectionsSet  = `UPDATE {p}projections SET pos = ? WHERE name IN ('conversations', 'search')`
	qProjectionsInit = `UPDATE {p}projections SET version = ?, pos = ? WHERE name = ?`

	// Listing pages by (last_active_at, conversation_id), newest first.
	// Every filter is bound; an empty one matches all.
	qList = `SELECT summary, last_active_at, conversation_id FROM {p}conversations
WHERE (?1 = '' OR user_id = ?1) AND (?2 = '' OR source = ?2)
  AND (?3 = 0 OR last_active_at < ?4 OR (last_active_at = ?4 AND conversation_id < ?5))
ORDER BY last_active_at DESC, conversation_id DESC LIMIT ?6+0`

	// Newest first: FTS5 walks matches in rowid (pos) order and stops at
	// the limit, where ORDER BY rank scores every match first (130 ms vs
	// 2.6 ms on 100k messages).
	qSearch = `SELECT e.conversation_id, e.seq, e.role, snippet({p}message_search, 0, '[', ']', '…', 16), e.content
FROM {p}message_search JOIN {p}searchable_messages e ON e.pos = {p}message_search.rowid
LEFT JOIN {p}conversations c ON c.conversation_id = e.conversation_id
WHERE {p}message_search MATCH ?1 AND (?2 = '' OR e.conversation_id = ?2) AND (?3 = '' OR e.role = ?3)
  AND (?4 = '' OR c.source = ?4) AND (?5 = '' OR c.user_id = ?5)
ORDER BY {p}message_search.rowid DESC LIMIT ?6+0`
	// Whether FTS5 takes a quoted word for one word or a phrase: parsing
	// the query is all that is asked of it.
	qSearchProbe     = `SELECT 1 FROM {p}message_search WHERE {p}message_search MATCH ? LIMIT 1`
	qNeighbourBefore = `SELECT seq, role, coalesce(content, '') FROM {p}searchable_messages
WHERE conversation_id = ? AND seq < ? ORDER BY seq DESC LIMIT 1`
	qNeighbourAfter = `SELECT seq, role, coalesce(content, '') FROM {p}searchable_messages
WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT 1`
)

// Lineage, erasure and titles (Management).
const (
	qBranchOf   = `SELECT parent_id, parent_seq FROM {p}branches WHERE conversation_id = ?`
	qBranchPut  = `INSERT INTO {p}branches (conversation_id, parent_id, parent_seq) VALUES (?, ?, ?)`
	qBranchesOf = `SELECT conversation_id FROM {p}branches WHERE parent_id = ? ORDER BY conversation_id`
	qRangeDesc  = `SELECT ` + eventColumns + ` FROM {p}events
WHERE conversation_id = ? AND seq > ? AND seq <= ? ORDER BY seq DESC LIMIT ?+0`
	qLatestStartedIn = `SELECT ` + eventColumns + ` FROM {p}events INDEXED BY {p}events_context_markers
WHERE conversation_id = ? AND type = 'conversation_started' AND seq > ? AND seq <= ?
ORDER BY seq DESC LIMIT 1`
	qLatestPromptSetIn = `SELECT ` + eventColumns + ` FROM {p}events INDEXED BY {p}events_context_markers
WHERE conversation_id = ? AND type = 'system_prompt_set' AND seq > ? AND seq <= ?
ORDER BY seq DESC LIMIT 1`
	qLatestClearIn = `SELECT seq FROM {p}events INDEXED BY {p}events_context_markers
WHERE conversation_id = ? AND type = 'conversation_cleared' AND seq > ? AND seq <= ?
ORDER BY seq DESC LIMIT 1`

	// Erasure. The search index keeps no text, so a row leaves it by a
	// 'delete' naming the text it was indexed with; only rows indexed
	// already (pos at most the last committed) are in it.
	qEraseSearch = `INSERT INTO {p}message_search ({p}message_search, rowid, content)
SELECT 'delete', pos, content FROM {p}searchable_messages WHERE conversation_id = ? AND pos <= ?`
	qEraseEvents     = `DELETE FROM {p}events WHERE conversation_id = ?`
	qEraseTurns      = `DELETE FROM {p}turns WHERE conversation_id = ?`
	qEraseSummary    = `DELETE FROM {p}conversations WHERE conversation_id = ?`
	qEraseBranch     = `DELETE FROM {p}branches WHERE conversation_id = ?`
	qPruneCandidates = `SELECT conversation_id FROM {p}conversations
WHERE ended = 1 AND last_active_at < ? AND (?2 = '' OR source = ?2) ORDER BY conversation_id`
	qSecureDeleteOn  = `PRAGMA secure_delete = ON`
	qSecureDeleteOff = `PRAGMA secure_delete = OFF`
	qCheckpoint      = `PRAGMA wal_checkpoint(TRUNCATE)`

	qTitleHolder = `SELECT conversation_id FROM {p}conversations WHERE title = ? AND conversation_id <> ? LIMIT 1`
	// A title's lineage: the base and "base #n" (digits sort below ':').
	qTitleLineage = `SELECT conversation_id, title FROM {p}conversations
WHERE title = ?1 OR (title > ?1 || ' #' AND title < ?1 || ' #:')`
	qTitleOf        = `SELECT title FROM {p}conversations WHERE conversation_id = ?`
	qLatestTitleSet = `SELECT ` + eventColumns + ` FROM {p}events
WHERE conversation_id = ? AND type = 'title_set' ORDER BY seq DESC LIMIT 1`
	qConversationExists = `SELECT 1 FROM {p}conversations WHERE conversation_id = ?`
	qIDPrefix           = `SELECT conversation_id FROM {p}conversations
WHERE conversation_id >= ? AND conversation_id < ? ORDER BY conversation_id LIMIT 5`
	qUserSummaries = `SELECT summary FROM {p}conversations WHERE user_id = ?`
)

// Storage statistics: one scan of the log, grouped by type. The payload
// columns' bytes as stored (octet_length) and uncompressed
// (chatlog_raw_length reads a compressed value's header), and how many
// values are compressed: a BLOB in content or parts_text, a body that
// starts with the marker.
const (
	qStatsByType = `SELECT type, count(*),
    coalesce(sum(octet_length(content)), 0) + coalesce(sum(octet_length(body)), 0) + coalesce(sum(octet_length(parts_text)), 0),
    coalesce(sum(chatlog_raw_length(content)), 0) + coalesce(sum(chatlog_raw_length(body)), 0) + coalesce(sum(chatlog_raw_length(parts_text)), 0),
    coalesce(sum(typeof(content) = 'blob'), 0) + coalesce(sum(substr(body, 1, 1) = x'00'), 0) + coalesce(sum(typeof(parts_text) = 'blob'), 0)
FROM {p}events GROUP BY type ORDER BY type`
	// From the (conversation_id, seq) index alone; account streams (ids
	// starting with the bound events.AccountStreamPrefix) are no
	// conversations.
	qStatsConversations = `SELECT count(DISTINCT conversation_id) FROM {p}events
WHERE substr(conversation_id, 1, length(?1)) <> ?1`
)
