package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/chatlog/chatlog/events"
)

// StorageStats is what a store holds and what it takes on disk.
type StorageStats struct {
	// Events counts the events in the log; ByType splits it by type.
	Events int64            `json:"events"`
	ByType map[string]int64 `json:"by_type"`
	// Conversations counts the conversations with at least one event
	// (account streams, such as users' ledgers, are none).
	Conversations int64 `json:"conversations"`
	// Payload is what message payloads take, compressed and not.
	Payload PayloadStats `json:"payload"`
	// DBBytes and WALBytes are the sizes of the database file and of its
	// write-ahead log (0 when there is none); nil for an in-memory
	// database. They cover the whole file, whatever its table prefixes.
	DBBytes  *int64 `json:"db_bytes,omitempty"`
	WALBytes *int64 `json:"wal_bytes,omitempty"`
	// GroupCommit are the writer's running totals since Open (Stats).
	GroupCommit Stats `json:"group_commit"`
}

// PayloadStats measures the payload columns of the log: content, body and
// parts_text (see CompressThreshold).
type PayloadStats struct {
	// StoredBytes is what they take as stored.
	StoredBytes int64 `json:"stored_bytes"`
	// RawBytes is what they would take uncompressed.
	RawBytes int64 `json:"raw_bytes"`
	// CompressedValues counts the values stored compressed.
	CompressedValues int64 `json:"compressed_values"`
}

// StorageStats counts the log by type and conversation and measures its
// payloads, in SQL (one scan of the events table, grouped by type) on a
// read connection, and adds the file sizes and Stats.
func (r *Repo) StorageStats(ctx context.Context) (StorageStats, error) {
	st := StorageStats{ByType: map[string]int64{}}
	err := r.read(ctx, func(c *conn) error {
		s, err := c.stmt(qStatsByType)
		if err != nil {
			return err
		}
		defer s.Reset()
		for s.Step() {
			n := s.ColumnInt64(1)
			st.ByType[s.ColumnText(0)] = n
			st.Events += n
			st.Payload.StoredBytes += s.ColumnInt64(2)
			st.Payload.RawBytes += s.ColumnInt64(3)
			st.Payload.CompressedValues += s.ColumnInt64(4)
		}
		if err := s.Err(); err != nil {
			return fmt.Errorf("sqlite: count events: %w", err)
		}
		cs, err := c.stmt(qStatsConversations)
		if err != nil {
			return err
		}
		defer cs.Reset()
		cs.BindText(1, events.AccountStreamPrefix)
		if !cs.Step() {
			return cmpErr(cs.Err(), "sqlite: count conversations")
		}
		st.Conversations = cs.ColumnInt64(0)
		return nil
	})
	if err != nil {
		return StorageStats{}, err
	}
	if r.path != "" {
		if st.DBBytes, err = fileSize(r.path); err != nil {
			return StorageStats{}, err
		}
		if st.WALBytes, err = fileSize(r.path + "-wal"); err != nil {
			return StorageStats{}, err
		}
		if st.DBBytes == nil {
			st.DBBytes = new(int64)
		}
		if st.WALBytes == nil {
			st.WALBytes = new(int64) // no WAL file: nothing in it
		}
	}
	st.GroupCommit = r.Stats()
	return st, nil
}

// fileSize returns the size of a file, nil when it does not exist.
func fileSize(path string) (*int64, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	n := fi.Size()
	return &n, nil
}
