-- Where the model's context starts: the events that set the system prompt
-- and the clears. A partial index, so ordinary events cost nothing to
-- index, and a windowed read of a long conversation finds its prompt
-- without scanning back to the start.
CREATE INDEX {p}events_context_markers ON {p}events (conversation_id, type, seq)
    WHERE type IN ('conversation_started', 'system_prompt_set', 'conversation_cleared');
