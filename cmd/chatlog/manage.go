package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/chatlog/chatlog/conversation"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// The conversation-management commands: thin wrappers over the
// conversation package and repo.Management.

var startCommand = &command{
	name:    "start",
	args:    "--conversation C [--source S] [--user U] [--model M] [--model-config JSON] [--system TEXT] [--project P] [--parent ID] [--title T]",
	summary: "record that a conversation started, with its metadata; safe to repeat (later starts print the first, duplicate: true)",
	example: `chatlog start --conversation c1 --source cli --user alice --model gpt-4o --system "Be brief." --title "Trip plan"`,
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			conv        = fs.String("conversation", "", "the conversation `ID` (required)")
			source      = fs.String("source", "", "where it happens (`SOURCE`: cli, telegram, web, ...)")
			user        = fs.String("user", "", "the `USER` it belongs to")
			model       = fs.String("model", "", "the `MODEL` it talks to")
			modelConfig = fs.String("model-config", "", "the model's settings as a JSON `OBJECT`")
			system      = fs.String("system", "", "the system prompt `TEXT`")
			project     = fs.String("project", "", "the project `P` it belongs to (default: the working directory)")
			parent      = fs.String("parent", "", "a conversation `ID` this one belongs under (no history inherited; see fork)")
			title       = fs.String("title", "", "its `TITLE` (sanitised; exit 1 when another conversation has it)")
		)
		return func(ctx context.Context, env *env, args []string) error {
			if *conv == "" {
				return usageErr("--conversation is required")
			}
			md := conversation.Metadata{Source: *source, User: *user, Model: *model, System: *system,
				Project: *project, Parent: *parent, Title: *title}
			if *modelConfig != "" {
				if err := json.Unmarshal([]byte(*modelConfig), &md.ModelConfig); err != nil || md.ModelConfig == nil {
					return usageErr("--model-config must be a JSON object: %v", *modelConfig)
				}
			}
			if md.Project == "" {
				if wd, err := os.Getwd(); err == nil {
					md.Project = wd
				}
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			res, err := conversation.Start(ctx, r, *conv, md)
			if err != nil {
				return err
			}
			return printStored(env, res)
		}
	},
}

var endCommand = &command{
	name:    "end",
	args:    "--conversation C [--reason R]",
	summary: "mark a conversation ended (prune erases ended ones); prints the conversation_ended event",
	example: `chatlog end --conversation c1 --reason "user left"`,
	setup: func(fs *flag.FlagSet) runFunc {
		conv := fs.String("conversation", "", "the conversation `ID` (required)")
		reason := fs.String("reason", "", "why it ended (`R`)")
		return func(ctx context.Context, env *env, args []string) error {
			return withConversation(ctx, env, *conv, func(r repo.Repo) (repo.Result, error) {
				return conversation.End(ctx, r, *conv, *reason)
			})
		}
	},
}

var reopenCommand = eventCommand("reopen",
	"mark an ended conversation open again; prints the conversation_reopened event",
	"chatlog reopen --conversation c1", conversation.Reopen)

var clearCommand = eventCommand("clear",
	"record a clear: the model sees nothing before it, the history stays replayable; prints the event",
	"chatlog clear --conversation c1", conversation.Clear)

// eventCommand is a command that records one event on --conversation,
// with no other flag, and prints it.
func eventCommand(name, summary, example string, record func(context.Context, repo.Repo, string) (repo.Result, error)) *command {
	return &command{
		name:    name,
		args:    "--conversation C",
		summary: summary,
		example: example,
		setup: func(fs *flag.FlagSet) runFunc {
			conv := fs.String("conversation", "", "the conversation `ID` (required)")
			return func(ctx context.Context, env *env, args []string) error {
				return withConversation(ctx, env, *conv, func(r repo.Repo) (repo.Result, error) {
					return record(ctx, r, *conv)
				})
			}
		},
	}
}

var systemCommand = &command{
	name:    "system",
	args:    "--conversation C TEXT",
	summary: "replace the system prompt the model sees from now on; prints the system_prompt_set event",
	example: `chatlog system --conversation c1 "Answer in French."`,
	setup: func(fs *flag.FlagSet) runFunc {
		conv := fs.String("conversation", "", "the conversation `ID` (required)")
		return func(ctx context.Context, env *env, args []string) error {
			if len(args) != 1 {
				return usageErr("give the system prompt as one argument")
			}
			return withConversation(ctx, env, *conv, func(r repo.Repo) (repo.Result, error) {
				return conversation.SetSystemPrompt(ctx, r, *conv, args[0])
			})
		}
	},
	positional: true,
}

