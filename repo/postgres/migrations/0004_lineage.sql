-- Forks: a branch's parent and the parent's seq it forks at, written in
-- the transaction that stores the branch's conversation_forked event (its
-- first), so reads of a branch find its lineage in one recursive query.
CREATE TABLE branches (
    conversation_id text    COLLATE "C" PRIMARY KEY,
    parent_id       text    COLLATE "C" NOT NULL,
    parent_seq      bigint  NOT NULL CHECK (parent_seq > 0)
);

CREATE INDEX branches_parent ON branches (parent_id);

-- Titles are unique across conversations: a writer checks a title against
-- this index, under the advisory lock of the title's lineage, before it
-- records one. (Not a unique index: a loaded log keeps the titles it had.)
CREATE INDEX conversations_title ON conversations (title) WHERE title <> '';
