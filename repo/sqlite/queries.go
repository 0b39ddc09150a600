package sqlite

// The SQL of the backend, in one place. Placeholders only: no identifier
// or value is ever spliced into a statement.

const eventColumns = `pos, id, conversation_id, seq, type, schema_version, created_at, role, content, body, extra`

const (
	qMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
)`
	qMigrationVersion = `SELECT coalesce(max(version), 0) FROM schema_migrations`
	qMigrationRecord  = `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`

	qDataVersion = `PRAGMA data_version`

	// OR IGNORE: a unique-index clash changes nothing instead of aborting,
	// so SQLite needs no statement journal per insert (it cost a fifth of
	// the append path); the writer then looks up what clashed.
	// pos is assigned by the writer (see writer.lastPos).
	qInsert = `INSERT OR IGNORE INTO events (pos, id, conversation_id, seq, type, schema_version, created_at, role, content, body, extra, fingerprint)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

	// The highest pos ever assigned: log_state keeps it even after the
	// newest events are erased, so a pos is never reused.
	qLastPos    = `SELECT max((SELECT last_pos FROM log_state WHERE id = 1), coalesce((SELECT max(pos) FROM events), 0))`
	qSetLastPos = `UPDATE log_state SET last_pos = ? WHERE id = 1 AND last_pos < ?`

	qHead = `SELECT seq FROM events WHERE conversation_id = ? ORDER BY seq DESC LIMIT 1`

	// The lookups return the fingerprint after the event columns.
	qByRequestID = `SELECT ` + eventColumns + `, fingerprint FROM events
WHERE conversation_id = ? AND request_id = ?`
	qByID = `SELECT ` + eventColumns + `, fingerprint FROM events WHERE id = ?`

	qRange = `SELECT ` + eventColumns + ` FROM events
WHERE conversation_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?`
	qLast = `SELECT ` + eventColumns + ` FROM events
WHERE conversation_id = ? ORDER BY seq DESC LIMIT ?`
	qAfterPos = `SELECT ` + eventColumns + ` FROM events WHERE pos > ? ORDER BY pos LIMIT ?`

	qIntegrityCheck = `PRAGMA integrity_check`
)