// withConversation runs an event-writing command on --conversation and
// prints what it stored.
func withConversation(ctx context.Context, env *env, conv string, do func(r repo.Repo) (repo.Result, error)) error {
	if conv == "" {
		return usageErr("--conversation is required")
	}
	r, err := env.repo(ctx)
	if err != nil {
		return err
	}
	res, err := do(r)
	if err != nil {
		return err
	}
	return printStored(env, res)
}

var popCommand = &command{
	name:    "pop",
	args:    "--conversation C",
	summary: "retract the most recent message the model sees and print it (null when there is none); history stays replayable",
	example: "chatlog pop --conversation c1",
	setup: func(fs *flag.FlagSet) runFunc {
		conv := fs.String("conversation", "", "the conversation `ID` (required)")
		return func(ctx context.Context, env *env, args []string) error {
			if *conv == "" {
				return usageErr("--conversation is required")
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			popped, _, found, err := conversation.Pop(ctx, r, *conv)
			if err != nil {
				return err
			}
			if !found {
				return writeJSON(env, nil)
			}
			return writeJSON(env, popped)
		}
	},
}

var titleCommand = &command{
	name:    "title",
	args:    "--conversation C [--next] [TITLE]",
	summary: `print a conversation's title as a JSON string (null when none), or set it (sanitised; exit 1 naming the holder when taken); --next sets the next free name of TITLE's lineage ("t", "t #2", ...)`,
	example: `chatlog title --conversation c1 "Trip plan"    # or: chatlog title --conversation c2 --next "Trip plan"`,
	setup: func(fs *flag.FlagSet) runFunc {
		conv := fs.String("conversation", "", "the conversation `ID` (required)")
		next := fs.Bool("next", false, "set the next free title of TITLE's lineage")
		return func(ctx context.Context, env *env, args []string) error {
			if *conv == "" {
				return usageErr("--conversation is required")
			}
			if len(args) > 1 {
				return usageErr("give the title as one argument (quote it)")
			}
			if *next && len(args) == 0 {
				return usageErr("--next needs the TITLE whose lineage to extend")
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				s, err := r.Summary(ctx, *conv)
				if err != nil && !errors.Is(err, repo.ErrNotFound) {
					return err
				}
				return writeTitle(env, s.Title)
			}
			res, err := r.SetTitle(ctx, *conv, args[0], repo.TitleOptions{Next: *next})
			if err != nil {
				return err
			}
			t, _ := res.Event.ExtraString("title")
			return writeTitle(env, t)
		}
	},
	positional: true,
}

// writeTitle prints a title as a JSON string, or null for none.
func writeTitle(env *env, title string) error {
	if title == "" {
		return writeJSON(env, nil)
	}
	return writeJSON(env, title)
}

var resolveCommand = &command{
	name:    "resolve",
	args:    "PREFIX_OR_TITLE",
	summary: "print the full id (a JSON string) of the conversation an id, a unique id prefix or a title names (a title: the latest of its lineage); exit 1 when none or ambiguous",
	example: `chatlog resolve 0193f2    # or: chatlog resolve "Trip plan"`,
	setup: func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, env *env, args []string) error {
			if len(args) != 1 {
				return usageErr("give one id prefix or title")
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			id, err := r.Resolve(ctx, args[0])
			if err != nil {
				return err
			}
			return writeJSON(env, id)
		}
	},
	positional: true,
}

// forked is what fork prints (and the HTTP API answers).
type forked struct {
	ConversationID string `json:"conversation_id"`
	ParentID       string `json:"parent_id"`
	ParentSeq      int64  `json:"parent_seq"`
	Duplicate      bool   `json:"duplicate"`
}

