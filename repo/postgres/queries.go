package postgres

// The SQL of the backend, in one place. Placeholders only: no value is
// ever spliced into a statement (the schema and channel names, which are
// identifiers, go through pgx.Identifier).
//
// Write statements take arrays and unnest them, so a group commit of any
// size is a fixed number of statements, sent together in one round trip.

const eventColumns = `pos, id, conversation_id, seq, type, schema_version, created_at, role, content, body, extra`

// Migrations.
const (
	qCreateSchema    = `CREATE SCHEMA IF NOT EXISTS `
	qMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text    NOT NULL,
    applied_at bigint  NOT NULL
)`
	qCurrentSchema    = `SELECT current_schema()`
	qMigrationVersion = `SELECT coalesce(max(version), 0) FROM schema_migrations`
	qMigrationRecord  = `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`
)

// Locks. Advisory locks are transaction-scoped: they go at commit or
// rollback, also when the client dies (the server ends its session).
const (
	// A write transaction's first statement: its id, then the shared
	// write lock (every write transaction holds it, a read model rebuild
	// holds it exclusively), then the conversations' and title lineages'
	// locks in the order given (sorted by the caller, so that two writers
	// never wait on each other in a cycle). The select list is evaluated
	// left to right, the array in its order.
	qBegin = `SELECT pg_current_xact_id()::text, pg_advisory_xact_lock_shared($1),
    (SELECT count(pg_advisory_xact_lock(k)) FROM unnest($2::bigint[]) AS k)`
	qLockOne = `SELECT pg_advisory_xact_lock($1)`
)

// The log.
const (
	// The conversations' head seqs and stored read models.
	//
	// Look-ups by a list of keys probe the index once per key (a LATERAL
	// subquery with LIMIT is never flattened into a join): a prepared
	// statement's generic plan, made while a table is still small, would
	// otherwise keep hashing the whole table long after it grew.
	//
	// A read model comes with its row's version (xmin); its text only
	// when that differs from the version the writer has cached ($2).
	qHeads = `SELECT k.c, coalesce(h.seq, 0), s.x, CASE WHEN s.x IS DISTINCT FROM k.x THEN s.summary END
FROM unnest($1::text[], $2::text[]) AS k(c, x)
LEFT JOIN LATERAL (SELECT seq FROM events WHERE conversation_id = k.c ORDER BY seq DESC LIMIT 1) AS h ON true
LEFT JOIN LATERAL (SELECT xmin::text AS x, summary FROM conversations WHERE conversation_id = k.c LIMIT 1) AS s ON true`

	// The events stored under some keys: (conversation, request_id)
	// pairs and event ids. The lookups return the fingerprint after the
	// event columns.
	qByKeys = `SELECT e.* FROM unnest($1::text[], $2::text[]) AS k(c, r)
CROSS JOIN LATERAL (SELECT ` + eventColumns + `, fingerprint FROM events
    WHERE conversation_id = k.c AND request_id = k.r AND request_id IS NOT NULL LIMIT 1) AS e
UNION ALL
SELECT e.* FROM unnest($3::text[]) AS k(id)
CROSS JOIN LATERAL (SELECT ` + eventColumns + `, fingerprint FROM events WHERE id = k.id LIMIT 1) AS e`

	// The insert draws pos from the column's sequence row by row, in
	// the order given (ORDER BY o), which is seq order within each
	// conversation.
	qInsert = `INSERT INTO events (id, conversation_id, seq, type, schema_version, created_at, role, content, body, extra, fingerprint, parts_text, search)
SELECT id, c, seq, type, v, at, role, content, body, extra::json, fp, parts, search::tsvector
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::int[], $6::bigint[], $7::text[], $8::text[], $9::bytea[], $10::text[], $11::bytea[], $12::text[], $13::text[])
    WITH ORDINALITY AS k(id, c, seq, type, v, at, role, content, body, extra, fp, parts, search, o)
