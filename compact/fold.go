// Package compact folds a streamed reply's chunks (assistant_delta events)
// into its final assistant_message, and finalises streams that stopped
// receiving chunks.
//
// # Folding
//
// Chunks are ordered by extra.index (0, 1, 2, ...); a missing index is a
// *GapError, never a silently shortened message. Chunks without an index
// (older logs) fold in seq order. The same index twice with the same
// content counts once. Text content concatenates. Tool calls streamed as
// fragments fold into whole calls: a fragment with an id starts that call
// (or continues it, when the id was seen), a fragment without an id
// continues the latest call; names are taken from the first fragment that
// has one and arguments concatenate.
//
// # Interrupted streams
//
// A stream that stopped (no chunk for the idle time) is finished with the
// content it has and stop reason "interrupted", folding the chunks before
// the first gap. Every tool call in it gets a tool_result event marked
// interrupted, so the log says what happened and every later projection is
// still a request the providers accept. What cannot make a valid call (a
// call whose name never arrived, a fragment with no call to continue) is
// kept in the message's extra (incomplete_tool_calls, dropped_fragments),
// so a sweep always succeeds.
package compact

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/chatlog/chatlog/events"
)

// StopInterrupted is the stop reason of a stream finalised by a sweep.
const StopInterrupted = "interrupted"

// ErrGap is matched by a *GapError: a chunk index is missing.
var ErrGap = errors.New("gap in chunk indexes")

// GapError reports the first missing chunk index.
type GapError struct {
	// Missing is the first index with no chunk.
	Missing int
	// Have is how many chunks there are.
	Have int
}

func (e *GapError) Error() string {
	return fmt.Sprintf("gap in chunk indexes: index %d is missing (%d chunks)", e.Missing, e.Have)
}

// Is makes a GapError match ErrGap.
func (e *GapError) Is(target error) bool { return target == ErrGap }

// ErrIndexConflict is returned when one index has two different chunks.
var ErrIndexConflict = errors.New("two different chunks at one index")

// ErrToolCall is returned when folded tool-call fragments do not make a
// valid call (arguments that are not JSON, a fragment with no call to
// continue).
var ErrToolCall = errors.New("malformed streamed tool call")

// Options are what the finish adds to the folded chunks.
type Options struct {
	// StopReason of the final message; "interrupted" when Interrupted is
	// set and StopReason is empty.
	StopReason string
	// Model and Provider of the final message; empty takes the latest
	// chunk's.
	Model, Provider string
	// Usage of the turn, when the caller knows it.
	Usage *events.Usage
	// Interrupted finishes a stream that stopped early: chunks up to the
	// first gap fold, tool calls get interrupted results.
	Interrupted bool
}

