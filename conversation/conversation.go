// Package conversation manages conversations as events: starting one with
// its metadata, ending and reopening it, replacing its system prompt,
// popping the latest message, clearing it, and recording usage. Every
// change is an event in the log, so it replays, projects and rebuilds
// like any message; the store (repo.Management) adds forks, erasure,
// titles and resolving.
//
// Each function works on any repo.Repo backend.
package conversation

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
)

// StartRequestID is the request_id of a conversation's conversation_started
// event: one per conversation, so starting is safe to repeat.
const StartRequestID = "conversation_started"

// Metadata describes a conversation when it starts.
type Metadata struct {
	// Source is where it happens ("cli", "telegram", "web", ...).
	Source string `json:"source,omitempty"`
	// User is who it belongs to.
	User string `json:"user,omitempty"`
	// Model is the model it talks to, ModelConfig that model's settings
	// (temperature, max tokens, ...).
	Model       string         `json:"model,omitempty"`
	ModelConfig map[string]any `json:"model_config,omitempty"`
	// System is the system prompt.
	System string `json:"system,omitempty"`
	// Project scopes it (the CLI defaults it to the working directory).
	Project string `json:"project,omitempty"`
	// Parent names a conversation this one belongs under (a sub-task,
	// say) without inheriting its history; a fork is repo.Management's.
	Parent string `json:"parent,omitempty"`
	// Title is its title (sanitised, unique: see repo.Management).
	Title string `json:"title,omitempty"`
}

// Start records that a conversation started, with its metadata. It is
// ensure-exists: when the conversation was started already, nothing is
// written and the stored conversation_started is returned as a duplicate,
// whatever metadata this call carried.
func Start(ctx context.Context, r repo.Repo, conversationID string, md Metadata) (repo.Result, error) {
	if stored, err := r.ByRequestID(ctx, conversationID, StartRequestID); err == nil {
		return repo.Result{Event: stored, Outcome: repo.Duplicate}, nil
	} else if !errors.Is(err, repo.ErrNotFound) {
		return repo.Result{}, err
	}
	extra := map[string]any{}
	for key, v := range map[string]string{"source": md.Source, "user": md.User, "model": md.Model,
		"system": md.System, "project": md.Project, "parent_id": md.Parent, "title": events.SanitizeTitle(md.Title)} {
		if v != "" {
			extra[key] = v
		}
	}
	if len(md.ModelConfig) > 0 {
		extra["model_config"] = md.ModelConfig
	}
	e := events.Event{ConversationID: conversationID, Type: events.TypeConversationStarted,
		RequestID: StartRequestID, Model: md.Model, Extra: extra}
	res, err := r.Append(ctx, e, repo.AppendOptions{})
	if ce := (*repo.ConflictError)(nil); errors.As(err, &ce) {
		// Another start won the race with other metadata: it stands.
		return repo.Result{Event: ce.Stored, Outcome: repo.Duplicate}, nil
	}
	return res, err
}

// End records that the conversation ended, with a reason ("" for none).
func End(ctx context.Context, r repo.Repo, conversationID, reason string) (repo.Result, error) {
	e := events.Event{ConversationID: conversationID, Type: events.TypeConversationEnded}
	if reason != "" {
		e.Extra = map[string]any{"reason": reason}
	}
	return r.Append(ctx, e, repo.AppendOptions{})
}

// Reopen records that an ended conversation is open again.
func Reopen(ctx context.Context, r repo.Repo, conversationID string) (repo.Result, error) {
	return r.Append(ctx, events.Event{ConversationID: conversationID, Type: events.TypeConversationReopened}, repo.AppendOptions{})
}

// SetSystemPrompt replaces the system prompt the model sees from now on.
func SetSystemPrompt(ctx context.Context, r repo.Repo, conversationID, prompt string) (repo.Result, error) {
	return r.Append(ctx, events.Event{ConversationID: conversationID, Type: events.TypeSystemPromptSet,
		Content: events.NewText(prompt)}, repo.AppendOptions{})
}

