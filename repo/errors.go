package repo

import (
	"errors"
	"fmt"

	"github.com/chatlog/chatlog/events"
)

// Sentinel errors. Match them with errors.Is; the typed errors below carry
// details for errors.As.
var (
	// ErrClosed is returned by every call on a Repo after Close.
	ErrClosed = errors.New("repository closed")

	// ErrNotFound is returned when a looked-up event does not exist.
	ErrNotFound = errors.New("not found")

	// ErrIdempotencyConflict is returned when a request_id (or event id)
	// comes back with a payload other than the stored one. Nothing is
	// written; errors.As with *ConflictError gives the stored event.
	ErrIdempotencyConflict = errors.New("idempotency conflict")

	// ErrSeqConflict is returned when an expected seq does not match the
	// conversation's head, or an imported event's seq does not follow it.
	// Nothing is written; errors.As with *SeqConflictError gives both.
	ErrSeqConflict = errors.New("seq conflict")

	// ErrPartiallyStored is returned by AppendBatch with an expected seq
	// when some, but not all, of the batch's events are already stored:
	// the batch is neither a retry nor new, as EventStoreDB rules.
	ErrPartiallyStored = errors.New("batch partially stored")
)

// ConflictError reports an idempotency key reused with another payload.
type ConflictError struct {
	// Key is the request_id, or "id:"+event id when the event id clashed.
	Key string
	// Stored is the event already stored under Key.
	Stored events.Event
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("idempotency conflict: key %q was used for another payload (stored seq %d in conversation %q)",
		e.Key, e.Stored.Seq, e.Stored.ConversationID)
}

// Is makes a ConflictError match ErrIdempotencyConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrIdempotencyConflict }

// SeqConflictError reports an expected seq that did not match.
type SeqConflictError struct {
	ConversationID string
	// Expected is the seq the caller expected the head to be.
	Expected int64
	// Actual is the conversation's head seq (0 when it has no events).
	Actual int64
}

func (e *SeqConflictError) Error() string {
	return fmt.Sprintf("seq conflict in conversation %q: expected head seq %d, found %d",
		e.ConversationID, e.Expected, e.Actual)
}

// Is makes a SeqConflictError match ErrSeqConflict.
func (e *SeqConflictError) Is(target error) bool { return target == ErrSeqConflict }

// BatchError says which event of a batch failed; Err is the cause.
type BatchError struct {
	// Index is the position of the failing event in the batch.
	Index int
	Err   error
}

func (e *BatchError) Error() string { return fmt.Sprintf("event %d of batch: %v", e.Index, e.Err) }

// Unwrap returns the cause.
func (e *BatchError) Unwrap() error { return e.Err }
