package projection

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// SummaryVersion is the version of the Summarize fold. Change it whenever
// Summarize changes what it computes: stores then know their conversation
// read model is stale and must be rebuilt from the log.
const SummaryVersion = 3

// PreviewRunes is how much of the first user message a preview keeps.
const PreviewRunes = 60

// Summarize folds one event (the next of its conversation, in seq order)
// into the conversation's read model. Rebuilding a summary is folding every
// event of the conversation into a zero Summary.
//
// Streamed chunks (assistant_delta) do not change a summary: the final
// message that folds them does, so a reply streaming costs the read model
// nothing until it is finished.
//
// Account streams (events.IsAccountStream: a user's ledger) are not
// conversations and have no summary: Summarize leaves s alone for their
// events, and stores keep no read model row for them (Listed).
func Summarize(s *repo.Summary, e *events.Event) {
	if e.Type == events.TypeAssistantDelta || !Listed(e.ConversationID) {
		return
	}
	if s.ConversationID == "" {
		s.ConversationID = e.ConversationID
	}
	s.Events++
	s.LastSeq = e.Seq
	if s.StartedAt.IsZero() || e.CreatedAt.Before(s.StartedAt) {
		s.StartedAt = e.CreatedAt
	}
	if e.CreatedAt.After(s.LastActiveAt) {
		s.LastActiveAt = e.CreatedAt
	}
	if e.Usage != nil {
		if mode, _ := e.ExtraString("mode"); e.Type == events.TypeUsageRecorded && mode == UsageModeSet {
			// A caller holding running totals states them: they
			// replace what was summed so far.
			s.Usage = *e.Usage
		} else {
			s.Usage = s.Usage.Add(e.Usage)
		}
	}
	switch e.Type {
	case events.TypeConversationStarted:
		for key, field := range map[string]*string{"source": &s.Source, "user": &s.User, "model": &s.Model,
			"project": &s.Project, "title": &s.Title, "parent_id": &s.ParentID} {
			if v, ok := e.ExtraString(key); ok && v != "" {
				*field = v
			}
		}
		s.Title = events.SanitizeTitle(s.Title)
		if n, ok := e.ExtraInt("parent_seq"); ok {
			s.ParentSeq = n
		}
	case events.TypeConversationForked:
		if v, ok := e.ExtraString("parent_id"); ok {
			s.ParentID = v
		}
		if n, ok := e.ExtraInt("parent_seq"); ok {
			s.ParentSeq = n
		}
	case events.TypeTitleSet:
		t, _ := e.ExtraString("title")
		s.Title = events.SanitizeTitle(t)
	case events.TypeConversationEnded:
		at := e.CreatedAt
		s.Ended, s.EndedAt = true, &at
		s.EndedReason, _ = e.ExtraString("reason")
	case events.TypeConversationReopened:
		s.Ended, s.EndedAt, s.EndedReason = false, nil, ""
	case events.TypeUserMessage:
		s.Messages++
		if s.Preview == "" {
			s.Preview = Preview(e.Text())
		}
	case events.TypeAssistantMessage:
		s.Messages++
		s.ToolCalls += int64(len(e.ToolCalls))
		if e.Model != "" {
			s.Model = e.Model
		}
	case events.TypeToolResult:
		s.Messages++
	}
}

// Listed reports whether a conversation belongs in the read models (the
// conversation list, summaries, search). Account streams do not: listing
// or searching a user's ledger would show money movements as chats.
func Listed(conversationID string) bool { return !events.IsAccountStream(conversationID) }

// UsageModeSet, as a usage_recorded event's extra.mode, makes its usage
// the conversation's totals from then on instead of adding to them.
const UsageModeSet = "set"

// Inherit starts a branch's read model from the summary of the history it
// inherits (its parent's events up to the fork): the counts, preview,
// start and metadata carry over; the title (titles are unique), the ended
// state and the usage (spent by the parent, not the branch) do not. Call
// it on a zero Summary, before folding the branch's conversation_forked.
func Inherit(s *repo.Summary, history repo.Summary) {
	s.Messages, s.ToolCalls, s.Events = history.Messages, history.ToolCalls, history.Events
	s.Preview, s.StartedAt, s.LastActiveAt = history.Preview, history.StartedAt, history.LastActiveAt
	s.Source, s.User, s.Model, s.Project = history.Source, history.User, history.Model, history.Project
}

// Preview trims text to PreviewRunes runes, whitespace collapsed, with an
// ellipsis when it was cut.
func Preview(text string) string {
	text = strings.Join(strings.Fields(text), " ")
	if utf8.RuneCountInString(text) <= PreviewRunes {
		return text
	}
	runes := []rune(text)
	return strings.TrimRight(string(runes[:PreviewRunes]), " ") + "…"
}

// History summarises the events a branch inherits: its parent's lineage
// up to the seq it forks at (a backend reads them its own way).
type History func(parent string, until int64) (repo.Summary, error)

// Summaries are conversations' read models folded from the log, as
// backends build them to rebuild and verify.
type Summaries map[string]*repo.Summary

// Apply folds e into its conversation's summary (SummarizeWith); account
// streams have none.
func (sums Summaries) Apply(e *events.Event, history History) error {
	if !Listed(e.ConversationID) {
		return nil
	}
	s := sums[e.ConversationID]
	if s == nil {
		s = &repo.Summary{}
		sums[e.ConversationID] = s
	}
	return SummarizeWith(s, e, history)
}

// SummarizeWith folds e into s: Summarize, except that a branch's
// conversation_forked first brings in (Inherit) what history summarises
// of the events the branch inherits.
func SummarizeWith(s *repo.Summary, e *events.Event, history History) error {
	if e.Type == events.TypeConversationForked && s.Events == 0 {
		parent, _ := e.ExtraString("parent_id")
		at, _ := e.ExtraInt("parent_seq")
		h, err := history(parent, at)
		if err != nil {
			return fmt.Errorf("summarise the history of branch %q: %w", e.ConversationID, err)
		}
		Inherit(s, h)
	}
	Summarize(s, e)
	return nil
}

// DiffSummaries names the top-level fields in which a stored read model
// (got) differs from one folded from the log (want), both as JSON.
func DiffSummaries(got, want []byte) string {
	var g, w map[string]any
	json.Unmarshal(got, &g)
	json.Unmarshal(want, &w)
	var out []string
	for _, k := range slices.Sorted(maps.Keys(w)) {
		gv, _ := json.Marshal(g[k])
		wv, _ := json.Marshal(w[k])
		if string(gv) != string(wv) {
			out = append(out, fmt.Sprintf("%s is %s, the log says %s", k, gv, wv))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(g)) {
		if _, ok := w[k]; !ok {
			out = append(out, fmt.Sprintf("%s is set, the log has none", k))
		}
	}
	return strings.Join(out, "; ")
}