ORDER BY o
RETURNING id, pos`

	qPositions = `SELECT id, pos FROM events WHERE id = ANY($1::text[])`

	qHead = `SELECT seq FROM events WHERE conversation_id = $1 ORDER BY seq DESC LIMIT 1`

	qByRequestID = `SELECT ` + eventColumns + ` FROM events
WHERE conversation_id = $1 AND request_id = $2 AND request_id IS NOT NULL`

	qRange = `SELECT ` + eventColumns + ` FROM events
WHERE conversation_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4`
	qLast = `SELECT ` + eventColumns + ` FROM events
WHERE conversation_id = $1 ORDER BY seq DESC LIMIT $2`
	qAfterPos = `SELECT ` + eventColumns + ` FROM events WHERE pos > $1 ORDER BY pos LIMIT $2`
	// The same with each event's search vector, for rebuild and verify.
	qAfterPosSearch = `SELECT ` + eventColumns + `, search::text FROM events WHERE pos > $1 ORDER BY pos LIMIT $2`

	// Context markers: the predicate repeats the partial index's, so the
	// planner can use it.
	qLatestPrompt = `SELECT ` + eventColumns + ` FROM events
WHERE conversation_id = $1 AND type IN ('conversation_started', 'system_prompt_set') AND seq <= $2
  AND type IN ('conversation_started', 'system_prompt_set', 'conversation_cleared')
ORDER BY seq DESC LIMIT 1`
	qLatestClear = `SELECT seq FROM events
WHERE conversation_id = $1 AND type = 'conversation_cleared' AND seq <= $2
  AND type IN ('conversation_started', 'system_prompt_set', 'conversation_cleared')
ORDER BY seq DESC LIMIT 1`
)

// Turns.
const (
	qTurnsGet = `SELECT t.* FROM unnest($1::text[], $2::text[]) AS k(c, u)
CROSS JOIN LATERAL (SELECT conversation_id, user_request_id, attempt, owner, lease_ns, lease_expires_at, state, last_chunk_at, last_error
    FROM turns WHERE conversation_id = k.c AND user_request_id = k.u LIMIT 1) AS t`
	qTurnPut = `INSERT INTO turns (conversation_id, user_request_id, attempt, owner, lease_ns, lease_expires_at, state, last_chunk_at, last_error)
VALUES ($1, $2, $3, $4, $5, $6, 'running', NULL, $7)
ON CONFLICT (conversation_id, user_request_id) DO UPDATE SET
    attempt = excluded.attempt, owner = excluded.owner, lease_ns = excluded.lease_ns,
    lease_expires_at = excluded.lease_expires_at, state = 'running', last_chunk_at = NULL`
	qTurnHeartbeat = `UPDATE turns SET lease_expires_at = $1
WHERE conversation_id = $2 AND user_request_id = $3 AND attempt = $4 AND state = 'running'`
	qTurnFail = `UPDATE turns SET state = 'failed', last_error = $1, lease_expires_at = 0
WHERE conversation_id = $2 AND user_request_id = $3`
	// One turn at a time: a final message per turn is rare in a batch,
	// and a key equality always plans as an index probe.
	qTurnComplete = `UPDATE turns SET state = 'completed', lease_expires_at = 0
WHERE conversation_id = $1 AND user_request_id = $2`
	// Streams got chunks: create the row of a stream begun without a
	// turn, or move last_chunk_at on (the writer sends only the streams
	// whose row is at least repo.StreamTimeResolution behind, or new). A
	// chunk loaded from a log raises the turn's attempt to its own (a
	// live chunk always has the holder's), unless a holder's lease is
	// live: history never takes a running turn away.
	qTurnsChunks = `INSERT INTO turns AS t (conversation_id, user_request_id, attempt, state, last_chunk_at)
SELECT c, u, a, 'running', at FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[]) AS k(c, u, a, at)
ON CONFLICT (conversation_id, user_request_id) DO UPDATE SET
    last_chunk_at = greatest(coalesce(t.last_chunk_at, 0), excluded.last_chunk_at),
    attempt = CASE WHEN t.state = 'running' AND t.attempt > 0 AND t.lease_expires_at > $5 THEN t.attempt
                   ELSE greatest(t.attempt, excluded.attempt) END`
	qOpenStreams = `SELECT conversation_id, user_request_id, attempt, last_chunk_at FROM turns
