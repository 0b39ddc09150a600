package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/postgres"
	"github.com/chatlog/chatlog/repo/sqlite"
)

var showCommand = &command{
	name:    "show",
	args:    "--conversation C",
	summary: "print a conversation's read model (title, preview, counts, usage, source, user, model, parent, started/ended) as one JSON document",
	example: "chatlog show --conversation demo-weather",
	setup: func(fs *flag.FlagSet) runFunc {
		conversation := fs.String("conversation", "", "the conversation `ID` (required); exit 1 when it has no events")
		return func(ctx context.Context, env *env, args []string) error {
			if *conversation == "" {
				return usageErr("--conversation is required")
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			s, err := r.Summary(ctx, *conversation)
			if err != nil {
				return err
			}
			return writeJSON(env, s)
		}
	},
}

var lsCommand = &command{
	name:    "ls",
	args:    "[--user U] [--source S] [--limit N] [--cursor X]",
	summary: `list conversations, most recently active first, a page at a time: {"conversations":[...],"next_cursor":X} ("" on the last page)`,
	example: "chatlog ls --user alice --limit 20   # then: chatlog ls --user alice --limit 20 --cursor NEXT_CURSOR",
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			user   = fs.String("user", "", "only the conversations of this `USER`")
			source = fs.String("source", "", "only the conversations from this `SOURCE` (web, mobile, cli, ...)")
			limit  = fs.Int("limit", 0, "at most `N` conversations a page (0: 50; at most 1000)")
			cursor = fs.String("cursor", "", "continue after the page that printed this `CURSOR` as next_cursor (same filters)")
		)
		return func(ctx context.Context, env *env, args []string) error {
			if *limit < 0 {
				return usageErr("--limit must not be negative, got %d", *limit)
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			page, err := r.ListConversations(ctx, repo.ListQuery{User: *user, Source: *source, Limit: *limit, Cursor: *cursor})
			if err != nil {
				var fe *events.FieldError
				if errors.As(err, &fe) && fe.Field == "cursor" {
					return fmt.Errorf("--cursor %q %s", *cursor, fe.Reason)
				}
				return err
			}
			return writeJSON(env, page)
		}
	},
}

// searchResults is what search prints, the HTTP API's shape.
type searchResults struct {
	Results []repo.SearchHit `json:"results"`
}

var searchCommand = &command{
	positional: true,
	name:       "search",
	args:       "[--limit N] [--conversation C] [--role R] [--source S] [--user U] QUERY...",
	summary:    `full-text search over message text, every word must occur (no query syntax: any input is safe); prints {"results":[...]}, best first`,
	example:    `chatlog search --limit 5 --user bob "leek soup"   # words after the flags; use -- before a query that starts with -`,
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			limit        = fs.Int("limit", 0, "at most `N` results (0: 20; at most 200)")
			conversation = fs.String("conversation", "", "only messages of this conversation `ID`")
			role         = fs.String("role", "", "only messages of this `ROLE`: user, assistant or tool")
			source       = fs.String("source", "", "only conversations from this `SOURCE`")
			user         = fs.String("user", "", "only conversations of this `USER`")
		)
		return func(ctx context.Context, env *env, args []string) error {
			if len(args) == 0 {
				return usageErr("QUERY is required (the words to find)")
			}
			if *limit < 0 {
				return usageErr("--limit must not be negative, got %d", *limit)
			}
			switch events.Role(*role) {
			case "", events.RoleUser, events.RoleAssistant, events.RoleTool:
			default:
				return usageErr("--role must be user, assistant or tool, got %q", *role)
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			// The words are matched as words: quotes, operators and
			// parentheses are not query syntax (repo.ReadModels.Search).
			hits, err := r.Search(ctx, repo.SearchQuery{
				Query:          strings.Join(args, " "),
				ConversationID: *conversation,
				Role:           events.Role(*role),
				Source:         *source,
				User:           *user,
				Limit:          *limit,
			})
			if err != nil {
				return err
			}
			if hits == nil {
				hits = []repo.SearchHit{}
			}
			return writeJSON(env, searchResults{Results: hits})
		}
	},
}

// rebuildResult is what rebuild prints.
type rebuildResult struct {
	Rebuilt []string `json:"rebuilt"`
	Events  int64    `json:"events"`
	Seconds float64  `json:"seconds"`
}

