package projection

import (
	"context"
	"fmt"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// Read projects a conversation from the store: what the model sees as of
// opts.AsOfSeq (0: now), windowed by opts. It returns what Build returns for
// the conversation's whole log, but reads only what the view needs: the
// events after the latest clear, and, for a window, the conversation
// backwards a page at a time until the window is settled, so the last
// window of a long conversation costs what the window holds.
func Read(ctx context.Context, r repo.Repo, conversationID string, opts Options) (Conversation, error) {
	until := opts.AsOfSeq
	if until <= 0 {
		head, err := r.Head(ctx, conversationID)
		if err != nil {
			return Conversation{}, err
		}
		until = head
	}
	if until == 0 {
		return Build(nil, opts), nil
	}
	m, err := r.ContextMarkers(ctx, conversationID, until)
	if err != nil {
		return Conversation{}, fmt.Errorf("projection: context markers: %w", err)
	}
	floor := m.ClearSeq // nothing at or before the clear reaches the model
	windowed := opts.MaxMessages > 0 || opts.MaxTurns > 0 || opts.MaxTokens > 0
	page := int64(256)
	if opts.MaxMessages > 0 {
		page = max(64, 4*int64(opts.MaxMessages))
	}
	var suffix []events.Event // the events (lo, until]
	lo := until
	for {
		next := max(floor, lo-page)
		var chunk []events.Event
		for e, err := range r.Events(ctx, conversationID, repo.Range{AfterSeq: next, UntilSeq: lo}) {
			if err != nil {
				return Conversation{}, err
			}
			chunk = append(chunk, e)
		}
		suffix = append(chunk, suffix...)
		lo = next
		if lo > floor && !windowed {
			page *= 2
			continue
		}
		evs := suffix
		if m.Prompt != nil && m.Prompt.Seq <= lo {
			evs = append([]events.Event{*m.Prompt}, suffix...)
		}
		conv := Build(evs, opts)
		conv.AsOfSeq = until
		if lo <= floor {
			return conv, nil
		}
		// Settled when the window leaves out a message it has read: an
		// earlier (possibly partial) turn did not fit, and a fuller read
		// would only make that turn bigger.
		all := opts
		all.MaxMessages, all.MaxTurns, all.MaxTokens = 0, 0, 0
		if len(conv.Messages) < len(Build(evs, all).Messages) {
			return conv, nil
		}
		page *= 2
	}
}
