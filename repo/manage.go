package repo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/chatlog/chatlog/events"
)

// Management is what the store does for conversations as a whole: forks,
// erasure, titles, resolving ids and usage totals. Each change but
// erasure is an event in the log, so it replays and rebuilds like any
// other; the store only adds what must be atomic or fast.
//
// # Forks and lineage
//
// A fork is O(1) in storage: the branch's first event is a
// conversation_forked naming its parent and the parent's seq it forks at
// (extra.parent_id, extra.parent_seq), stored at seq parent_seq+1, and the
// branch's own events follow it. The branch's history is its parent's
// events up to parent_seq (through the parent's own lineage), then its own,
// one seq sequence without gaps: Events, Last, Follow and ContextMarkers
// read a branch that way, so projections of a branch see the inherited
// history. Head, ByRequestID and keys are the branch's own: a request_id
// used in the inherited history does not deduplicate a new request of the
// branch. The branch's read model (Summary) counts the inherited events too.
//
// Erasing a conversation that has branches is refused with
// ErrHasBranches unless DeleteOptions.Cascade erases its branches with it.
type Management interface {
	// Fork starts conversation newID as a branch of parentID at atSeq (0:
	// the parent's head), recording a conversation_forked event, and
	// returns it. newID "" mints a new id. Forking again with the same
	// newID, parent and seq is a duplicate (the stored event is
	// returned); a newID that already has events otherwise is
	// ErrConversationExists. ErrNotFound when the parent has no events;
	// a seq beyond its head is an *events.FieldError for at_seq.
	Fork(ctx context.Context, parentID string, atSeq int64, newID string) (Result, error)

	// Lineage returns the conversation's ancestry, root first, ending with
	// the conversation itself (a conversation that is no branch is its
	// own single segment).
	Lineage(ctx context.Context, conversationID string) ([]Segment, error)

	// Delete erases a conversation and everything derived from it (its
	// events, turns, read model and search entries) in one transaction.
	// It returns the ids erased (the conversation and, with Cascade, its
	// branches); erasing a conversation with no events returns none.
	Delete(ctx context.Context, conversationID string, opts DeleteOptions) ([]string, error)

	// Prune erases, in one transaction, the ended conversations whose
	// last activity is before q.Before (and whose source is q.Source, when
	// set). A conversation whose branches are not all erased with it is
	// kept. It returns the ids erased.
	Prune(ctx context.Context, q PruneQuery) ([]string, error)

	// SetTitle records a title_set event with the title sanitised
	// (events.SanitizeTitle; "" clears it). A title another conversation
	// holds is refused with a *TitleTakenError, atomically with the write.
	// With opts.Next, the title is the next free name of its lineage
	// ("t", then "t #2", "t #3", ...). Setting the title a conversation
	// already has writes nothing and returns its latest title_set;
	// clearing a title it never had writes nothing either.
	SetTitle(ctx context.Context, conversationID, title string, opts TitleOptions) (Result, error)

	// Resolve returns the id of the conversation ref names: an id, a
	// unique id prefix, or a title (the newest of a title's lineage:
	// "t" resolves to "t #3" when that is the latest). ErrNotFound when
	// nothing matches; *AmbiguousError when a prefix matches several.
	Resolve(ctx context.Context, ref string) (string, error)

	// UserUsage sums the usage of every conversation of a user (from the
	// conversation read models).
	UserUsage(ctx context.Context, user string) (events.Usage, error)
}

// Segment is one conversation's part of a lineage: its events with seq in
// (AfterSeq, UntilSeq] (UntilSeq 0: no upper bound).
type Segment struct {
	ConversationID string `json:"conversation_id"`
	AfterSeq       int64  `json:"after_seq"`
	UntilSeq       int64  `json:"until_seq,omitempty"`
}

// MaxLineageDepth bounds how deep forks of forks may nest.
const MaxLineageDepth = 256

// DeleteOptions adjusts Delete.
type DeleteOptions struct {
	// Cascade erases the conversation's branches (and theirs) with it
	// instead of refusing.
	Cascade bool
}

// PruneQuery selects conversations to prune.
type PruneQuery struct {
	// Before: only conversations last active before it. Required.
	Before time.Time
	// Source, when set, prunes only conversations of that source.
	Source string
}

// TitleOptions adjusts SetTitle.
type TitleOptions struct {
	// Next sets the next free title of the lineage of the given title.
	Next bool
}

// More sentinel errors of Management.
var (
	// ErrTitleTaken is returned when a title is held by another
	// conversation; errors.As with *TitleTakenError names it.
	ErrTitleTaken = errors.New("title taken")
	// ErrAmbiguous is returned when a reference matches several
	// conversations; errors.As with *AmbiguousError lists them.
	ErrAmbiguous = errors.New("ambiguous reference")
	// ErrHasBranches is returned when erasing a conversation that has
	// branches without DeleteOptions.Cascade; errors.As with
	// *HasBranchesError lists them.
	ErrHasBranches = errors.New("conversation has branches")
	// ErrConversationExists is returned when a fork's new id already
	// names a conversation with events.
	ErrConversationExists = errors.New("conversation already exists")
)

// TitleTakenError reports a title held by another conversation.
type TitleTakenError struct {
	Title string
	// ConversationID holds the title.
	ConversationID string
}

func (e *TitleTakenError) Error() string {
	return fmt.Sprintf("title %q is already used by conversation %q", e.Title, e.ConversationID)
}

// Is makes a TitleTakenError match ErrTitleTaken.
func (e *TitleTakenError) Is(target error) bool { return target == ErrTitleTaken }

