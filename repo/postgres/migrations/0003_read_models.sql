-- Read models, kept by every writer in the same transaction as the events
-- they reflect.

-- The conversation list: projection.Summarize's fold as JSON, beside the
-- columns listing filters and sorts on.
CREATE TABLE conversations (
    conversation_id text    COLLATE "C" PRIMARY KEY,
    last_active_at  bigint  NOT NULL,
    user_id         text    COLLATE "C" NOT NULL DEFAULT '',
    source          text    COLLATE "C" NOT NULL DEFAULT '',
    title           text    COLLATE "C" NOT NULL DEFAULT '',
    ended           boolean NOT NULL DEFAULT false,
    summary         text    NOT NULL
);

CREATE INDEX conversations_recent ON conversations (last_active_at DESC, conversation_id DESC);
-- Only conversations with a user: the others are listed through
-- conversations_recent, and writing their read model costs one index less.
CREATE INDEX conversations_user_recent ON conversations (user_id, last_active_at DESC, conversation_id DESC)
    WHERE user_id <> '';

-- Full-text search over message text. search holds the distinct words
-- of a message's text (user, assistant and tool messages), lowercased,
-- as the writer splits them (letters and digits, like SQLite's unicode61
-- tokenizer, without stemming or stop words), in the same insert as the
-- event. PostgreSQL's own parser (to_tsvector) in an expression index
-- cost three times the rest of an append.
ALTER TABLE events ADD COLUMN search tsvector;

CREATE INDEX events_search ON events USING gin (search) WHERE search IS NOT NULL;

-- Per read model, the version of the code that built it and the highest
-- pos it had applied when it was last rebuilt. Appends do not move pos:
-- they update the read models in their own transaction, and one row that
-- every writer updated would serialise all of them.
CREATE TABLE projections (
    name    text    PRIMARY KEY,
    version integer NOT NULL,
    pos     bigint  NOT NULL
);

-- Version 0 makes Open build the conversation list from the log.
INSERT INTO projections (name, version, pos) VALUES ('conversations', 0, 0), ('search', 0, 0);
