package main

import (
	"bufio"
	"context"
	"flag"
	"io"
	"iter"
	"slices"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

var replayCommand = &command{
	name:    "replay",
	args:    "--conversation C [--after-seq N] [--until-seq N | --before-seq N] [--limit N] [--reverse | --last N] [--with-deltas] [--follow]",
	summary: "print a conversation's events as JSONL in seq order (or newest first, or the last N); --follow keeps printing new ones until interrupted",
	example: "chatlog replay --conversation c1 --last 20    # page back: chatlog replay --conversation c1 --before-seq 81 --reverse --limit 20",
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			conversation = fs.String("conversation", "", "the conversation `ID` (required)")
			after        = fs.Int64("after-seq", 0, "print events with seq above `N` (0: from the first)")
			until        = fs.Int64("until-seq", 0, "print events with seq up to `N` (0: to the last)")
			before       = fs.Int64("before-seq", 0, "print events with seq below `N` (--until-seq N-1)")
			limit        = fs.Int("limit", 0, "print at most `N` events (0: all)")
			reverse      = fs.Bool("reverse", false, "newest first")
			last         = fs.Int("last", 0, "print the latest `N` events, in seq order")
			withDeltas   = fs.Bool("with-deltas", false, "include the streamed chunks (assistant_delta events)")
			follow       = fs.Bool("follow", false, "keep printing events as they are appended, until interrupted")
		)
		return func(ctx context.Context, env *env, args []string) error {
			if *conversation == "" {
				return usageErr("--conversation is required")
			}
			if *after < 0 || *until < 0 || *before < 0 || *limit < 0 || *last < 0 {
				return usageErr("--after-seq, --until-seq, --before-seq, --limit and --last must not be negative")
			}
			if *before > 0 {
				if *until > 0 {
					return usageErr("give --until-seq or --before-seq, not both")
				}
				if *until = *before - 1; *until == 0 {
					return nil // nothing comes before seq 1
				}
			}
			if *last > 0 && (*reverse || *limit > 0) {
				return usageErr("--last prints the latest N in seq order: it takes no --reverse or --limit")
			}
			if *follow && (*reverse || *last > 0) {
				return usageErr("--follow reads forward: it takes no --reverse or --last")
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			q := replayQuery{conv: *conversation, after: *after, until: *until, limit: *limit,
				reverse: *reverse, withDeltas: *withDeltas, follow: *follow}
			if *last > 0 {
				return replayLast(ctx, env.stdout, r, q, *last)
			}
			return replay(ctx, env.stdout, r, q)
		}
	},
}

// replayQuery is what replay prints.
type replayQuery struct {
	conv                        string
	after, until                int64
	limit                       int
	reverse, withDeltas, follow bool
}

// replayLast prints the latest n events (chunks counted only with
// withDeltas) in seq order, reading the conversation backwards.
func replayLast(ctx context.Context, w io.Writer, r repo.Repo, q replayQuery, n int) error {
	var tail []events.Event
	for e, err := range r.Events(ctx, q.conv, repo.Range{AfterSeq: q.after, UntilSeq: q.until, Reverse: true}) {
		if err != nil {
			return err
		}
		if q.withDeltas || e.Type != events.TypeAssistantDelta {
			if tail = append(tail, e); len(tail) == n {
				break
			}
		}
	}
	if len(tail) == 0 {
		return nil
	}
	slices.Reverse(tail)
	return replay(ctx, w, nil, replayQuery{withDeltas: true}, tail...)
}

// replay writes a conversation's events as JSONL (or evs, when given).
// With follow it waits for new events until ctx is done (not an error) or
// until is reached.
func replay(ctx context.Context, w io.Writer, r repo.Repo, q replayQuery, evs ...events.Event) error {
	after, until, follow, withDeltas := q.after, q.until, q.follow, q.withDeltas
	var seq iter.Seq2[events.Event, error]
	switch {
	case evs != nil:
		seq = func(yield func(events.Event, error) bool) {
			for _, e := range evs {
				if !yield(e, nil) {
					return
				}
			}
		}
	case follow:
		if until > 0 && until <= after {
			return nil
		}
		seq = r.Follow(ctx, q.conv, after)
	default:
		seq = r.Events(ctx, q.conv, repo.Range{AfterSeq: after, UntilSeq: until, Reverse: q.reverse})
	}
	printed := 0
	bw := bufio.NewWriter(w)
	for e, err := range seq {
		if err != nil {
			bw.Flush()
			return err
		}
		if until > 0 && e.Seq > until && !q.reverse {
			break
		}
		if q.limit > 0 && printed == q.limit {
			break
		}
		if withDeltas || e.Type != events.TypeAssistantDelta {
			printed++
			b, err := e.MarshalJSON()
			if err != nil {
				return err
			}
			if _, err := bw.Write(append(b, '\n')); err != nil {
				return err
			}
			if follow {
				// A follower wants each event as it comes.
				if err := bw.Flush(); err != nil {
					return err
				}
			}
		}
		if until > 0 && e.Seq >= until && !q.reverse {
			break
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if !follow {
		// A read cut short by an interrupt is an error, not a short
		// conversation; for --follow it is the normal end.
		return ctx.Err()
	}
	return nil
}
