package events_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/chatlog/chatlog/events"
)

func TestNewID(t *testing.T) {
	t.Run("MonotonicWithinMillisecond", func(t *testing.T) {
		now := time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
		const n = 10000
		prev := ""
		for i := range n {
			id := events.NewID(now)
			u, err := ulid.ParseStrict(id)
			if err != nil {
				t.Fatalf("NewID #%d = %q: not a ULID: %v", i, id, err)
			}
			if got, want := u.Time(), uint64(now.UnixMilli()); got != want {
				t.Fatalf("NewID #%d time = %d ms, want %d", i, got, want)
			}
			if len(id) != 26 {
				t.Fatalf("NewID #%d = %q, want 26 characters", i, id)
			}
			if id <= prev {
				t.Fatalf("NewID #%d = %q, not after #%d = %q", i, id, i-1, prev)
			}
			prev = id
		}
	})
	t.Run("LaterSortsLater", func(t *testing.T) {
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		a := events.NewID(now)
		b := events.NewID(now.Add(time.Millisecond))
		if b <= a {
			t.Errorf("NewID(t+1ms) = %q, not after NewID(t) = %q", b, a)
		}
	})
	t.Run("OutOfRangeClock", func(t *testing.T) {
		// A clock outside what a ULID can hold (a zero time.Time from an
		// unset injected clock, or a date before 1970) still yields an id.
		for _, now := range []time.Time{{}, time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)} {
			id := events.NewID(now)
			if _, err := ulid.ParseStrict(id); err != nil {
				t.Errorf("NewID(%v) = %q: not a ULID: %v", now, id, err)
			}
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		const workers, each = 8, 500
		results := make(chan []string, workers)
		for range workers {
			go func() {
				ids := make([]string, each)
				for i := range ids {
					ids[i] = events.NewID(now)
				}
				results <- ids
			}()
		}
		seen := make(map[string]bool, workers*each)
		for range workers {
			for _, id := range <-results {
				if seen[id] {
					t.Fatalf("NewID returned %q twice", id)
				}
				seen[id] = true
			}
		}
	})
}

func TestNewConversationID(t *testing.T) {
	seen := make(map[string]bool)
	prev := ""
	for range 100 {
		id := events.NewConversationID()
		u, err := uuid.Parse(id)
		if err != nil {
			t.Fatalf("NewConversationID() = %q: not a UUID: %v", id, err)
		}
		if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
			t.Errorf("NewConversationID() = %q: version %d variant %v, want version 7 RFC 4122", id, u.Version(), u.Variant())
		}
		if id != u.String() {
			t.Errorf("NewConversationID() = %q, want canonical form %q", id, u.String())
		}
		if seen[id] {
			t.Fatalf("NewConversationID() returned %q twice", id)
		}
		seen[id] = true
		if id <= prev {
			t.Errorf("NewConversationID() = %q, not after %q", id, prev)
		}
		prev = id
	}
}