// Fold builds the final assistant_message from a stream's chunks (in any
// order) under opts, and, for an interrupted stream, the tool_result events
// that answer its tool calls. The message's request_id is left for the
// store to set.
func Fold(chunks []events.Event, opts Options) ([]events.Event, error) {
	ordered, err := order(chunks, opts.Interrupted)
	if err != nil {
		return nil, err
	}
	msg := events.Event{
		Type:       events.TypeAssistantMessage,
		Role:       events.RoleAssistant,
		StopReason: opts.StopReason,
		Model:      opts.Model,
		Provider:   opts.Provider,
		Usage:      opts.Usage,
	}
	if opts.Interrupted && msg.StopReason == "" {
		msg.StopReason = StopInterrupted
	}
	var text strings.Builder
	var calls []events.ToolCall
	dropped := 0 // fragments an interrupted stream could not place
	for _, c := range ordered {
		text.WriteString(c.Text())
		if opts.Model == "" && c.Model != "" {
			msg.Model = c.Model
		}
		if opts.Provider == "" && c.Provider != "" {
			msg.Provider = c.Provider
		}
		for _, f := range c.ToolCalls {
			i := -1
			if f.ID != "" {
				i = slices.IndexFunc(calls, func(tc events.ToolCall) bool { return tc.ID == f.ID })
				if i < 0 {
					calls = append(calls, events.ToolCall{ID: f.ID})
					i = len(calls) - 1
				}
			} else if len(calls) > 0 {
				i = len(calls) - 1
			} else if opts.Interrupted {
				dropped++ // a piece of a call whose start never arrived
				continue
			} else {
				return nil, fmt.Errorf("%w: chunk %d continues a tool call that was never started", ErrToolCall, c.Seq)
			}
			if calls[i].Name == "" {
				calls[i].Name = f.Name
			}
			calls[i].Arguments += f.Arguments
		}
	}
	var out []events.Event
	var partial map[string]any
	var incomplete []any
	if opts.Interrupted {
		// A call cut off before its name arrived cannot be sent to a
		// model: keep it where a reader can see it, out of tool_calls.
		kept := calls[:0]
		for _, tc := range calls {
			if tc.Name == "" {
				incomplete = append(incomplete, map[string]any{"id": tc.ID, "arguments": tc.Arguments})
				continue
			}
			kept = append(kept, tc)
		}
		calls = kept
	} else {
		for _, tc := range calls {
			if tc.Name == "" {
				return nil, fmt.Errorf("%w: call %q has no name", ErrToolCall, tc.ID)
			}
		}
	}
	for i, tc := range calls {
		if tc.Arguments == "" || json.Valid([]byte(tc.Arguments)) {
			continue
		}
		if !opts.Interrupted {
			return nil, fmt.Errorf("%w: arguments of call %q are not JSON: %.60q", ErrToolCall, tc.ID, tc.Arguments)
		}
		// Cut off mid-stream: keep what arrived where a reader can see
		// it, and give the call arguments the providers accept.
		if partial == nil {
			partial = map[string]any{}
		}
		partial[tc.ID] = tc.Arguments
		calls[i].Arguments = "{}"
	}
	if len(calls) > 0 {
		msg.ToolCalls = calls
	}
	if text.Len() > 0 || len(calls) == 0 {
		msg.Content = events.NewText(text.String())
	}
	msg.Extra = map[string]any{"chunks": len(ordered)}
	if partial != nil {
		msg.Extra["partial_arguments"] = partial
	}
	if incomplete != nil {
		msg.Extra["incomplete_tool_calls"] = incomplete
	}
	if dropped > 0 {
		msg.Extra["dropped_fragments"] = dropped
	}
	if opts.Interrupted {
		msg.Extra["interrupted"] = true
	}
	out = append(out, msg)
	if opts.Interrupted {
		for _, tc := range calls {
			out = append(out, events.Event{
				Type:       events.TypeToolResult,
				Role:       events.RoleTool,
				ToolCallID: tc.ID,
				Content:    events.NewText("interrupted: the turn ended before this tool call completed"),
				Extra:      map[string]any{"interrupted": true},
			})
		}
	}
	return out, nil
}

// order returns the chunks in index order (seq order when none has an
// index), checking for gaps; with prefixOnly it stops at the first gap.
func order(chunks []events.Event, prefixOnly bool) ([]events.Event, error) {
	indexed := 0
	for _, c := range chunks {
		if _, ok := c.ExtraInt("index"); ok {
			indexed++
		}
	}
	sorted := slices.Clone(chunks)
	if indexed == 0 {
		slices.SortStableFunc(sorted, func(a, b events.Event) int { return cmp.Compare(a.Seq, b.Seq) })
		return sorted, nil
	}
	if indexed != len(chunks) {
		return nil, fmt.Errorf("%w: %d of %d chunks have no index", ErrGap, len(chunks)-indexed, len(chunks))
	}
	index := func(e events.Event) int64 { n, _ := e.ExtraInt("index"); return n }
	slices.SortStableFunc(sorted, func(a, b events.Event) int {
		return cmp.Or(cmp.Compare(index(a), index(b)), cmp.Compare(a.Seq, b.Seq))
	})
	out := sorted[:0:0]
	for _, c := range sorted {
		i := index(c)
		switch {
		case i < int64(len(out)):
			// The same index again: a duplicate only if it is the same chunk.
			prev := out[i]
			if prev.Text() != c.Text() || !slices.Equal(prev.ToolCalls, c.ToolCalls) {
				return nil, fmt.Errorf("%w: index %d", ErrIndexConflict, i)
			}
		case i == int64(len(out)):
			out = append(out, c)
		default:
			if prefixOnly {
				return out, nil
			}
			return nil, &GapError{Missing: len(out), Have: len(chunks)}
		}
	}
	return out, nil
}
