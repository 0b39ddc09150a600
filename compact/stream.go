package compact

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// Chunk returns the assistant_delta event for one chunk of the reply to a
// user request: keyed by user request, attempt (0 when the request was not
// begun as a turn) and index, so a re-sent chunk is a duplicate and the
// same index with other content a conflict.
func Chunk(conversationID, userRequestID string, attempt, index int, content string) events.Event {
	extra := map[string]any{"user_request_id": userRequestID, "index": index}
	if attempt > 0 {
		extra["attempt"] = attempt
	}
	return events.Event{
		ConversationID: conversationID,
		Type:           events.TypeAssistantDelta,
		Role:           events.RoleAssistant,
		RequestID:      repo.ChunkRequestID(userRequestID, attempt, index),
		Content:        events.NewText(content),
		Extra:          extra,
	}
}

// Finish folds the chunks of a user request's attempt into its final
// assistant_message, in one transaction with the turn's completion.
// Finishing again returns the same message (a Duplicate). Errors: a
// *GapError (nothing written) when an index is missing,
// repo.ErrStaleAttempt when attempt does not hold the turn.
func Finish(ctx context.Context, r repo.Repo, conversationID, userRequestID string, attempt int, opts Options) (repo.Result, error) {
	return r.Finish(ctx, conversationID, userRequestID, attempt, func(chunks []events.Event) ([]events.Event, error) {
		evs, err := Fold(chunks, opts)
		if err == nil && attempt > 0 {
			evs[0].Extra["attempt"] = attempt // which attempt's output this is
		}
		return evs, err
	})
}

// SweepResult says what a sweep did.
type SweepResult struct {
	// Finalised counts streams finished as interrupted.
	Finalised int `json:"finalised"`
	// Skipped counts streams another writer finished or took over first.
	Skipped int `json:"skipped"`
	// Failed counts streams that could not be finished; Errors says why.
	Failed int      `json:"failed"`
	Errors []string `json:"errors,omitempty"`
}

// Sweep finalises every stream whose last chunk is older than idle: its
// chunks fold into a final message with stop reason "interrupted", and its
// tool calls get interrupted results. A stream finished or taken over
// meanwhile is left alone.
func Sweep(ctx context.Context, r repo.Repo, idle time.Duration, now time.Time) (SweepResult, error) {
	var res SweepResult
	streams, err := r.Streams(ctx, now.Add(-idle))
	if err != nil {
		return res, fmt.Errorf("sweep: list idle streams: %w", err)
	}
	for _, s := range streams {
		out, err := Finish(ctx, r, s.ConversationID, s.UserRequestID, s.Attempt, Options{Interrupted: true})
		switch {
		case err == nil && out.Outcome == repo.Appended:
			res.Finalised++
		case err == nil || errors.Is(err, repo.ErrStaleAttempt):
			res.Skipped++
		case ctx.Err() != nil:
			return res, ctx.Err()
		default:
			res.Failed++
			res.Errors = append(res.Errors, fmt.Sprintf("conversation %q user request %q: %v", s.ConversationID, s.UserRequestID, err))
		}
	}
	return res, nil
}
