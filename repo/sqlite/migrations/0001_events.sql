-- The append-only event log.
--
-- pos is the global position: AUTOINCREMENT so a position is never reused,
-- even after the newest rows are erased, and checkpoints on pos stay valid.
-- created_at is Unix nanoseconds (UTC). body is events.MarshalPayload;
-- extra is the extra object with request_id folded in, indexed through the
-- generated request_id column. fingerprint is dedupe.Of: a retry is a
-- duplicate only when it matches.
CREATE TABLE events (
    pos             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    seq             INTEGER NOT NULL CHECK (seq > 0),
    type            TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    role            TEXT    NOT NULL DEFAULT '',
    body            BLOB    NOT NULL,
    extra           TEXT    NOT NULL DEFAULT '{}',
    fingerprint     BLOB    NOT NULL,
    request_id      TEXT GENERATED ALWAYS AS (json_extract(extra, '$.request_id')) VIRTUAL
);

CREATE UNIQUE INDEX events_id ON events (id);
CREATE UNIQUE INDEX events_conversation_seq ON events (conversation_id, seq);
CREATE UNIQUE INDEX events_conversation_request
    ON events (conversation_id, request_id) WHERE request_id IS NOT NULL;
