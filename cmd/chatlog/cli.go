package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/postgres"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// Exit codes, as INTERFACE.md fixes them.
const (
	exitOK       = 0
	exitFailure  = 1 // runtime error or rejected input
	exitUsage    = 2 // bad command line
	exitConflict = 3 // idempotency or seq conflict, stale attempt
	exitInFlight = 4 // the turn is in flight elsewhere (a live lease)
)

// defaultDB is the database used without --db or $CHATLOG_DB.
const defaultDB = "chatlog.db"

// store is what the commands need of the event store: the repository and
// the integrity check of the backend behind it.
type store interface {
	repo.Repo
	// IntegrityCheck checks the database file (SQLite) or the indexes
	// and schema version (PostgreSQL).
	IntegrityCheck(ctx context.Context) error
}

// openStore opens the store --db names: a postgres:// or postgresql://
// URL selects PostgreSQL, anything else is a SQLite file (":memory:" a
// throw-away one), whose tables may carry a prefix. Every command and the
// server open their store here.
func openStore(ctx context.Context, db, tablePrefix string) (store, error) {
	if postgres.IsURL(db) {
		if tablePrefix != "" {
			return nil, usageErr("--table-prefix (or $CHATLOG_TABLE_PREFIX) names tables in a SQLite file; on PostgreSQL give each application a schema of its own (?search_path=NAME in the URL)")
		}
		return postgres.Open(ctx, db, nil)
	}
	return sqlite.Open(ctx, db, &sqlite.Options{TablePrefix: tablePrefix})
}

// dbName names a --db value in messages: a URL without its password.
func dbName(db string) string {
	if postgres.IsURL(db) {
		if u, err := url.Parse(db); err == nil {
			return u.Redacted()
		}
		return "the PostgreSQL database"
	}
	return db
}

// Main is the chatlog program. Its streams and environment are fields so
// tests run it in process.
type Main struct {
	// Stdin is read by commands given "-" (or no file) as input.
	Stdin io.Reader
	// Stdout receives the commands' JSON output.
	Stdout io.Writer
	// Stderr receives errors, one line each, and progress on a terminal.
	Stderr io.Writer
	// Getenv looks up environment variables ($CHATLOG_DB,
	// $CHATLOG_TABLE_PREFIX); nil means os.Getenv.
	Getenv func(string) string
}

// NewMain returns a Main wired to the process's streams and environment.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// command is one entry of the command table. setup declares the
// command's flags on fs and returns the function that runs it with the
// parsed flags and the positional arguments.
type command struct {
	name    string
	args    string // synopsis after the name, flags and positionals
	summary string // one line, for the command list
	example string
	setup   func(fs *flag.FlagSet) runFunc
	// positional commands take arguments after their flags; for the
	// others the dispatcher refuses any.
	positional bool
}

// runFunc runs a command. Its error decides the exit code (see exitCode).
type runFunc func(ctx context.Context, env *env, args []string) error

// commands is the command table, in the order "chatlog --help" lists it.
// A new command is one more *command: its flags declared in setup, its
// logic in a library package, errors mapped to exit codes by exitCode.
var commands = []*command{
	appendCommand,
	ingestCommand,
	turnCommand,
	deltaCommand,
	finishCommand,
	compactCommand,
	replayCommand,
	messagesCommand,
	lsCommand,
	searchCommand,
	showCommand,
	forkCommand,
	startCommand,
	endCommand,
	reopenCommand,
	titleCommand,
	resolveCommand,
	systemCommand,
	popCommand,
	clearCommand,
	deleteCommand,
	pruneCommand,
	usageCommand,
	currentCommand,
	ledgerCommand,
	exportCommand,
	importCommand,
	rebuildCommand,
	verifyCommand,
	statsCommand,
	serveCommand,
	demoCommand,
	benchCommand,
}

func lookupCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// env is what a running command uses: the streams, and the store, opened
// on first use.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string // Main.Getenv, or os.Getenv
	dbPath         string
	tablePrefix    string // --table-prefix: sqlite.Options.TablePrefix
	r              store
}

// repo opens the database on first use.
func (e *env) repo(ctx context.Context) (repo.Repo, error) {
	if e.r == nil {
		r, err := openStore(ctx, e.dbPath, e.tablePrefix)
		if errors.Is(err, sqlite.ErrInvalidOption) {
			return nil, usageErr("--table-prefix (or $CHATLOG_TABLE_PREFIX): %w", err)
		}
		if err != nil {
			return nil, fmt.Errorf("open database %s: %w", dbName(e.dbPath), err)
		}
		e.r = r
	}
	return e.r, nil
}

// close closes the database if it was opened.
func (e *env) close() error {
	if e.r == nil {
		return nil
	}
	err := e.r.Close()
	e.r = nil
	if err != nil {
		return fmt.Errorf("close database %s: %w", dbName(e.dbPath), err)
	}
	return nil
}

