package repo

import (
	"context"
	"encoding/json"
	"time"

	"github.com/chatlog/chatlog/events"
)

// ReadModels are the materialised views a UI needs, kept by the store in
// the same transaction as the events they reflect, with a checkpoint on
// the global pos, so each event is applied exactly once, also across a
// crash. They are rebuilt from the log by RebuildReadModels and checked
// against it by VerifyReadModels. Account streams (events.IsAccountStream,
// such as users' ledgers) are not conversations: no read model shows them.
type ReadModels interface {
	// Summary returns a conversation's read model; ErrNotFound when it
	// has no events.
	Summary(ctx context.Context, conversationID string) (Summary, error)

	// ListConversations lists conversations most recently active first,
	// a page at a time.
	ListConversations(ctx context.Context, q ListQuery) (ListPage, error)

	// Search finds messages (user, assistant and tool text) holding every
	// word of q.Query, newest first. Any input is safe: a query the full-text engine
	// would refuse is answered as plain words, or empty, never an error.
	Search(ctx context.Context, q SearchQuery) ([]SearchHit, error)

	// RebuildReadModels replays the whole log into fresh read models and
	// swaps them in atomically: the ones named, or all when none is.
	// progress, when set, is called with the number of events replayed
	// into the conversation list so far.
	RebuildReadModels(ctx context.Context, progress func(events int64), only ...ReadModel) error

	// VerifyReadModels checks the log's invariants and that read models
	// rebuilt from the log equal the live ones. It returns every
	// difference found (none: nil).
	VerifyReadModels(ctx context.Context, progress func(events int64)) ([]string, error)
}

// ReadModel names a read model.
type ReadModel string

// The read models.
const (
	// ReadModelConversations is the conversation list (Summary).
	ReadModelConversations ReadModel = "conversations"
	// ReadModelSearch is the full-text search index.
	ReadModelSearch ReadModel = "search"
)

// Summary is the read model of one conversation (projection.Summarize
// computes it).
type Summary struct {
	ConversationID string `json:"conversation_id"`
	// Title is the latest title set ("" when none).
	Title string `json:"title,omitempty"`
	// Preview is the first user message, trimmed to 60 characters with an
	// ellipsis.
	Preview string `json:"preview,omitempty"`
	// Messages counts LLM-visible messages (user, assistant, tool),
	// ToolCalls the assistant tool calls, Events every event but streamed
	// chunks (their final message stands for them).
	Messages  int64 `json:"messages"`
	ToolCalls int64 `json:"tool_calls"`
	Events    int64 `json:"events"`
	// Usage is the sum of every event's usage.
	Usage events.Usage `json:"usage"`
	// StartedAt is the earliest event's time; LastActiveAt the latest's.
	StartedAt    time.Time `json:"started_at"`
	LastActiveAt time.Time `json:"last_active_at"`
	// LastSeq is the seq of the last event applied (chunks aside).
	LastSeq int64 `json:"last_seq"`
	// Source, User, Model and Project come from conversation_started;
	// Model then follows the assistant's latest.
	Source  string `json:"source,omitempty"`
	User    string `json:"user,omitempty"`
	Model   string `json:"model,omitempty"`
	Project string `json:"project,omitempty"`
	// ParentID and ParentSeq name the conversation this one forked from.
	ParentID  string `json:"parent_id,omitempty"`
	ParentSeq int64  `json:"parent_seq,omitempty"`
	// Ended is set by conversation_ended and cleared by reopening.
	Ended       bool       `json:"ended"`
	EndedAt     *time.Time `json:"ended_at,omitempty"`
	EndedReason string     `json:"ended_reason,omitempty"`
}

// MarshalJSON writes times as events write created_at (UTC, nine
// fractional digits), so every timestamp chatlog prints has one form.
func (s Summary) MarshalJSON() ([]byte, error) {
	type plain Summary
	out := struct {
		plain
		StartedAt    string  `json:"started_at"`
		LastActiveAt string  `json:"last_active_at"`
		EndedAt      *string `json:"ended_at,omitempty"`
	}{plain: plain(s), StartedAt: events.FormatTime(s.StartedAt), LastActiveAt: events.FormatTime(s.LastActiveAt)}
	if s.EndedAt != nil {
		t := events.FormatTime(*s.EndedAt)
		out.EndedAt = &t
	}
	return json.Marshal(out)
}

// ListQuery selects a page of conversations.
type ListQuery struct {
	// User and Source filter when set.
	User, Source string
	// Limit is the page size (default 50, at most 1000).
	Limit int
	// Cursor continues from the previous page's NextCursor.
	Cursor string
}

// ListPage is a page of conversations.
type ListPage struct {
	Conversations []Summary `json:"conversations"`
	// NextCursor fetches the next page; empty on the last page.
	NextCursor string `json:"next_cursor"`
}

// SearchQuery is a full-text search.
type SearchQuery struct {
	// Query is the user's words.
	Query string
	// ConversationID, Role, Source and User filter when set.
	ConversationID string
	Role           events.Role
	Source, User   string
	// Limit caps the hits (default 20, at most 200).
	Limit int
}

// SearchHit is one matching message with a message of context on each
// side.
type SearchHit struct {
	ConversationID string      `json:"conversation_id"`
	Seq            int64       `json:"seq"`
	Role           events.Role `json:"role"`
	// Snippet is the matching text with matches marked [like this].
	Snippet string `json:"snippet"`
	// Before and After are the neighbouring messages' text, when any.
	Before *Neighbour `json:"before,omitempty"`
	After  *Neighbour `json:"after,omitempty"`
}

// Neighbour is a message next to a search hit.
type Neighbour struct {
	Seq  int64       `json:"seq"`
	Role events.Role `json:"role"`
	Text string      `json:"text"`
}
