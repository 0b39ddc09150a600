-- Payloads above sqlite.CompressThreshold are stored compressed: content
-- and parts_text as a BLOB instead of TEXT, body as a BLOB with a marker
-- byte no JSON starts with (see compress.go). The search index keeps no
-- copy of the text and reads it back through this view (to index, and to
-- unindex on delete or rebuild), so the view decompresses: it returns
-- exactly the text that was indexed, however the row stores it. Rows
-- written before compression hold TEXT and pass through unchanged, so
-- the index built from them stays valid. chatlog_inflate is registered
-- on every connection (sqlite.RegisterFunctions).
DROP VIEW {p}searchable_messages;

CREATE VIEW {p}searchable_messages AS
    SELECT pos, conversation_id, seq, role,
           coalesce(chatlog_inflate(content), chatlog_inflate(parts_text)) AS content
    FROM {p}events
    WHERE type IN ('user_message', 'assistant_message', 'tool_result')
      AND (content IS NOT NULL OR parts_text IS NOT NULL);
