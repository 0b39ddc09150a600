// Command chatlog is the command line of the chatlog event store: append
// events, ingest and import JSONL logs, record streamed replies exactly
// once (turn, delta, finish, compact), replay and export conversations.
//
// Usage:
//
//	chatlog [--db PATH|URL] [--table-prefix P] COMMAND [flags] [args]
//
// --db (or $CHATLOG_DB) is a SQLite file, chatlog.db by default, or a
// PostgreSQL URL (postgres://...), which every command and the server
// take alike.
//
// Run "chatlog --help" for the commands and "chatlog COMMAND --help" for a
// command's flags and an example. The contract (names, flags, output
// shapes, exit codes) is fixed in INTERFACE.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := NewMain().Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
