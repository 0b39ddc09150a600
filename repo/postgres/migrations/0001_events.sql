-- The append-only event log.
--
-- pos is the global position, drawn from the column's sequence by the
-- insert itself. A writer draws it while it holds its conversation's lock
-- (see the package documentation), so within a conversation pos grows
-- with seq. A sequence never hands a value out twice, so erasing events
-- never lets a position be reused. Its cache must stay 1: with a cache per
-- session, two sessions would hand out positions out of order.
--
-- Text keys are COLLATE "C": bytewise order, as SQLite compares them, so
-- that key ranges (a user request's chunk keys) and listing order do not
-- depend on the server's locale.
--
-- created_at is Unix nanoseconds (UTC): timestamptz keeps microseconds
-- only. content holds plain-text content (NULL otherwise, and for text
-- holding a NUL byte, which PostgreSQL text cannot store: such text goes
-- into body). body is the JSON of the rest of the payload (NULL when there
-- is none), kept as bytes since only Go reads it. extra is the extra
-- object with request_id folded in, indexed through the generated
-- request_id column. fingerprint is dedupe.Of: a retry is a duplicate only
-- when it matches. parts_text is the text of multi-part content's text
-- parts (NULL otherwise), what search shows.
CREATE TABLE events (
    pos             bigint  GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
    id              text    COLLATE "C" NOT NULL,
    conversation_id text    COLLATE "C" NOT NULL,
    seq             bigint  NOT NULL CHECK (seq > 0),
    type            text    COLLATE "C" NOT NULL,
    schema_version  integer NOT NULL,
    created_at      bigint  NOT NULL,
    role            text    COLLATE "C" NOT NULL DEFAULT '',
    content         text,
    body            bytea,
    extra           json    NOT NULL DEFAULT '{}',
    fingerprint     bytea   NOT NULL,
    parts_text      text,
    request_id      text    COLLATE "C" GENERATED ALWAYS AS (extra ->> 'request_id') STORED
);

CREATE UNIQUE INDEX events_id ON events (id);
CREATE UNIQUE INDEX events_conversation_seq ON events (conversation_id, seq);
CREATE UNIQUE INDEX events_conversation_request
    ON events (conversation_id, request_id) WHERE request_id IS NOT NULL;

-- Where the model's context starts: the events that set the system prompt
-- and the clears, so a windowed read of a long conversation finds its
-- prompt without scanning back to the start.
CREATE INDEX events_context_markers ON events (conversation_id, type, seq)
    WHERE type IN ('conversation_started', 'system_prompt_set', 'conversation_cleared');