// Clear records a clear: the model sees nothing from before it, and the
// history stays in the log for replay.
func Clear(ctx context.Context, r repo.Repo, conversationID string) (repo.Result, error) {
	return r.Append(ctx, events.Event{ConversationID: conversationID, Type: events.TypeConversationCleared}, repo.AppendOptions{})
}

// maxRaces bounds how often Pop retries after losing a race for the head.
const maxRaces = 64

// Pop retracts the most recent message the model sees (a
// message_retracted event naming it) and returns that message's event;
// found is false when the model sees none. It is atomic: two pops at once
// retract two messages, never one twice.
func Pop(ctx context.Context, r repo.Repo, conversationID string) (popped events.Event, retraction repo.Result, found bool, err error) {
	for race := 0; ; race++ {
		head, err := r.Head(ctx, conversationID)
		if err != nil {
			return events.Event{}, repo.Result{}, false, err
		}
		if head == 0 {
			return events.Event{}, repo.Result{}, false, nil
		}
		view, err := projection.Read(ctx, r, conversationID, projection.Options{AsOfSeq: head, MaxTurns: 1})
		if err != nil {
			return events.Event{}, repo.Result{}, false, err
		}
		var seq int64
		for i := len(view.Messages) - 1; i >= 0; i-- {
			if m := view.Messages[i]; !m.Synthetic && m.Seq > 0 {
				seq = m.Seq
				break
			}
		}
		if seq == 0 {
			return events.Event{}, repo.Result{}, false, nil
		}
		for e, err := range r.Events(ctx, conversationID, repo.Range{AfterSeq: seq - 1, UntilSeq: seq}) {
			if err != nil {
				return events.Event{}, repo.Result{}, false, err
			}
			popped = e
		}
		res, err := r.Append(ctx, events.Event{ConversationID: conversationID, Type: events.TypeMessageRetracted,
			Extra: map[string]any{"retracted_seq": seq}}, repo.AppendOptions{Expected: repo.ExpectSeq(head)})
		if errors.Is(err, repo.ErrSeqConflict) && race < maxRaces {
			// The conversation moved on: pop what is latest now.
			if err := backoff(ctx, race); err != nil {
				return events.Event{}, repo.Result{}, false, err
			}
			continue
		}
		if err != nil {
			return events.Event{}, repo.Result{}, false, err
		}
		return popped, res, true, nil
	}
}

// backoff waits a little, more after each lost race, with jitter so the
// losers do not collide again in step.
func backoff(ctx context.Context, race int) error {
	d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(race, 6)))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// AddUsage records usage to add to the conversation's totals (a
// usage_recorded event). With a request id it is idempotent: a retry adds
// nothing.
func AddUsage(ctx context.Context, r repo.Repo, conversationID string, u events.Usage, requestID string) (repo.Result, error) {
	return recordUsage(ctx, r, conversationID, u, requestID, "")
}

// SetUsage records the conversation's usage totals as the caller counts
// them (for callers holding running totals): they replace what was summed
// so far, and later usage adds to them.
func SetUsage(ctx context.Context, r repo.Repo, conversationID string, u events.Usage, requestID string) (repo.Result, error) {
	return recordUsage(ctx, r, conversationID, u, requestID, projection.UsageModeSet)
}

func recordUsage(ctx context.Context, r repo.Repo, conversationID string, u events.Usage, requestID, mode string) (repo.Result, error) {
	e := events.Event{ConversationID: conversationID, Type: events.TypeUsageRecorded, Usage: &u, RequestID: requestID}
	if mode != "" {
		e.Extra = map[string]any{"mode": mode}
	}
	return r.Append(ctx, e, repo.AppendOptions{})
}

// Usage returns the conversation's usage totals (zero for a conversation
// without events).
func Usage(ctx context.Context, r repo.Repo, conversationID string) (events.Usage, error) {
	s, err := r.Summary(ctx, conversationID)
	if errors.Is(err, repo.ErrNotFound) {
		return events.Usage{}, nil
	}
	if err != nil {
		return events.Usage{}, fmt.Errorf("usage of %q: %w", conversationID, err)
	}
	return s.Usage, nil
}