WHERE state = 'running' AND last_chunk_at IS NOT NULL AND last_chunk_at < $1
  AND (attempt = 0 OR lease_expires_at <= $2)
ORDER BY last_chunk_at LIMIT $3`

	// Retention of folded chunks: the rows stay (no holes in seq), their
	// content goes. Only chunks of completed turns. extra is rewritten
	// as text, keeping request_id first where the encoder put it (and
	// any \u0000 in it, which jsonb would refuse).
	qPurgeChunks = `UPDATE events AS e SET content = NULL, body = NULL, parts_text = NULL,
    extra = (CASE WHEN e.extra::text = '{}' THEN '{"purged":true}'
                  ELSE left(e.extra::text, -1) || ',"purged":true}' END)::json
FROM turns AS t
WHERE e.type = 'assistant_delta' AND e.created_at < $1 AND e.extra ->> 'purged' IS NULL
  AND t.conversation_id = e.conversation_id AND t.user_request_id = e.extra ->> 'user_request_id'
  AND t.state = 'completed'`

	// The chunks of a user request: its chunk keys share a prefix
	// (repo.ChunkRequestID), read as a range of the request_id index.
	qChunksByKey = `SELECT ` + eventColumns + ` FROM events
WHERE conversation_id = $1 AND request_id >= $2 AND request_id < $3 AND type = 'assistant_delta'
ORDER BY seq`
	// Chunks stored under other keys (hand-made logs): a scan of the
	// conversation, only when the key range finds none.
	qChunksScan = `SELECT ` + eventColumns + ` FROM events
WHERE conversation_id = $1 AND type = 'assistant_delta' ORDER BY seq`
)

// Read models.
const (
	qSummaryGet  = `SELECT summary FROM conversations WHERE conversation_id = $1`
	qSummaryPuts = `INSERT INTO conversations AS c (conversation_id, last_active_at, user_id, source, title, ended, summary)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bool[], $7::text[])
ON CONFLICT (conversation_id) DO UPDATE SET
    last_active_at = excluded.last_active_at, user_id = excluded.user_id, source = excluded.source,
    title = excluded.title, ended = excluded.ended, summary = excluded.summary
RETURNING conversation_id, xmin::text`
	qSummaryAll   = `SELECT conversation_id, summary FROM conversations ORDER BY conversation_id`
	qSummaryClear = `DELETE FROM conversations`

	qProjections     = `SELECT name, version, pos FROM projections ORDER BY name`
	qProjectionsInit = `UPDATE projections SET version = $1, pos = $2 WHERE name = $3`
	qMaxPos          = `SELECT coalesce(max(pos), 0) FROM events`

	// Listing pages by (last_active_at, conversation_id), newest first,
	// through conversations_recent; a user's, through
	// conversations_user_recent (whose predicate the query repeats, so a
	// generic plan can use it). Every other filter is bound; an empty one
	// matches all.
	qList = `SELECT summary, last_active_at, conversation_id FROM conversations
WHERE ($1 = '' OR source = $1)
  AND (NOT $2 OR last_active_at < $3 OR (last_active_at = $3 AND conversation_id < $4))
ORDER BY last_active_at DESC, conversation_id DESC LIMIT $5`
	qListUser = `SELECT summary, last_active_at, conversation_id FROM conversations
WHERE user_id = $1 AND user_id <> '' AND ($2 = '' OR source = $2)
  AND (NOT $3 OR last_active_at < $4 OR (last_active_at = $4 AND conversation_id < $5))
ORDER BY user_id, last_active_at DESC, conversation_id DESC LIMIT $6`

	// Newest first. The snippet is cut in Go from the few hits returned.
	// The conversation filters are subqueries, run only when set.
	qSearch = `SELECT h.conversation_id, h.seq, h.role, h.text
