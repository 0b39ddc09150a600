-- Forks: a branch's parent and the parent's seq it forks at, kept by the
-- writer in the transaction that stores the branch's conversation_forked
-- event (its first), so reads of a branch find its lineage with one probe
-- per ancestor.
CREATE TABLE {p}branches (
    conversation_id TEXT    PRIMARY KEY,
    parent_id       TEXT    NOT NULL,
    parent_seq      INTEGER NOT NULL CHECK (parent_seq > 0)
) WITHOUT ROWID;

CREATE INDEX {p}branches_parent ON {p}branches (parent_id);

-- Titles are unique across conversations: the writer checks a title
-- against this index before it records one.
CREATE INDEX {p}conversations_title ON {p}conversations (title) WHERE title <> '';

-- Erasure must not leave a deleted message's words in the search index:
-- with secure-delete, FTS5 removes a deleted row's entries at once
-- instead of recording a tombstone beside them until the next merge.
INSERT INTO {p}message_search ({p}message_search, rank) VALUES ('secure-delete', 1);
