package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/chatlog/chatlog/events"
)

// A turn is the work of answering one user request: the model's streamed
// chunks (assistant_delta events) and the final assistant_message that
// folds them. Turns makes running the model for a request happen at most
// once across goroutines and processes, with a lease in the store:
//
//   - BeginTurn records the user message (idempotently) and takes the turn
//     as attempt 1; while that attempt's lease is live, other begins are
//     told it is in flight; once it expired, the next begin takes over as
//     attempt 2, and so on.
//   - Chunks and the finish name their attempt (AppendOptions.Attempt,
//     Finish): one from an attempt that no longer holds the turn is
//     refused with ErrStaleAttempt and nothing is written. A holder whose
//     lease lapsed may still write if nobody took over.
//   - Finish folds the holder's chunks into the final message, in the same
//     transaction as it completes the turn; after that, begins answer
//     with the reply.
//
// A user request that was never begun as a turn may still be streamed:
// its chunks carry no attempt, and Finish with attempt 0 folds them.
type Turns interface {
	// BeginTurn records req.UserMessage (idempotent: a retry with other
	// content is ErrIdempotencyConflict) and reports the turn's state:
	// TurnStarted when the caller now holds it (and should run the model),
	// TurnCompleted with the reply when it was already answered,
	// TurnInFlight while another attempt's lease is live.
	BeginTurn(ctx context.Context, req BeginTurn) (TurnState, error)

	// Heartbeat extends the lease of the attempt holding the turn by the
	// turn's lease length and returns the new expiry. ErrStaleAttempt when
	// attempt no longer holds it (or the turn completed); ErrNotFound for
	// a turn never begun.
	Heartbeat(ctx context.Context, conversationID, userRequestID string, attempt int) (time.Time, error)

	// FailTurn records that the attempt's run failed (a turn_failed event
	// with the message) and releases the turn, so the next begin takes
	// over at once as a new attempt. An empty message releases the turn
	// without recording anything (a request that was itself invalid may
	// be retried once fixed). ErrStaleAttempt as for Heartbeat.
	FailTurn(ctx context.Context, conversationID, userRequestID string, attempt int, message string) error

	// Finish folds the chunks of the user request's holding attempt (the
	// chunks without attempt when it was never begun as a turn; give
	// attempt 0) into the final message: it reads them, in seq order, and
	// calls build, which returns the assistant_message (and any events to
	// write after it, such as results for interrupted tool calls). The
	// message gets request_id assistant:{userRequestID}; everything is
	// written in one transaction with the turn's completion. Finishing
	// again returns the stored message as a Duplicate. ErrStaleAttempt
	// when attempt does not hold the turn; build's error is returned as is
	// and nothing is written. ErrNotFound when the request was neither
	// begun as a turn nor streamed (no chunks).
	Finish(ctx context.Context, conversationID, userRequestID string, attempt int, build FinishFunc) (Result, error)

	// Streams lists open streams (chunks written, no final message) whose
	// last chunk is older than idleSince and whose holder's lease, if
	// any, has expired: what a sweep finalises.
	Streams(ctx context.Context, idleSince time.Time) ([]Stream, error)

	// PurgeChunks applies retention to folded chunks: every chunk written
	// before the given time whose turn has its final message loses its
	// content (text, tool-call fragments, raw) and is marked
	// extra.purged = true. The row stays, so seqs keep no holes and replay
	// still shows that a chunk was there; final messages are never
	// touched. It returns how many chunks it purged.
	PurgeChunks(ctx context.Context, before time.Time) (int64, error)
}

// FinishFunc builds a turn's final events from its chunks, given in seq
// order (compact.Fold orders them by index). The first event returned is
// the assistant_message; its request_id and conversation are set by the
// store.
type FinishFunc func(chunks []events.Event) ([]events.Event, error)

// BeginTurn asks to begin (or look up) the turn answering a user request.
type BeginTurn struct {
	// UserMessage is the user's message; its ConversationID and RequestID
	// name the turn.
	UserMessage events.Event
	// Owner identifies the caller holding the lease (a process or replica
	// name), for operators.
	Owner string
	// Lease is how long the turn stays held without a heartbeat.
	// Default 30s.
	Lease time.Duration
}

// TurnStatus says where a turn stands.
type TurnStatus string