var rebuildCommand = &command{
	name:    "rebuild",
	args:    "[--projection NAME]",
	summary: "rebuild the read models (conversation list and search) from the log, with progress; prints what was rebuilt",
	example: "chatlog rebuild --projection all",
	setup: func(fs *flag.FlagSet) runFunc {
		name := fs.String("projection", "all", "the read model `NAME`: conversations, search or all")
		return func(ctx context.Context, env *env, args []string) error {
			var only []repo.ReadModel
			rebuilt := []string{string(repo.ReadModelConversations), string(repo.ReadModelSearch)}
			switch *name {
			case "all":
			case string(repo.ReadModelConversations), string(repo.ReadModelSearch):
				only, rebuilt = []repo.ReadModel{repo.ReadModel(*name)}, []string{*name}
			default:
				return usageErr("--projection must be conversations, search or all, got %q", *name)
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			start := time.Now()
			n, err := withEventProgress(env, "rebuilding", func(progress func(int64)) error {
				return r.RebuildReadModels(ctx, progress, only...)
			})
			if err != nil {
				return err
			}
			return writeJSON(env, rebuildResult{Rebuilt: rebuilt, Events: n, Seconds: seconds(time.Since(start))})
		}
	},
}

// verifyResult is what verify prints.
type verifyResult struct {
	OK       bool     `json:"ok"`
	Problems []string `json:"problems"`
}

var verifyCommand = &command{
	name:    "verify",
	args:    "",
	summary: `check the database file, the log's invariants, and that read models rebuilt from the log equal the live ones; prints {"ok","problems"}; exit 1 on any problem`,
	example: "chatlog verify || chatlog rebuild",
	setup: func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, env *env, args []string) error {
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			res := verifyResult{Problems: []string{}}
			if err := env.r.IntegrityCheck(ctx); err != nil {
				if ctx.Err() != nil {
					return err
				}
				res.Problems = append(res.Problems, err.Error())
			}
			_, err = withEventProgress(env, "verifying", func(progress func(int64)) error {
				problems, err := r.VerifyReadModels(ctx, progress)
				res.Problems = append(res.Problems, problems...)
				return err
			})
			if err != nil {
				if len(res.Problems) == 0 || ctx.Err() != nil {
					return err
				}
				// A damaged file may stop the check: report both.
				res.Problems = append(res.Problems, "read models not checked: "+err.Error())
			}
			res.OK = len(res.Problems) == 0
			if err := writeJSON(env, res); err != nil {
				return err
			}
			if !res.OK {
				return fmt.Errorf("%d problem(s), the first: %s", len(res.Problems), res.Problems[0])
			}
			return nil
		}
	},
}

var statsCommand = &command{
	name:    "stats",
	args:    "",
	summary: "print counts (events, conversations, events per type), payload bytes stored and uncompressed, file sizes and this process's group-commit totals as one JSON document",
	example: "chatlog --db chat.db stats",
	setup: func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, env *env, args []string) error {
			if _, err := env.repo(ctx); err != nil {
				return err
			}
			st, err := storageStats(ctx, env.r)
			if err != nil {
				return err
			}
			return writeJSON(env, st)
		}
	},
}

// storageStats returns what the store holds and takes (sqlite's or
// postgres's StorageStats).
func storageStats(ctx context.Context, s store) (any, error) {
	switch s := s.(type) {
	case *sqlite.Repo:
		return s.StorageStats(ctx)
	case *postgres.Repo:
		return s.StorageStats(ctx)
	}
	return nil, fmt.Errorf("stats: no storage statistics for %T", s)
}

// metrics returns the store's running totals as the server exports them.
func metrics(s store) map[string]float64 {
	switch s := s.(type) {
	case *sqlite.Repo:
		st := s.Stats()
		return map[string]float64{
			"appended_total":   float64(st.Appended),
			"duplicates_total": float64(st.Duplicates),
			"conflicts_total":  float64(st.Conflicts),
			"commits_total":    float64(st.Commits),
			"mean_batch":       st.MeanBatch,
			"max_batch":        float64(st.MaxBatch),
		}
	case *postgres.Repo:
		st := s.Stats()
		return map[string]float64{
			"appended_total":     float64(st.Appended),
			"duplicates_total":   float64(st.Duplicates),
			"conflicts_total":    float64(st.Conflicts),
			"commits_total":      float64(st.Commits),
			"mean_batch":         st.MeanBatch,
			"max_batch":          float64(st.MaxBatch),
			"retries_total":      float64(st.Retries),
			"settled_total":      float64(st.Settled),
			"notified_total":     float64(st.Notified),
			"heard_total":        float64(st.Heard),
			"pool_conns":         float64(st.Conns),
			"pool_idle_conns":    float64(st.IdleConns),
			"pool_acquire_waits": float64(st.AcquireWaits),
		}
	}
	return nil
}

// withEventProgress runs f with a progress callback that counts events
// and, on a terminal, shows the count and rate on stderr. It returns the
// last count reported.
func withEventProgress(env *env, verb string, f func(progress func(int64)) error) (int64, error) {
	bar := newProgress(env.stderr, -1, verb)
	var n int64
	err := f(func(events int64) {
		n = events
		bar.update(int(events))
	})
	bar.finish()
	return n, err
}

// seconds is d in seconds, to the millisecond.
func seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*1000) / 1000
}
