package main

import (
	"bufio"
	"context"
	"flag"
	"io"
	"iter"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

var replayCommand = &command{
	name:    "replay",
	args:    "--conversation C [--after-seq N] [--until-seq N] [--with-deltas] [--follow]",
	summary: "print a conversation's events as JSONL in seq order; --follow keeps printing new ones until interrupted",
	example: "chatlog replay --conversation c1 --after-seq 10 --with-deltas",
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			conversation = fs.String("conversation", "", "the conversation `ID` (required)")
			after        = fs.Int64("after-seq", 0, "print events with seq above `N` (0: from the first)")
			until        = fs.Int64("until-seq", 0, "print events with seq up to `N` (0: to the last)")
			withDeltas   = fs.Bool("with-deltas", false, "include the streamed chunks (assistant_delta events)")
			follow       = fs.Bool("follow", false, "keep printing events as they are appended, until interrupted")
		)
		return func(ctx context.Context, env *env, args []string) error {
			if *conversation == "" {
				return usageErr("--conversation is required")
			}
			if *after < 0 || *until < 0 {
				return usageErr("--after-seq and --until-seq must not be negative")
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			return replay(ctx, env.stdout, r, *conversation, *after, *until, *withDeltas, *follow)
		}
	},
}

// replay writes a conversation's events as JSONL. With follow it waits
// for new events until ctx is done (not an error) or until is reached.
func replay(ctx context.Context, w io.Writer, r repo.Repo, cid string, after, until int64, withDeltas, follow bool) error {
	var seq iter.Seq2[events.Event, error]
	if follow {
		if until > 0 && until <= after {
			return nil
		}
		seq = r.Follow(ctx, cid, after)
	} else {
		seq = r.Events(ctx, cid, repo.Range{AfterSeq: after, UntilSeq: until})
	}
	bw := bufio.NewWriter(w)
	for e, err := range seq {
		if err != nil {
			bw.Flush()
			return err
		}
		if until > 0 && e.Seq > until {
			break
		}
		if withDeltas || e.Type != events.TypeAssistantDelta {
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
		if until > 0 && e.Seq >= until {
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