// Turn statuses, as the CLI and HTTP API print them.
const (
	TurnStarted   TurnStatus = "started"
	TurnCompleted TurnStatus = "completed"
	TurnInFlight  TurnStatus = "in_flight"
)

// TurnState is the answer to BeginTurn.
type TurnState struct {
	Status TurnStatus `json:"status"`
	// Attempt is the attempt holding the turn (started, in_flight) or the
	// one that completed it.
	Attempt int `json:"attempt"`
	// LeaseExpiresAt is when the holder's lease ends (started, in_flight).
	LeaseExpiresAt time.Time `json:"lease_expires_at,omitzero"`
	// UserEvent is the stored user message.
	UserEvent events.Event `json:"user_event"`
	// Reply is the final assistant message (completed).
	Reply *events.Event `json:"reply,omitempty"`
	// LastError is the message of the last failed attempt, if any.
	LastError string `json:"last_error,omitempty"`
}

// MarshalJSON writes lease_expires_at as events write created_at (UTC,
// nine fractional digits), so every timestamp chatlog prints has one form.
func (s TurnState) MarshalJSON() ([]byte, error) {
	type plain TurnState
	out := struct {
		plain
		LeaseExpiresAt string `json:"lease_expires_at,omitempty"`
	}{plain: plain(s)}
	if !s.LeaseExpiresAt.IsZero() {
		out.LeaseExpiresAt = events.FormatTime(s.LeaseExpiresAt)
	}
	return json.Marshal(out)
}

// Stream is an open stream of chunks without a final message.
type Stream struct {
	ConversationID string
	UserRequestID  string
	// Attempt is the attempt holding the turn, 0 when it was never begun
	// as a turn.
	Attempt int
	// LastChunkAt is when the newest chunk was written, to within
	// StreamTimeResolution (earlier, never later): stores may record a
	// stream's time at most that often.
	LastChunkAt time.Time
}

// StreamTimeResolution bounds how far Stream.LastChunkAt may trail the
// newest chunk. Sweeps wait minutes; recording every chunk's time would
// cost a write per chunk.
const StreamTimeResolution = time.Second

// ErrStaleAttempt is returned when a chunk, heartbeat or finish names an
// attempt that does not hold its turn: another attempt took over, or the
// request was begun as a turn and the attempt is missing. Nothing is
// written.
var ErrStaleAttempt = errors.New("stale attempt")

// StaleAttemptError details ErrStaleAttempt.
type StaleAttemptError struct {
	ConversationID, UserRequestID string
	// Attempt is the attempt the caller named (0: none).
	Attempt int
	// Holder is the attempt holding the turn.
	Holder int
	// Closed is set when the turn no longer takes writes: its reply is
	// final ("completed") or its holder failed ("failed").
	Closed string
}

func (e *StaleAttemptError) Error() string {
	if e.Closed != "" && e.Attempt == e.Holder {
		return fmt.Sprintf("stale attempt: the turn of user request %q is %s; attempt %d can write no more", e.UserRequestID, e.Closed, e.Attempt)
	}
	if e.Attempt == 0 {
		return fmt.Sprintf("stale attempt: user request %q was begun as a turn; name its attempt (%d holds it)", e.UserRequestID, e.Holder)
	}
	return fmt.Sprintf("stale attempt: attempt %d no longer holds the turn of user request %q (attempt %d does)", e.Attempt, e.UserRequestID, e.Holder)
}

// Is makes a StaleAttemptError match ErrStaleAttempt.
func (e *StaleAttemptError) Is(target error) bool { return target == ErrStaleAttempt }

// Keys of the events a turn writes, as fixed by the interface contract.

// ReplyRequestID is the request_id of the final message answering a user
// request.
func ReplyRequestID(userRequestID string) string { return "assistant:" + userRequestID }

// ChunkRequestID is the request_id of a streamed chunk: per attempt when
// the request was begun as a turn (attempt > 0).
func ChunkRequestID(userRequestID string, attempt, index int) string {
	if attempt > 0 {
		return "delta:" + userRequestID + ":" + strconv.Itoa(attempt) + ":" + strconv.Itoa(index)
	}
	return "delta:" + userRequestID + ":" + strconv.Itoa(index)
}

// FailureRequestID is the request_id of the turn_failed event of an
// attempt.
func FailureRequestID(userRequestID string, attempt int) string {
	return "failed:" + userRequestID + ":" + strconv.Itoa(attempt)
}