FROM (
    SELECT e.conversation_id, e.seq, e.role, coalesce(e.content, e.parts_text, '') AS text, e.pos
    FROM events AS e
    WHERE e.search @@ $1::tsquery AND e.search IS NOT NULL
      AND ($2 = '' OR e.conversation_id = $2) AND ($3 = '' OR e.role = $3)
      AND ($4 = '' OR EXISTS (SELECT 1 FROM conversations AS c WHERE c.conversation_id = e.conversation_id AND c.source = $4))
      AND ($5 = '' OR EXISTS (SELECT 1 FROM conversations AS c WHERE c.conversation_id = e.conversation_id AND c.user_id = $5))
    ORDER BY e.pos DESC LIMIT $6
) AS h
ORDER BY h.pos DESC`
	// Rebuilding the search index: the vectors of a page of events, by
	// pos. Hash and merge joins are off in that transaction, so each row
	// is an index probe whatever the plan cache holds.
	qSetSearch = `UPDATE events AS e SET search = v.s::tsvector
FROM unnest($1::bigint[], $2::text[]) AS v(pos, s)
WHERE e.pos = v.pos`
	qRebuildPlan     = `SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off`
	qNeighbourBefore = `SELECT seq, role, coalesce(content, parts_text, '') FROM events
WHERE conversation_id = $1 AND seq < $2
  AND type IN ('user_message', 'assistant_message', 'tool_result') AND (content IS NOT NULL OR parts_text IS NOT NULL)
ORDER BY seq DESC LIMIT 1`
	qNeighbourAfter = `SELECT seq, role, coalesce(content, parts_text, '') FROM events
WHERE conversation_id = $1 AND seq > $2
  AND type IN ('user_message', 'assistant_message', 'tool_result') AND (content IS NOT NULL OR parts_text IS NOT NULL)
ORDER BY seq LIMIT 1`
)

// Lineage, erasure and titles (Management).
const (
	// A conversation's ancestry, nearest first: one probe of branches per
	// ancestor, in one statement.
	qAncestry = `WITH RECURSIVE up(parent_id, parent_seq, depth) AS (
    SELECT parent_id, parent_seq, 1 FROM branches WHERE conversation_id = $1
  UNION ALL
    SELECT b.parent_id, b.parent_seq, up.depth + 1
    FROM up CROSS JOIN LATERAL (SELECT parent_id, parent_seq FROM branches WHERE conversation_id = up.parent_id LIMIT 1) AS b
    WHERE up.depth < $2
)
SELECT parent_id, parent_seq FROM up ORDER BY depth`
	// A conversation and every branch under it, the conversation first.
	qDescendants = `WITH RECURSIVE down(conversation_id, depth) AS (
    SELECT $1::text COLLATE "C", 0
  UNION ALL
    SELECT b.conversation_id, down.depth + 1 FROM down JOIN branches AS b ON b.parent_id = down.conversation_id
    WHERE down.depth < 1000
)
SELECT conversation_id FROM down ORDER BY depth, conversation_id`
	qBranchPut = `INSERT INTO branches (conversation_id, parent_id, parent_seq) VALUES ($1, $2, $3)`
	qRangeDesc = `SELECT ` + eventColumns + ` FROM events
WHERE conversation_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq DESC LIMIT $4`

	// The context markers of a segment of a lineage.
	qLatestStartedIn = `SELECT ` + eventColumns + ` FROM events
WHERE conversation_id = $1 AND type = 'conversation_started' AND seq > $2 AND seq <= $3
  AND type IN ('conversation_started', 'system_prompt_set', 'conversation_cleared')
ORDER BY seq DESC LIMIT 1`
	qLatestPromptSetIn = `SELECT ` + eventColumns + ` FROM events
WHERE conversation_id = $1 AND type = 'system_prompt_set' AND seq > $2 AND seq <= $3
  AND type IN ('conversation_started', 'system_prompt_set', 'conversation_cleared')
