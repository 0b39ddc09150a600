-- The append-only event log.
--
-- pos is the global position, assigned by the writer from log_state, so a
-- position is never reused, even after the newest events are erased, and
-- checkpoints on pos stay valid. created_at is Unix nanoseconds (UTC).
-- content holds plain-text content (NULL otherwise); body the JSON of the
-- rest of the payload (NULL when there is none), so a plain message reads
-- back without JSON. extra is the extra object with request_id folded in,
-- indexed through the generated request_id column. fingerprint is
-- dedupe.Of: a retry is a duplicate only when it matches.
CREATE TABLE {p}events (
    pos             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    seq             INTEGER NOT NULL CHECK (seq > 0),
    type            TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    role            TEXT    NOT NULL DEFAULT '',
    content         TEXT,
    body            BLOB,
    extra           TEXT    NOT NULL DEFAULT '{}',
    fingerprint     BLOB    NOT NULL,
    request_id      TEXT GENERATED ALWAYS AS (json_extract(extra, '$.request_id')) VIRTUAL
);

CREATE UNIQUE INDEX {p}events_id ON {p}events (id);
CREATE UNIQUE INDEX {p}events_conversation_seq ON {p}events (conversation_id, seq);
CREATE UNIQUE INDEX {p}events_conversation_request
    ON {p}events (conversation_id, request_id) WHERE request_id IS NOT NULL;

-- The highest pos ever assigned. Erasing events never lowers it.
CREATE TABLE {p}log_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_pos INTEGER NOT NULL
);
INSERT INTO {p}log_state (id, last_pos) VALUES (1, 0);
