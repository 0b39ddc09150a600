package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatlog/chatlog/events"
)

// StorageStats is what the store holds and what it takes, in the shape of
// the SQLite backend's.
type StorageStats struct {
	// Events counts the events in the log; ByType splits it by type.
	Events int64            `json:"events"`
	ByType map[string]int64 `json:"by_type"`
	// Conversations counts the conversations with at least one event
	// (account streams, such as users' ledgers, are none).
	Conversations int64 `json:"conversations"`
	// Payload is what message payloads take, as stored and not.
	Payload PayloadStats `json:"payload"`
	// DBBytes is what the schema's tables and their indexes take.
	DBBytes *int64 `json:"db_bytes,omitempty"`
	// GroupCommit are the writers' running totals since Open (Stats).
	GroupCommit Stats `json:"group_commit"`
}

// PayloadStats measures the payload columns of the log: content, body and
// parts_text. chatlog does not compress them; PostgreSQL compresses large
// values itself (TOAST), which is what CompressedValues counts.
type PayloadStats struct {
	// StoredBytes is what they take as stored (pg_column_size).
	StoredBytes int64 `json:"stored_bytes"`
	// RawBytes is what they take uncompressed (octet_length).
	RawBytes int64 `json:"raw_bytes"`
	// CompressedValues counts the values stored compressed.
	CompressedValues int64 `json:"compressed_values"`
}

// StorageStats counts the log by type and conversation and measures its
// payloads in SQL (a scan of the events table), and adds the schema's
// size and Stats.
func (r *Repo) StorageStats(ctx context.Context) (StorageStats, error) {
	st := StorageStats{ByType: map[string]int64{}}
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		st.ByType, st.Events, st.Payload = map[string]int64{}, 0, PayloadStats{}
		rows, err := c.Query(ctx, qStatsByType)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var typ string
			var n, stored, raw, compressed int64
			if err := rows.Scan(&typ, &n, &stored, &raw, &compressed); err != nil {
				return err
			}
			st.ByType[typ] = n
			st.Events += n
			st.Payload.StoredBytes += stored
			st.Payload.RawBytes += raw
			st.Payload.CompressedValues += compressed
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("postgres: count events: %w", err)
		}
		if err := c.QueryRow(ctx, qStatsConversations, events.AccountStreamPrefix).Scan(&st.Conversations); err != nil {
			return fmt.Errorf("postgres: count conversations: %w", err)
		}
		var size int64
		if err := c.QueryRow(ctx, qSize).Scan(&size); err != nil {
			return err
		}
		st.DBBytes = &size
		return nil
	})
	if err != nil {
		return StorageStats{}, err
	}
	st.GroupCommit = r.Stats()
	return st, nil
}
