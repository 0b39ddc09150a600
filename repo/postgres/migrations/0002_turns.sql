-- Turns: who is answering which user request. One row per user request
-- that was begun as a turn (attempt >= 1) or streamed without one
-- (attempt 0). The log holds what happened (chunks, final message,
-- failures); this table holds the coordination state every replica
-- shares: the lease, and which open streams a sweep must finalise.
-- Times are Unix nanoseconds.
CREATE TABLE turns (
    conversation_id  text    COLLATE "C" NOT NULL,
    user_request_id  text    COLLATE "C" NOT NULL,
    attempt          integer NOT NULL,
    owner            text    NOT NULL DEFAULT '',
    lease_ns         bigint  NOT NULL DEFAULT 0,
    lease_expires_at bigint  NOT NULL DEFAULT 0,
    state            text    NOT NULL CHECK (state IN ('running', 'failed', 'completed')),
    -- When the stream last got a chunk, to the second: what sweeps read.
    last_chunk_at    bigint,
    last_error       text    NOT NULL DEFAULT '',
    PRIMARY KEY (conversation_id, user_request_id)
);

CREATE INDEX turns_open_streams ON turns (last_chunk_at)
    WHERE state = 'running' AND last_chunk_at IS NOT NULL;
