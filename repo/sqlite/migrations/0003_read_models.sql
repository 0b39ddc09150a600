-- Read models, kept by the writer in the same transaction as the events
-- they reflect; projections records, per read model, the version of the
-- code that built it and the last pos applied.

-- The conversation list: projection.Summarize's fold as JSON, beside the
-- columns listing filters and sorts on.
CREATE TABLE {p}conversations (
    conversation_id TEXT    PRIMARY KEY,
    last_active_at  INTEGER NOT NULL,
    user_id         TEXT    NOT NULL DEFAULT '',
    source          TEXT    NOT NULL DEFAULT '',
    title           TEXT    NOT NULL DEFAULT '',
    ended           INTEGER NOT NULL DEFAULT 0,
    summary         TEXT    NOT NULL
) WITHOUT ROWID;

CREATE INDEX {p}conversations_recent ON {p}conversations (last_active_at DESC, conversation_id DESC);
CREATE INDEX {p}conversations_user_recent ON {p}conversations (user_id, last_active_at DESC, conversation_id DESC);

-- Full-text search over message text. The index keeps no copy of the
-- text: its content is this view of the events table, by pos. Plain-text
-- content is the content column; for multi-part content the writer keeps
-- the text of its text parts in parts_text (NULL for every other event).
ALTER TABLE {p}events ADD COLUMN parts_text TEXT;

CREATE VIEW {p}searchable_messages AS
    SELECT pos, conversation_id, seq, role, coalesce(content, parts_text) AS content
    FROM {p}events
    WHERE type IN ('user_message', 'assistant_message', 'tool_result')
      AND (content IS NOT NULL OR parts_text IS NOT NULL);

CREATE VIRTUAL TABLE {p}message_search USING fts5(
    content, content = '{p}searchable_messages', content_rowid = 'pos',
    tokenize = 'unicode61 remove_diacritics 2', detail = none, columnsize = 0
);

-- Each commit adds a small segment; merging them in larger groups costs
-- appends less (queries read a few more segments).
INSERT INTO {p}message_search ({p}message_search, rank) VALUES ('automerge', 16);

CREATE TABLE {p}projections (
    name    TEXT    PRIMARY KEY,
    version INTEGER NOT NULL,
    pos     INTEGER NOT NULL
) WITHOUT ROWID;

-- Version 0 makes Open build both from the log that is already there.
INSERT INTO {p}projections (name, version, pos) VALUES ('conversations', 0, 0), ('search', 0, 0);
