-- The context-marker index of 0004, with its predicate written as ORs.
-- SQLite codes a partial index's `type IN (...)` with an ephemeral table
-- built and torn down for every row inserted, a tenth of the append
-- path; equalities joined by OR cost three comparisons.
DROP INDEX {p}events_context_markers;
CREATE INDEX {p}events_context_markers ON {p}events (conversation_id, type, seq)
    WHERE type = 'conversation_started' OR type = 'system_prompt_set' OR type = 'conversation_cleared';
