package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// defaultLease is the lease of a turn begun without --lease, as the HTTP
// API's default.
const defaultLease = 30 * time.Second

// defaultIdle is how long a stream must have been idle before compact
// finalises it, without --idle.
const defaultIdle = 5 * time.Minute

var turnCommand = &command{
	name:    "turn",
	args:    "--conversation C --request-id U --content TEXT [--lease DURATION]",
	summary: `begin or look up the turn answering a user request, exactly once; prints its status; exit 4 while it is in flight elsewhere`,
	example: `chatlog turn --conversation c1 --request-id u1 --content "What is 2+2?" --lease 1m`,
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			conversation = fs.String("conversation", "", "the conversation `ID` (required)")
			requestID    = fs.String("request-id", "", "the user request's idempotency `KEY` (required); it names the turn")
			content      optionalString
			lease        = fs.Duration("lease", defaultLease, "how long this attempt holds the turn (`DURATION`: 30s, 2m, ...); once it lapses, the next turn takes over as a new attempt")
		)
		fs.Var(&content, "content", "the user message `TEXT` (required)")
		return func(ctx context.Context, env *env, args []string) error {
			switch {
			case *conversation == "":
				return usageErr("--conversation is required")
			case *requestID == "":
				return usageErr("--request-id is required")
			case !content.set:
				return usageErr("--content is required")
			case *lease <= 0:
				return usageErr("--lease must be positive, got %s", *lease)
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			st, err := r.BeginTurn(ctx, repo.BeginTurn{
				UserMessage: events.Event{
					ConversationID: *conversation,
					Type:           events.TypeUserMessage,
					Role:           events.RoleUser,
					RequestID:      *requestID,
					Content:        events.NewText(content.v),
				},
				Owner: cliOwner(),
				Lease: *lease,
			})
			if err != nil {
				return err
			}
			if err := writeJSON(env, turnOutput(st)); err != nil {
				return err
			}
			if st.Status == repo.TurnInFlight {
				// Exit 4, with the lease's end as the output prints it.
				return fmt.Errorf("%w: attempt %d holds it until %s", dedupe.ErrInFlight, st.Attempt, events.FormatTime(st.LeaseExpiresAt))
			}
			return nil
		}
	},
}

// cliOwner names this process in the leases it takes.
func cliOwner() string {
	host, _ := os.Hostname()
	return "chatlog-cli:" + host + ":" + strconv.Itoa(os.Getpid())
}

// turnJSON is what turn prints: repo.TurnState with lease_expires_at in
// the events' time format (RFC 3339, UTC, nine fractional digits) rather
// than encoding/json's, which drops trailing zeros.
type turnJSON struct {
	Status         repo.TurnStatus `json:"status"`
	Attempt        int             `json:"attempt"`
	LeaseExpiresAt string          `json:"lease_expires_at,omitempty"`
	UserEvent      events.Event    `json:"user_event"`
	Reply          *events.Event   `json:"reply,omitempty"`
	LastError      string          `json:"last_error,omitempty"`
}

func turnOutput(st repo.TurnState) turnJSON {
	out := turnJSON{
		Status:    st.Status,
		Attempt:   st.Attempt,
		UserEvent: st.UserEvent,
		Reply:     st.Reply,
		LastError: st.LastError,
	}
	if !st.LeaseExpiresAt.IsZero() && st.Status != repo.TurnCompleted {
		out.LeaseExpiresAt = events.FormatTime(st.LeaseExpiresAt)
	}
	return out
}

// writeJSON prints v as one compact JSON document.
func writeJSON(env *env, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = env.stdout.Write(append(b, '\n'))
	return err
}