// AmbiguousError reports a reference matching several conversations.
type AmbiguousError struct {
	Ref string
	// Matches are some of the matching ids (at most a few).
	Matches []string
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("%q is ambiguous: it matches %s", e.Ref, strings.Join(e.Matches, ", "))
}

// Is makes an AmbiguousError match ErrAmbiguous.
func (e *AmbiguousError) Is(target error) bool { return target == ErrAmbiguous }

// HasBranchesError reports a conversation that cannot be erased alone.
type HasBranchesError struct {
	ConversationID string
	Branches       []string
}

func (e *HasBranchesError) Error() string {
	return fmt.Sprintf("conversation %q has branches (%s)",
		e.ConversationID, strings.Join(e.Branches, ", "))
}

// Is makes a HasBranchesError match ErrHasBranches.
func (e *HasBranchesError) Is(target error) bool { return target == ErrHasBranches }

// ForkRequestID is the request_id of a branch's conversation_forked event.
const ForkRequestID = "conversation_forked"

// TitleLineage splits a title into its lineage's base and its number in
// it: "t #3" is ("t", 3), "t" is ("t", 1).
func TitleLineage(title string) (base string, n int64) {
	i := strings.LastIndex(title, " #")
	if i <= 0 {
		return title, 1
	}
	var v int64
	digits := title[i+2:]
	if digits == "" || len(digits) > 9 || digits[0] == '0' {
		return title, 1
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return title, 1
		}
		v = v*10 + int64(c-'0')
	}
	if v < 2 {
		return title, 1
	}
	return title[:i], v
}

// TitleInLineage is the n-th title of base's lineage: base itself for 1,
// "base #n" after, with base cut so the whole stays within
// events.MaxTitleRunes.
func TitleInLineage(base string, n int64) string {
	if n <= 1 {
		return base
	}
	suffix := fmt.Sprintf(" #%d", n)
	if runes := []rune(base); len(runes)+len(suffix) > events.MaxTitleRunes {
		base = strings.TrimRight(string(runes[:events.MaxTitleRunes-len(suffix)]), " ")
	}
	return base + suffix
}

// Span is the part of one lineage segment a read covers: the events of
// ConversationID with seq in (AfterSeq, UntilSeq].
type Span struct {
	ConversationID     string
	AfterSeq, UntilSeq int64
}

// Spans cuts a lineage (Management.Lineage, root first) to the seqs of
// rg, in the order rg reads (newest segment first when rg.Reverse). It is
// how every backend reads a branch through its ancestors.
func Spans(segs []Segment, rg Range) []Span {
	until := rg.UntilSeq
	if until <= 0 {
		until = math.MaxInt64
	}
	var out []Span
	for _, sg := range segs {
		hi := sg.UntilSeq
		if hi <= 0 {
			hi = math.MaxInt64
		}
		sp := Span{ConversationID: sg.ConversationID, AfterSeq: max(sg.AfterSeq, rg.AfterSeq), UntilSeq: min(hi, until)}
		if sp.AfterSeq < sp.UntilSeq {
			out = append(out, sp)
		}
	}
	if rg.Reverse {
		slices.Reverse(out)
	}
	return out
}

// TitleSetBy returns the title an event sets, sanitised, and whether it
// sets one: a title_set always does ("" clears the title), a
// conversation_started when it carries a title. Backends check titles'
// uniqueness on exactly these events.
func TitleSetBy(ev *events.Event) (string, bool) {
	switch ev.Type {
	case events.TypeTitleSet:
		t, _ := ev.ExtraString("title")
		return events.SanitizeTitle(t), true
	case events.TypeConversationStarted:
		t, _ := ev.ExtraString("title")
		t = events.SanitizeTitle(t)
		return t, t != ""
	}
	return "", false
}

// ForkWith is Management.Fork for any backend, in terms of its Head and
// Append: it settles the seq (0: the parent's head) and the new id, and
// appends the branch's conversation_forked, which the backend's append
// path checks and links (see Management).
func ForkWith(ctx context.Context, r interface {
	Head(ctx context.Context, conversationID string) (int64, error)
	Append(ctx context.Context, e events.Event, opts AppendOptions) (Result, error)
}, parentID string, atSeq int64, newID string) (Result, error) {
	if parentID == "" {
		return Result{}, &events.FieldError{Field: "conversation_id", Reason: "is required (the conversation to fork)"}
	}
	if atSeq < 0 {
		return Result{}, &events.FieldError{Field: "at_seq", Reason: "must not be negative"}
	}
	if atSeq == 0 {
		head, err := r.Head(ctx, parentID)
		if err != nil {
			return Result{}, err
		}
		if head == 0 {
			return Result{}, fmt.Errorf("fork: conversation %q has no events: %w", parentID, ErrNotFound)
		}
		atSeq = head
	}
	if newID == "" {
		newID = events.NewConversationID()
	}
	res, err := r.Append(ctx, events.Event{
		ConversationID: newID,
		Type:           events.TypeConversationForked,
		RequestID:      ForkRequestID,
		Extra:          map[string]any{"parent_id": parentID, "parent_seq": atSeq},
	}, AppendOptions{})
	if ce := (*ConflictError)(nil); errors.As(err, &ce) {
		return Result{}, fmt.Errorf("fork: %w: %q is already a branch of %v at seq %v",
			ErrConversationExists, newID, ce.Stored.Extra["parent_id"], ce.Stored.Extra["parent_seq"])
	}
	return res, err
}
