package events

import (
	"crypto/rand"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"
)

var (
	idMu      sync.Mutex
	idEntropy = ulid.Monotonic(rand.Reader, 0)
)

// NewID returns a new event id: a ULID, time-sortable, and strictly
// increasing within this process even when minted in the same millisecond.
func NewID(now time.Time) string {
	idMu.Lock()
	defer idMu.Unlock()
	ms := idTime(now)
	id, err := ulid.New(ms, idEntropy)
	if err != nil {
		// Only an exhausted monotonic sequence within one millisecond
		// (2^80 ids) gets here; fresh entropy still yields a unique id.
		id = ulid.MustNew(ms, rand.Reader)
	}
	return id.String()
}

// idTime is now in Unix milliseconds, clamped to what a ULID can hold: a
// clock before 1970 (or an unset time.Time) would otherwise wrap around
// and make ulid.New fail.
func idTime(now time.Time) uint64 {
	ms := now.UnixMilli()
	switch {
	case ms < 0:
		return 0
	case uint64(ms) > ulid.MaxTime():
		return ulid.MaxTime()
	}
	return uint64(ms)
}

// NewConversationID returns a new conversation id: a UUID (version 7, so
// ids minted later sort later).
func NewConversationID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}