ORDER BY seq DESC LIMIT 1`
	qLatestClearIn = `SELECT seq FROM events
WHERE conversation_id = $1 AND type = 'conversation_cleared' AND seq > $2 AND seq <= $3
  AND type IN ('conversation_started', 'system_prompt_set', 'conversation_cleared')
ORDER BY seq DESC LIMIT 1`

	// Erasure: the conversation's rows in every table.
	qEraseEvents     = `DELETE FROM events WHERE conversation_id = $1`
	qEraseTurns      = `DELETE FROM turns WHERE conversation_id = $1`
	qEraseSummary    = `DELETE FROM conversations WHERE conversation_id = $1`
	qEraseBranch     = `DELETE FROM branches WHERE conversation_id = $1`
	qPruneCandidates = `SELECT conversation_id FROM conversations
WHERE ended AND last_active_at < $1 AND ($2 = '' OR source = $2) ORDER BY conversation_id`

	// The titles of lineages, by base: the base itself and "base #n"
	// (digits sort below ':').
	qTitleLineages = `SELECT x.conversation_id, x.title FROM unnest($1::text[]) AS b(base)
CROSS JOIN LATERAL (SELECT conversation_id, title FROM conversations
    WHERE title <> '' AND (title = b.base OR (title > b.base || ' #' AND title < b.base || ' #:'))) AS x`
	qLatestTitleSet = `SELECT ` + eventColumns + ` FROM events
WHERE conversation_id = $1 AND type = 'title_set' ORDER BY seq DESC LIMIT 1`
	qConversationExists = `SELECT count(*) FROM conversations WHERE conversation_id = $1`
	// Ids starting with $1: the range up to $1 followed by the highest
	// code point, checked exactly.
	qIDPrefix = `SELECT conversation_id FROM conversations
WHERE conversation_id >= $1 AND conversation_id < $2 AND starts_with(conversation_id, $1)
ORDER BY conversation_id LIMIT 5`
	qUserSummaries = `SELECT summary FROM conversations WHERE user_id = $1 AND user_id <> ''`
	// The conversations without a user (UserUsage of ""), by a scan.
	qNoUserSummaries = `SELECT summary FROM conversations WHERE user_id = ''`
)

// Operations.
const (
	qNotify = `SELECT pg_notify($1, $2)`
	// The backend of a connection that broke during a commit: once it
	// is gone, the commit's outcome is settled.
	qBackendAlive = `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`
	qXactStatus   = `SELECT pg_xact_status($1::xid8)`
	qTerminate    = `SELECT pg_terminate_backend($1)`
	// The indexes of the schema's tables that are invalid or not ready
	// (a failed concurrent build): the check operators run.
	qInvalidIndexes = `SELECT c.relname FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND (NOT i.indisvalid OR NOT i.indisready)
ORDER BY c.relname`
	qSize = `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')`
	qDropSchema = `DROP SCHEMA IF EXISTS `
	// Storage statistics: per type, the events and their payloads' bytes
	// as stored, uncompressed, and the values PostgreSQL compressed.
	qStatsByType = `SELECT type, count(*),
    coalesce(sum(coalesce(pg_column_size(content), 0) + coalesce(pg_column_size(body), 0) + coalesce(pg_column_size(parts_text), 0)), 0)::bigint,
    coalesce(sum(coalesce(octet_length(content), 0) + coalesce(octet_length(body), 0) + coalesce(octet_length(parts_text), 0)), 0)::bigint,
    (count(*) FILTER (WHERE pg_column_compression(content) IS NOT NULL)
        + count(*) FILTER (WHERE pg_column_compression(body) IS NOT NULL)
        + count(*) FILTER (WHERE pg_column_compression(parts_text) IS NOT NULL))::bigint
FROM events GROUP BY type ORDER BY type`
	qStatsConversations = `SELECT count(DISTINCT conversation_id) FROM events WHERE NOT starts_with(conversation_id, $1)`
	qSetting            = `SELECT current_setting($1)`
)