var forkCommand = &command{
	name:    "fork",
	args:    "--conversation C [--at-seq N] [--new-id X]",
	summary: `start a branch holding C's history up to seq N (O(1): it points at C); prints {"conversation_id":X,...}`,
	example: "chatlog fork --conversation c1 --at-seq 12",
	setup: func(fs *flag.FlagSet) runFunc {
		conv := fs.String("conversation", "", "the conversation `ID` to fork (required)")
		at := fs.Int64("at-seq", 0, "fork after seq `N` (0: the head)")
		newID := fs.String("new-id", "", "the branch's `ID` (default: a new UUID); forking again with it is a duplicate")
		return func(ctx context.Context, env *env, args []string) error {
			if *conv == "" {
				return usageErr("--conversation is required")
			}
			if *at < 0 {
				return usageErr("--at-seq must not be negative")
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			res, err := r.Fork(ctx, *conv, *at, *newID)
			if err != nil {
				return forkParam(err, "--at-seq")
			}
			return writeJSON(env, forkedOf(res))
		}
	},
}

// forkParam names the fork point as the caller gave it: the store checks
// it as the conversation_forked event's extra.parent_seq.
func forkParam(err error, name string) error {
	var fe *events.FieldError
	if errors.As(err, &fe) && fe.Field == "extra.parent_seq" {
		return &events.FieldError{Field: name, Reason: fe.Reason}
	}
	return err
}

func forkedOf(res repo.Result) forked {
	f := forked{ConversationID: res.Event.ConversationID, Duplicate: res.Duplicate()}
	f.ParentID, _ = res.Event.ExtraString("parent_id")
	f.ParentSeq, _ = res.Event.ExtraInt("parent_seq")
	return f
}

// erased is what delete and prune print.
type erased struct {
	Deleted       int      `json:"deleted"`
	Conversations []string `json:"conversations"`
}

var deleteCommand = &command{
	name:    "delete",
	args:    "--conversation C [--cascade]",
	summary: `erase a conversation and everything derived from it (read models, search, turns, chunks); irreversible; prints {"deleted":N,"conversations":[...]}`,
	example: "chatlog delete --conversation c1",
	setup: func(fs *flag.FlagSet) runFunc {
		conv := fs.String("conversation", "", "the conversation `ID` (required)")
		cascade := fs.Bool("cascade", false, "erase its branches too (without it, a conversation with branches is refused)")
		return func(ctx context.Context, env *env, args []string) error {
			if *conv == "" {
				return usageErr("--conversation is required")
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			ids, err := r.Delete(ctx, *conv, repo.DeleteOptions{Cascade: *cascade})
			if err != nil {
				if errors.Is(err, repo.ErrHasBranches) {
					return fmt.Errorf("%w: erase them first, or add --cascade to erase them too", err)
				}
				return err
			}
			return writeJSON(env, erased{Deleted: len(ids), Conversations: ids})
		}
	},
}

var pruneCommand = &command{
	name:    "prune",
	args:    "--older-than DURATION [--source S]",
	summary: `erase ended conversations last active longer ago than DURATION (e.g. 90d, 12h), keeping any whose branches live on; prints {"deleted":N,"conversations":[...]}`,
	example: "chatlog prune --older-than 90d --source telegram",
	setup: func(fs *flag.FlagSet) runFunc {
		olderThan := fs.String("older-than", "", "the age `DURATION` (required): Go durations (12h, 90m) or days (90d)")
		source := fs.String("source", "", "only conversations from this `SOURCE`")
		return func(ctx context.Context, env *env, args []string) error {
			if *olderThan == "" {
				return usageErr("--older-than is required")
			}
			age, err := parseAge(*olderThan)
			if err != nil {
				return usageErr("--older-than %q: %v", *olderThan, err)
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			ids, err := r.Prune(ctx, repo.PruneQuery{Before: time.Now().Add(-age), Source: *source})
			if err != nil {
				return err
			}
			return writeJSON(env, erased{Deleted: len(ids), Conversations: ids})
		}
	},
}

// parseAge reads a Go duration or a whole number of days ("90d").
func parseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > 1<<20 {
			return 0, errors.New("days must be a whole number, like 90d")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want a duration such as 90d, 12h or 30m")
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	return d, nil
}

// usageTotals is what usage prints.
type usageTotals struct {
	ConversationID string       `json:"conversation_id,omitempty"`
	User           string       `json:"user,omitempty"`
	Usage          events.Usage `json:"usage"`
}

var usageCommand = &command{
	name:    "usage",
	args:    "--conversation C [--input N] [--output N] [--cache-read N] [--cache-write N] [--reasoning N] [--cost X] [--actual-cost X] [--currency C] [--pricing-version V] [--billing-provider P] [--set] [--request-id K] | --user U",
	summary: "add usage to a conversation (atomic; idempotent with a key) or state its totals (--set), and print its totals; without numbers only print; --user prints a user's totals",
	example: "chatlog usage --conversation c1 --input 1200 --output 300 --cost 0.0041 --currency USD --request-id turn-7",
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			conv      = fs.String("conversation", "", "the conversation `ID`")
			user      = fs.String("user", "", "print the totals of every conversation of `USER` instead")
			u         events.Usage
			set       = fs.Bool("set", false, "the numbers are the conversation's totals (replacing the sum), not an increment")
			requestID = fs.String("request-id", "", "idempotency `KEY`: a retry with it adds nothing")
		)
		fs.Int64Var(&u.Input, "input", 0, "input `TOKENS`")
		fs.Int64Var(&u.Output, "output", 0, "output `TOKENS`")
		fs.Int64Var(&u.CacheRead, "cache-read", 0, "cache-read `TOKENS`")
		fs.Int64Var(&u.CacheWrite, "cache-write", 0, "cache-write `TOKENS`")
		fs.Int64Var(&u.Reasoning, "reasoning", 0, "reasoning `TOKENS`")
		fs.Float64Var(&u.Cost, "cost", 0, "estimated `COST`")
		fs.Float64Var(&u.ActualCost, "actual-cost", 0, "`COST` the billing provider charged")
		fs.StringVar(&u.Currency, "currency", "", "the costs' `CURRENCY` (e.g. USD)")
		fs.StringVar(&u.PricingVersion, "pricing-version", "", "the price list `VERSION` the estimate used")
		fs.StringVar(&u.BillingProvider, "billing-provider", "", "who bills the usage (`PROVIDER`)")
		return func(ctx context.Context, env *env, args []string) error {
			record := false
			fs.Visit(func(f *flag.Flag) {
				switch f.Name {
				case "conversation", "user", "request-id":
				default:
					record = true
				}
			})
			switch {
			case *conv == "" && *user == "":
				return usageErr("give --conversation (or --user for a user's totals)")
			case *conv != "" && *user != "":
				return usageErr("give --conversation or --user, not both")
			case *user != "" && (record || *requestID != ""):
				return usageErr("--user only prints totals; record usage on a --conversation")
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			if *user != "" {
				total, err := r.UserUsage(ctx, *user)
				if err != nil {
					return err
				}
				return writeJSON(env, usageTotals{User: *user, Usage: total})
			}
			if record {
				if *set {
					_, err = conversation.SetUsage(ctx, r, *conv, u, *requestID)
				} else {
					_, err = conversation.AddUsage(ctx, r, *conv, u, *requestID)
				}
				if err != nil {
					return err
				}
			}
			total, err := conversation.Usage(ctx, r, *conv)
			if err != nil {
				return err
			}
			return writeJSON(env, usageTotals{ConversationID: *conv, Usage: total})
		}
	},
}

// pointer is what current prints (and the HTTP API answers).
type pointer struct {
	User           string  `json:"user"`
	Scope          string  `json:"scope"`
	ConversationID *string `json:"conversation_id"`
}

var currentCommand = &command{
	name:    "current",
	args:    "--user U [--scope S] [--set C | --unset]",
	summary: `print a user's current conversation in a scope (per agent or project), or set it: {"user","scope","conversation_id"} (null when none)`,
	example: "chatlog current --user alice --scope telegram --set c1",
	setup: func(fs *flag.FlagSet) runFunc {
		user := fs.String("user", "", "the `USER` (required)")
		scope := fs.String("scope", "", "the pointer's `SCOPE`, e.g. an agent or a project (default: "+conversation.DefaultScope+")")
		set := fs.String("set", "", "point it at conversation `C`")
		unset := fs.Bool("unset", false, "clear it")
		return func(ctx context.Context, env *env, args []string) error {
			switch {
			case *user == "":
				return usageErr("--user is required")
			case *set != "" && *unset:
				return usageErr("give --set or --unset, not both")
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			if *set != "" || *unset {
				if _, err := conversation.SetCurrent(ctx, r, *user, *scope, *set); err != nil {
					return err
				}
			}
			id, ok, err := conversation.Current(ctx, r, *user, *scope)
			if err != nil {
				return err
			}
			out := pointer{User: *user, Scope: *scope}
			if out.Scope == "" {
				out.Scope = conversation.DefaultScope
			}
			if ok {
				out.ConversationID = &id
			}
			return writeJSON(env, out)
		}
	},
}
