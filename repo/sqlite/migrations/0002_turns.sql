-- Turns: who is answering which user request. One row per user request
-- that was begun as a turn (attempt >= 1) or streamed without one
-- (attempt 0). The log holds what happened (chunks, final message,
-- failures); this table holds the coordination state: the lease, and
-- which open streams a sweep must finalise.
CREATE TABLE {p}turns (
    conversation_id  TEXT    NOT NULL,
    user_request_id  TEXT    NOT NULL,
    attempt          INTEGER NOT NULL,
    owner            TEXT    NOT NULL DEFAULT '',
    lease_ns         INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER NOT NULL DEFAULT 0,
    state            TEXT    NOT NULL CHECK (state IN ('running', 'failed', 'completed')),
    -- When the stream last got a chunk, to the second: what sweeps read.
    last_chunk_at    INTEGER,
    last_error       TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (conversation_id, user_request_id)
) WITHOUT ROWID;

CREATE INDEX {p}turns_open_streams ON {p}turns (last_chunk_at)
    WHERE state = 'running' AND last_chunk_at IS NOT NULL;
