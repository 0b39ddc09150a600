package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/chatlog/chatlog/server"
)

var serveCommand = &command{
	name:    "serve",
	args:    "[--addr 127.0.0.1:8080] [--token T] [--max-body N]",
	summary: "run the HTTP API (INTERFACE.md) until SIGINT or SIGTERM; one JSON log line per request on stderr",
	example: "CHATLOG_TOKEN=s3cret chatlog --db chat.db serve --addr 127.0.0.1:8080",
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			addr    = fs.String("addr", "127.0.0.1:8080", "listen on `HOST:PORT` (port 0 picks a free one; the log's \"listening\" line names it)")
			token   = fs.String("token", "", "require Authorization: Bearer `TOKEN` on every request but /healthz (default $CHATLOG_TOKEN; the variable keeps it out of ps)")
			maxBody = fs.Int64("max-body", server.DefaultMaxBody, "refuse request bodies over `N` bytes with 413")
		)
		return func(ctx context.Context, env *env, args []string) error {
			if *maxBody <= 0 {
				return usageErr("--max-body must be positive, got %d", *maxBody)
			}
			if *token == "" {
				*token = env.getenv("CHATLOG_TOKEN")
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			store := env.r
			s := server.New(r, &server.Options{
				Token:      *token,
				MaxBody:    *maxBody,
				Logger:     slog.New(slog.NewJSONHandler(env.stderr, nil)),
				StoreStats: func() map[string]float64 { return metrics(store) },
			})
			// Run returns once the requests in flight have finished;
			// Main then closes the store, committing what it queued.
			return s.Run(ctx, *addr)
		}
	},
}