var deltaCommand = &command{
	name:    "delta",
	args:    "--conversation C --user-request-id U --index I --content TEXT [--attempt N]",
	summary: `record one streamed chunk of a reply (idempotent on user request, attempt and index); prints it with "duplicate"`,
	example: `chatlog delta --conversation c1 --user-request-id u1 --attempt 1 --index 0 --content "2+2 "`,
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			conversation  = fs.String("conversation", "", "the conversation `ID` (required)")
			userRequestID = fs.String("user-request-id", "", "the user request `KEY` this chunk answers (required)")
			index         optionalInt
			content       optionalString
			attempt       optionalInt
		)
		fs.Var(&index, "index", "the chunk's position `I` in the reply: 0, 1, 2, ... (required)")
		fs.Var(&content, "content", "the chunk's `TEXT` (required)")
		fs.Var(&attempt, "attempt", "the attempt `N` that holds the turn, as turn printed it; required when U was begun as a turn, else exit 3")
		return func(ctx context.Context, env *env, args []string) error {
			switch {
			case *conversation == "":
				return usageErr("--conversation is required")
			case *userRequestID == "":
				return usageErr("--user-request-id is required")
			case !index.set:
				return usageErr("--index is required")
			case !content.set:
				return usageErr("--content is required")
			}
			att, err := intFlag("attempt", attempt.v)
			if err != nil {
				return err
			}
			idx, err := intFlag("index", index.v)
			if err != nil {
				return err
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			res, err := r.Append(ctx, compact.Chunk(*conversation, *userRequestID, att, idx, content.v), repo.AppendOptions{})
			if err != nil {
				return err
			}
			return printStored(env, res)
		}
	},
}

// intFlag converts a non-negative integer flag's value to an int.
func intFlag(name string, v int64) (int, error) {
	if v > math.MaxInt32 {
		return 0, usageErr("--%s is too large: %d", name, v)
	}
	return int(v), nil
}

var finishCommand = &command{
	name:    "finish",
	args:    "--conversation C --user-request-id U [--attempt N] [--stop-reason S] [--model M]",
	summary: `fold a reply's chunks into one assistant_message; prints it with "duplicate"; idempotent`,
	example: `chatlog finish --conversation c1 --user-request-id u1 --attempt 1 --stop-reason end_turn --model claude-sonnet-4-5`,
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			conversation  = fs.String("conversation", "", "the conversation `ID` (required)")
			userRequestID = fs.String("user-request-id", "", "the user request `KEY` whose reply to finish (required)")
			attempt       optionalInt
			stopReason    = fs.String("stop-reason", "", "the final message's stop `REASON` (e.g. end_turn, max_tokens)")
			model         = fs.String("model", "", "the final message's `MODEL` (default: the latest chunk's)")
		)
		fs.Var(&attempt, "attempt", "the attempt `N` that holds the turn, as turn printed it; required when U was begun as a turn, else exit 3")
		return func(ctx context.Context, env *env, args []string) error {
			switch {
			case *conversation == "":
				return usageErr("--conversation is required")
			case *userRequestID == "":
				return usageErr("--user-request-id is required")
			}
			att, err := intFlag("attempt", attempt.v)
			if err != nil {
				return err
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			res, err := compact.Finish(ctx, r, *conversation, *userRequestID, att, compact.Options{StopReason: *stopReason, Model: *model})
			if err != nil {
				var gap *compact.GapError
				if errors.As(err, &gap) {
					return fmt.Errorf("user request %q: %w; nothing written", *userRequestID, err)
				}
				return err
			}
			return printStored(env, res)
		}
	},
}

var compactCommand = &command{
	name:    "compact",
	args:    "[--idle DURATION]",
	summary: `finalise streams idle longer than DURATION as "interrupted"; prints a summary; exit 1 if any failed`,
	example: "chatlog compact --idle 10m",
	setup: func(fs *flag.FlagSet) runFunc {
		idle := fs.Duration("idle", defaultIdle, "finalise streams whose last chunk is older than `DURATION` (e.g. 90s, 10m)")
		return func(ctx context.Context, env *env, args []string) error {
			if *idle < 0 {
				return usageErr("--idle must not be negative, got %s", *idle)
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			res, err := compact.Sweep(ctx, r, *idle, time.Now())
			if err != nil {
				return err
			}
			if err := writeJSON(env, res); err != nil {
				return err
			}
			if res.Failed > 0 {
				return fmt.Errorf("%d of %d idle streams could not be finalised: %s",
					res.Failed, res.Finalised+res.Skipped+res.Failed, strings.Join(res.Errors, "; "))
			}
			return nil
		}
	},
}