// Run runs the command line args (without the program name) and returns
// the exit code: 0 success, 1 runtime error or rejected input, 2 usage
// error, 3 conflict, 4 turn in flight elsewhere.
func (m *Main) Run(ctx context.Context, args []string) int {
	getenv := m.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	dbDefault := defaultDB
	if v := getenv("CHATLOG_DB"); v != "" {
		dbDefault = v
	}

	global := flag.NewFlagSet("chatlog", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	dbPath := global.String("db", dbDefault, "")
	tablePrefix := global.String("table-prefix", getenv("CHATLOG_TABLE_PREFIX"), "")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			m.usage(m.Stdout)
			return exitOK
		}
		return m.fail("chatlog", usageErr("%s (run 'chatlog --help')", flagError(err)))
	}
	rest := global.Args()
	if len(rest) == 0 {
		return m.fail("chatlog", usageErr("no command given (run 'chatlog --help' for the list)"))
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		if len(rest) == 0 {
			m.usage(m.Stdout)
			return exitOK
		}
		name, rest = rest[0], []string{"--help"}
	}
	cmd := lookupCommand(name)
	if cmd == nil {
		return m.fail("chatlog", usageErr("unknown command %q (run 'chatlog --help' for the list)", name))
	}

	prog := "chatlog " + cmd.name
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := cmd.setup(fs)
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			commandUsage(m.Stdout, cmd, fs)
			return exitOK
		}
		return m.fail(prog, usageErr("%s (run '%s --help')", flagError(err), prog))
	}

	e := &env{stdin: m.Stdin, stdout: m.Stdout, stderr: m.Stderr, getenv: getenv, dbPath: *dbPath, tablePrefix: *tablePrefix}
	var err error
	if args := fs.Args(); len(args) > 0 && !cmd.positional {
		err = usageErr("unexpected argument %q", args[0])
	} else {
		err = run(ctx, e, args)
	}
	if cerr := e.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return m.fail(prog, err)
	}
	return exitOK
}

// flagError is a flag parsing error with flags spelt as the help spells
// them: "--name" rather than the flag package's "-name".
func flagError(err error) string {
	msg := err.Error()
	msg = strings.Replace(msg, ": -", ": --", 1)
	return strings.Replace(msg, " flag -", " flag --", 1)
}

// fail reports err on stderr as one line and returns its exit code.
func (m *Main) fail(prog string, err error) int {
	var ee *exitError
	if !errors.As(err, &ee) || ee.err != nil {
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
		fmt.Fprintf(m.Stderr, "%s: %s\n", prog, msg)
	}
	return exitCode(err)
}

// exitError is an error with a chosen exit code. With a nil err the
// command has already reported what went wrong and only the code is left.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErr is a usage error: exit code 2.
func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// exitCode maps an error to the exit code INTERFACE.md fixes for it.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, repo.ErrIdempotencyConflict), errors.Is(err, repo.ErrSeqConflict),
		errors.Is(err, repo.ErrStaleAttempt):
		return exitConflict
	case errors.Is(err, dedupe.ErrInFlight):
		return exitInFlight
	}
	return exitFailure
}

// usage writes the program's help.
func (m *Main) usage(w io.Writer) {
	var b strings.Builder
	b.WriteString(`chatlog: an event-sourced chat log with exactly-once ingestion.

Usage:
  chatlog [--db PATH|URL] [--table-prefix P] COMMAND [flags] [args]

Commands:
`)
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintf(&b, `
Global flags (before the command):
  --db PATH|URL      the database: a SQLite file (default %s, or $CHATLOG_DB; ":memory:" for a
                     throw-away run), or a PostgreSQL URL, postgres://user:pass@host:5432/db
                     (add ?search_path=SCHEMA to keep the tables in a schema of their own)
  --table-prefix P   put P before the store's table names (default none, or $CHATLOG_TABLE_PREFIX),
                     so several applications share one SQLite file, each seeing only its own data;
                     letters, digits and _ (not first a digit), at most 32, e.g. app1_
                     (on PostgreSQL, give each application a schema instead)

Exit codes: 0 success, 1 runtime error or rejected input, 2 usage error,
3 conflict (a key reused with another payload, a seq mismatch, a stale attempt),
4 the turn is in flight elsewhere (another attempt holds a live lease).
Run 'chatlog COMMAND --help' for a command's flags and an example.
`, defaultDB)
	io.WriteString(w, b.String())
}

// commandUsage writes a command's help: synopsis, summary, flags, example.
func commandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage:\n  chatlog [--db PATH|URL] %s %s\n\n%s\n", c.name, c.args, c.summary)
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	if len(flags) > 0 {
		b.WriteString("\nFlags:\n")
		names := make([]string, len(flags))
		width := 0
		for i, f := range flags {
			arg, _ := flag.UnquoteUsage(f)
			names[i] = "--" + f.Name
			if arg != "" {
				names[i] += " " + arg
			}
			width = max(width, len(names[i]))
		}
		for i, f := range flags {
			_, text := flag.UnquoteUsage(f)
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				text += fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(&b, "  %-*s  %s\n", width, names[i], text)
		}
	}
	fmt.Fprintf(&b, "\nExample:\n  %s\n", c.example)
	io.WriteString(w, b.String())
}
