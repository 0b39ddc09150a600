package repo

import (
	"context"
	"iter"

	"github.com/chatlog/chatlog/events"
)

// Repo is the event store. Implementations are safe for concurrent use.
type Repo interface {
	// Append stores one event and returns it as stored (id, seq, pos and
	// created_at filled in) with outcome Appended, or the event already
	// stored under its key with outcome Duplicate.
	//
	// Errors: events.ErrInvalid (a *events.ValidationError) for a bad
	// event; ErrIdempotencyConflict (*ConflictError) for a key reused with
	// another payload; ErrSeqConflict (*SeqConflictError) when
	// opts.Expected does not match; ErrClosed; the context's error. Any
	// error means nothing was written.
	Append(ctx context.Context, e events.Event, opts AppendOptions) (Result, error)

	// AppendBatch stores events atomically, in order, in one transaction:
	// all of them or none. Events already stored with the same payload
	// are returned as duplicates; any other failure fails the whole batch
	// with a *BatchError naming the event.
	//
	// With opts.Expected (all events then must share one conversation):
	// when every event is already stored the batch is acknowledged as
	// duplicates and nothing is written; when none is, the head must match
	// and all are appended; when some are, ErrPartiallyStored.
	AppendBatch(ctx context.Context, evs []events.Event, opts AppendOptions) ([]Result, error)

	// AppendEach stores events in order, each on its own: a bad event
	// fails alone and the others are kept. It is the bulk path for ingest
	// and import (they batch into few transactions), so it records
	// streamed chunks as history: they are not checked against a live
	// turn (Turns). opts.Expected is not allowed here.
	AppendEach(ctx context.Context, evs []events.Event, opts AppendOptions) []Item

	// Events yields a conversation's events in seq order within r. An
	// unknown conversation yields nothing, without error.
	Events(ctx context.Context, conversationID string, r Range) iter.Seq2[events.Event, error]

	// Last returns the conversation's last n events in seq order, reading
	// only those (no scan of the conversation).
	Last(ctx context.Context, conversationID string, n int) ([]events.Event, error)

	// ContextMarkers returns, for the view of a conversation up to
	// untilSeq (0: all of it), the latest event that set the system
	// prompt (conversation_started or system_prompt_set) and the seq of
	// the latest conversation_cleared, without scanning the conversation.
	ContextMarkers(ctx context.Context, conversationID string, untilSeq int64) (ContextMarkers, error)

	// ByRequestID returns the event stored under a request_id, or
	// ErrNotFound.
	ByRequestID(ctx context.Context, conversationID, requestID string) (events.Event, error)

	// Head returns the conversation's last seq, 0 when it has no events.
	Head(ctx context.Context, conversationID string) (int64, error)

	// All yields every event with pos > afterPos in pos order: the feed
	// projections and exports read.
	All(ctx context.Context, afterPos int64) iter.Seq2[events.Event, error]

	// Follow yields the conversation's events after afterSeq in seq order,
	// then waits and yields each new one as it is committed: at once for
	// appends through this Repo, after at most the backend's poll interval
	// for other processes. Resuming with the last seq seen never skips or
	// repeats an event. It returns when the caller stops iterating or ctx
	// is done (cancellation is not reported as an error).
	Follow(ctx context.Context, conversationID string, afterSeq int64) iter.Seq2[events.Event, error]

	// Close flushes queued appends, then releases the store. Calls after
	// Close return ErrClosed.
	Close() error

	// Turns coordinates exactly-once model runs (see Turns). Every
	// assistant_delta appended through Append and AppendBatch is checked
	// against its turn: one naming an attempt that does not hold the
	// turn, or one for a stream already finished, fails with
	// ErrStaleAttempt. AppendEach, the bulk path for loading logs, records
	// chunks as history without the check.
	Turns

	// ReadModels are the conversation list and search, kept in step with
	// the log.
	ReadModels

	// Management forks, erases, titles and resolves conversations.
	Management
}

// AppendOptions adjusts one append call. The zero value is a plain append.
type AppendOptions struct {
	// Expected, when set with ExpectSeq, makes the append conditional on
	// the conversation's head seq (optimistic concurrency).
	Expected Expectation
	// KeepSeq stores events at their own Seq instead of assigning one,
	// for importing an export: each event needs its id, seq (> 0) and
	// created_at (else events.ErrInvalid). An event whose id is already
	// stored with the same request and payload is a duplicate; otherwise
	// its seq must be the conversation's head + 1, or the append fails
	// with ErrSeqConflict.
	//
	// Without KeepSeq, a caller's Seq and Pos are ignored; a caller's ID
	// is kept and deduplicated on like a request_id: reusing it for
	// another conversation, request_id or payload is a conflict.
	KeepSeq bool
}

// Expectation is an optional expected head seq. The zero value expects
// nothing.
type Expectation struct {
	seq int64
	set bool
}

// ExpectSeq expects the conversation's head seq to be n (0: no events yet).
func ExpectSeq(n int64) Expectation { return Expectation{seq: n, set: true} }

// Seq returns the expected seq and whether one is set.
func (x Expectation) Seq() (int64, bool) { return x.seq, x.set }

// Outcome says what an append did.
type Outcome uint8

// Outcomes of an append.
const (
	// Appended: the event is new and was written.
	Appended Outcome = iota + 1
	// Duplicate: the same payload was already stored under its key;
	// nothing was written and the stored event is returned.
	Duplicate
)

func (o Outcome) String() string {
	switch o {
	case Appended:
		return "appended"
	case Duplicate:
		return "duplicate"
	}
	return "unknown"
}

// Result is a successful append: the stored event and what happened.
type Result struct {
	Event   events.Event
	Outcome Outcome
}

// Duplicate reports whether the append was a retry of a stored event.
func (r Result) Duplicate() bool { return r.Outcome == Duplicate }

// Item is one event's result in AppendEach: Err is nil on success.
type Item struct {
	Result
	Err error
}

// ContextMarkers are where a conversation's model context starts.
type ContextMarkers struct {
	// Prompt is the latest event that set the system prompt, nil when
	// none did.
	Prompt *events.Event
	// ClearSeq is the seq of the latest conversation_cleared (0: none).
	ClearSeq int64
}

// Range selects events of a conversation by seq.
type Range struct {
	// AfterSeq: only events with seq > AfterSeq (0: from the first).
	AfterSeq int64
	// UntilSeq: only events with seq <= UntilSeq (0: no upper bound).
	UntilSeq int64
	// Limit caps how many events are yielded (0: no cap).
	Limit int
	// Reverse yields the range newest first: with Limit, the last events
	// up to UntilSeq (pages backwards from a seq).
	Reverse bool
}
