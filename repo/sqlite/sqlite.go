package sqlite

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/ext/fts5"
	"github.com/ncruces/go-sqlite3/vfs/memdb"

	"github.com/chatlog/chatlog/repo"
)

// Sync is the durability level of acknowledged appends.
type Sync string

// Sync levels (SQLite's PRAGMA synchronous in WAL mode).
const (
	// SyncFull fsyncs the WAL at every commit: an acknowledged append
	// survives power loss. Group commit makes it almost free.
	SyncFull Sync = "FULL"
	// SyncNormal fsyncs only at checkpoints: an acknowledged append
	// survives a process crash (kill -9) but maybe not power loss.
	SyncNormal Sync = "NORMAL"
)

// Options configures Open. A nil *Options means all defaults; each zero
// field takes its default.
type Options struct {
	// Sync is the durability level. Default SyncFull.
	Sync Sync
	// BusyTimeout is how long a connection waits for a lock held by
	// another process before failing. Default 30s.
	BusyTimeout time.Duration
	// ReadConns is the number of read connections. Default 4.
	ReadConns int
	// MaxBatch caps how many events one group commit writes. Default 1024.
	MaxBatch int
	// CacheSizeKiB is the writer's page cache. Default 65536 (64 MiB).
	CacheSizeKiB int
	// WALAutoCheckpoint is the WAL size in pages that triggers a
	// checkpoint. Default 10000.
	WALAutoCheckpoint int
	// PollInterval is how often Follow checks for events written by other
	// processes. Appends through this Repo wake followers at once.
	// Default 100ms.
	PollInterval time.Duration
	// Now is the clock for created_at and ids. Default time.Now.
	Now func() time.Time
	// Logger receives operational messages. Default slog.Default().
	Logger *slog.Logger
	// TablePrefix is put before the name of every table, index and view
	// the store creates (its migrations table too), so several
	// applications, or several stores of one, can share a database file:
	// each sees only its own events, read models and search. It must
	// match ^[A-Za-z_][A-Za-z0-9_]{0,31}$ and not start with "sqlite_";
	// include a separator ("app1_" makes app1_events). SQLite names are
	// case-insensitive: "App_" and "app_" name the same tables.
	// Default "": no prefix.
	TablePrefix string
}

// ErrInvalidOption is returned by Open for an Options field it cannot
// use; the message names the field.
var ErrInvalidOption = errors.New("sqlite: invalid option")

var tablePrefixRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,31}$`)

// checkTablePrefix refuses any prefix but a plain identifier: it is the
// one thing spliced into SQL (see render).
func checkTablePrefix(p string) error {
	if p == "" {
		return nil
	}
	if !tablePrefixRE.MatchString(p) {
		return fmt.Errorf("%w: TablePrefix %q must match %s", ErrInvalidOption, p, tablePrefixRE)
	}
	if strings.HasPrefix(strings.ToLower(p), "sqlite_") {
		return fmt.Errorf("%w: TablePrefix %q: names starting with sqlite_ are reserved by SQLite", ErrInvalidOption, p)
	}
	return nil
}

// render fills in the table prefix of a query or migration written with
// {p} before each table, index and view name.
func render(sql, prefix string) string {
	return strings.ReplaceAll(sql, "{p}", prefix)
}

func (o *Options) withDefaults() Options {
	var v Options
	if o != nil {
		v = *o
	}
	if v.Sync == "" {
		v.Sync = SyncFull
	}
	if v.BusyTimeout <= 0 {
		v.BusyTimeout = 30 * time.Second
	}
	if v.ReadConns <= 0 {
		v.ReadConns = 4
	}
	if v.MaxBatch <= 0 {
		v.MaxBatch = 1024
	}
	if v.CacheSizeKiB <= 0 {
		v.CacheSizeKiB = 65536
	}
	if v.WALAutoCheckpoint <= 0 {
		v.WALAutoCheckpoint = 10000
	}
	if v.PollInterval <= 0 {
		v.PollInterval = 100 * time.Millisecond
	}
	if v.Now == nil {
		v.Now = time.Now
	}
	if v.Logger == nil {
		v.Logger = slog.Default()
	}
	return v
}

// Repo is the SQLite event store. It is safe for concurrent use, and
// several processes may open the same file at once.
type Repo struct {
	opts   Options
	dsn    string
	memory bool // a process-private in-memory database (memdb)
	// path is the database file, "" for memory.
	path string

	// closeMu guards closed and the send side of queue: appenders hold it
	// shared while enqueueing, Close holds it exclusively to stop them.
	closeMu sync.RWMutex
	closed  bool
	queue   chan *request
	writer  *writer
	done    chan struct{} // closed when the writer goroutine has exited

	readers chan *conn
	notify  notifier
	stats   counters
}

var _ repo.Repo = (*Repo)(nil)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Open opens (creating if needed) the event store at path, applies pending
// migrations and starts the writer. path is a file name, or ":memory:" for
// a private in-memory database that lives until Close.
func Open(ctx context.Context, path string, opts *Options) (*Repo, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	o := opts.withDefaults()
	switch o.Sync {
	case SyncFull, SyncNormal:
	default:
		return nil, fmt.Errorf("sqlite: unknown sync level %q (want FULL or NORMAL)", o.Sync)
	}
	if err := checkTablePrefix(o.TablePrefix); err != nil {
		return nil, err
	}
	r := &Repo{opts: o}
	if path == ":memory:" {
		name := "chatlog-" + rand.Text()
		memdb.Create(name, nil)
		r.memory = true
		r.dsn = (&url.URL{Scheme: "file", Path: "/" + name, RawQuery: "vfs=memdb"}).String()
	} else {
		r.path = path
		r.dsn = (&url.URL{Scheme: "file", Path: path}).String()
		if !strings.HasPrefix(path, "/") {
			// url.URL would make "a.db" an opaque URI; keep it relative.
			r.dsn = "file:" + (&url.URL{Path: path}).EscapedPath()
		}
	}

	wc, err := r.openConn(ctx, true)
	if err != nil {
		r.dropMemory()
		return nil, err
	}
	if err := migrate(ctx, wc); err != nil {
		wc.close()
		r.dropMemory()
		return nil, err
	}
	r.readers = make(chan *conn, o.ReadConns)
	for range o.ReadConns {
		rc, err := r.openConn(ctx, false)
		if err != nil {
			wc.close()
			r.closeReaders()
			r.dropMemory()
			return nil, err
		}
		r.readers <- rc
	}
	r.queue = make(chan *request, 4*o.MaxBatch)
	r.done = make(chan struct{})
	r.writer = &writer{repo: r, c: wc, heads: make(map[string]int64)}
	go r.writer.run()
	if err := r.catchUp(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Repo) dropMemory() {
	if r.memory {
		memdb.Delete(strings.TrimPrefix(strings.SplitN(r.dsn, "?", 2)[0], "file:/"))
	}
}

// Close stops accepting appends, commits those already queued, and closes
// every connection. It waits for reads in progress to finish.
func (r *Repo) Close() error {
	r.closeMu.Lock()
	if r.closed {
		r.closeMu.Unlock()
		return nil
	}
	r.closed = true
	close(r.queue)
	r.closeMu.Unlock()
	<-r.done
	err := r.writer.c.close()
	if cerr := r.closeReaders(); err == nil {
		err = cerr
	}
	r.dropMemory()
	return err
}

func (r *Repo) closeReaders() error {
	var err error
	for range cap(r.readers) {
		c := <-r.readers
		if cerr := c.close(); err == nil {
			err = cerr
		}
	}
	return err
}

// conn is one SQLite connection with its prepared statements. A conn is
// used by one goroutine at a time.
type conn struct {
	db    *sqlite3.Conn
	stmts map[string]*sqlite3.Stmt // by query as written, before render
	// prefix is Options.TablePrefix, rendered into every statement.
	prefix string
	// packed maps the values the writer compressed in the open
	// transaction to their text (chatlog_inflate reads it); nil on
	// read connections.
	packed map[string]string
}

func (r *Repo) openConn(ctx context.Context, writer bool) (*conn, error) {
	db, err := sqlite3.OpenContext(ctx, r.dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", r.dsn, err)
	}
	c := &conn{db: db, stmts: make(map[string]*sqlite3.Stmt), prefix: r.opts.TablePrefix}
	if err := db.BusyTimeout(r.opts.BusyTimeout); err != nil {
		c.close()
		return nil, fmt.Errorf("sqlite: set busy timeout: %w", err)
	}
	// After the busy timeout: registering reads the schema, which may
	// wait for another process's lock.
	if err := fts5.Register(db); err != nil {
		c.close()
		return nil, fmt.Errorf("sqlite: register fts5: %w", err)
	}
	if err := RegisterFunctions(db); err != nil {
		c.close()
		return nil, fmt.Errorf("sqlite: register functions: %w", err)
	}
	if writer {
		c.packed = make(map[string]string)
		err := db.CreateFunction(fnInflate, 1, sqlite3.DETERMINISTIC|sqlite3.INNOCUOUS,
			func(ctx sqlite3.Context, arg ...sqlite3.Value) { inflateCached(c.packed, ctx, arg...) })
		if err != nil {
			c.close()
			return nil, fmt.Errorf("sqlite: register functions: %w", err)
		}
	}
	// Per-connection settings, set on every connection it opens.
	pragmas := []string{`PRAGMA foreign_keys = ON`, `PRAGMA temp_store = MEMORY`}
	if writer {
		if !r.memory {
			// WAL is persistent in the file; readers inherit it.
			pragmas = append(pragmas, `PRAGMA journal_mode = WAL`)
		}
		pragmas = append(pragmas,
			`PRAGMA synchronous = `+string(r.opts.Sync), // validated in Open
			`PRAGMA cache_size = -`+strconv.Itoa(r.opts.CacheSizeKiB),
			`PRAGMA wal_autocheckpoint = `+strconv.Itoa(r.opts.WALAutoCheckpoint),
		)
	} else {
		pragmas = append(pragmas, `PRAGMA cache_size = -8192`, `PRAGMA query_only = ON`)
	}
	for _, p := range pragmas {
		if err := execRetryBusy(ctx, db, p, r.opts.BusyTimeout); err != nil {
			c.close()
			return nil, fmt.Errorf("sqlite: %s: %w", p, err)
		}
	}
	return c, nil
}

// execRetryBusy runs a statement, retrying while the database is busy for
// up to timeout. Switching a new file to WAL takes an exclusive lock
// without calling the busy handler, so processes opening one fresh file
// together would otherwise fail at once with "database is locked".
func execRetryBusy(ctx context.Context, db *sqlite3.Conn, query string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err := db.Exec(query)
		if err == nil || !(errors.Is(err, sqlite3.BUSY) || errors.Is(err, sqlite3.LOCKED)) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// stmt returns the connection's prepared statement for query, reset and
// with bindings cleared.
func (c *conn) stmt(query string) (*sqlite3.Stmt, error) {
	if s, ok := c.stmts[query]; ok {
		return s, nil
	}
	s, _, err := c.db.Prepare(render(query, c.prefix))
	if err != nil {
		return nil, fmt.Errorf("sqlite: prepare: %w", err)
	}
	c.stmts[query] = s
	return s, nil
}

func (c *conn) close() error {
	for _, s := range c.stmts {
		s.Close()
	}
	return c.db.Close()
}

// read runs f on a read connection, interrupted when ctx is done.
func (r *Repo) read(ctx context.Context, f func(c *conn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.closeMu.RLock()
	if r.closed {
		r.closeMu.RUnlock()
		return repo.ErrClosed
	}
	var c *conn
	select {
	case c = <-r.readers:
	case <-ctx.Done():
		r.closeMu.RUnlock()
		return ctx.Err()
	}
	r.closeMu.RUnlock()
	defer func() { r.readers <- c }()
	old := c.db.SetInterrupt(ctx)
	defer c.db.SetInterrupt(old)
	err := f(c)
	if err != nil && ctx.Err() != nil && errors.Is(err, sqlite3.INTERRUPT) {
		return ctx.Err()
	}
	return err
}

// migrate applies the embedded migrations not yet recorded, each in its own
// IMMEDIATE transaction, so processes opening one file at once agree.
func migrate(ctx context.Context, c *conn) error {
	if err := c.db.Exec(render(qMigrationsTable, c.prefix)); err != nil {
		return fmt.Errorf("sqlite: create migrations table: %w", err)
	}
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	if err := refuseNewer(c, names); err != nil {
		return err
	}
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("sqlite: migration %s: name must start with its number", base)
		}
		body, err := migrationFiles.ReadFile(name)
		if err != nil {
			return err
		}
		if err := applyMigration(ctx, c, version, base, string(body)); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", base, err)
		}
	}
	return nil
}

// refuseNewer fails when the database was migrated by a newer chatlog:
// this one would misread what the newer schema stores (compressed
// payloads read as text, say) or write rows the newer one does not
// expect.
func refuseNewer(c *conn, names []string) error {
	known := 0
	for _, name := range names {
		if v, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(name, "migrations/"), "_", 2)[0]); err == nil {
			known = max(known, v)
		}
	}
	s, _, err := c.db.Prepare(render(qMigrationVersion, c.prefix))
	if err != nil {
		return err
	}
	defer s.Close()
	if !s.Step() {
		return cmpErr(s.Err(), "read migration version")
	}
	if applied := int(s.ColumnInt64(0)); applied > known {
		return fmt.Errorf("%w: the database's schema is version %d, newer than this chatlog's %d; use the chatlog that wrote it, or a newer one",
			ErrNewerSchema, applied, known)
	}
	return nil
}

// ErrNewerSchema is returned by Open for a database a newer chatlog
// migrated.
var ErrNewerSchema = errors.New("sqlite: database schema is newer than this build")

func applyMigration(ctx context.Context, c *conn, version int, name, body string) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	tx, err := c.db.BeginImmediate()
	if err != nil {
		return err
	}
	defer tx.End(&err)
	s, _, err := c.db.Prepare(render(qMigrationVersion, c.prefix))
	if err != nil {
		return err
	}
	defer s.Close()
	if !s.Step() {
		return cmpErr(s.Err(), "read migration version")
	}
	if int(s.ColumnInt64(0)) >= version {
		return s.Reset()
	}
	if err := s.Reset(); err != nil {
		return err
	}
	if err := c.db.Exec(render(body, c.prefix)); err != nil {
		return err
	}
	ins, _, err := c.db.Prepare(render(qMigrationRecord, c.prefix))
	if err != nil {
		return err
	}
	defer ins.Close()
	ins.BindInt64(1, int64(version))
	ins.BindText(2, name)
	ins.BindInt64(3, time.Now().UnixNano())
	return ins.Exec()
}

func cmpErr(err error, what string) error {
	if err == nil {
		err = errors.New("no row")
	}
	return fmt.Errorf("%s: %w", what, err)
}

// IntegrityCheck runs SQLite's integrity check on the database file and
// returns an error listing the problems when it does not answer "ok".
func (r *Repo) IntegrityCheck(ctx context.Context) error {
	return r.read(ctx, func(c *conn) error {
		s, err := c.stmt(qIntegrityCheck)
		if err != nil {
			return err
		}
		defer s.Reset()
		var problems []string
		for s.Step() {
			if msg := s.ColumnText(0); msg != "ok" {
				problems = append(problems, msg)
			}
		}
		if err := s.Err(); err != nil {
			return fmt.Errorf("sqlite: integrity check: %w", err)
		}
		if len(problems) > 0 {
			return fmt.Errorf("sqlite: integrity check failed: %s", strings.Join(problems, "; "))
		}
		return nil
	})
}

// notifier wakes followers of a conversation when its events commit.
type notifier struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
}

// wait returns a channel closed at the next commit to conversationID.
// Take it before reading, so a commit between the read and the wait is
// never missed.
func (n *notifier) wait(conversationID string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.chans == nil {
		n.chans = make(map[string]chan struct{})
	}
	ch, ok := n.chans[conversationID]
	if !ok {
		ch = make(chan struct{})
		n.chans[conversationID] = ch
	}
	return ch
}

func (n *notifier) wake(conversationIDs map[string]struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id := range conversationIDs {
		if ch, ok := n.chans[id]; ok {
			close(ch)
			delete(n.chans, id)
		}
	}
}

// counters are the store's running statistics.
type counters struct {
	appended   atomic.Int64
	duplicates atomic.Int64
	conflicts  atomic.Int64
	commits    atomic.Int64
	batched    atomic.Int64 // events written through group commits
	maxBatch   atomic.Int64
}

// Stats are running totals since Open.
type Stats struct {
	// Appended counts events written.
	Appended int64 `json:"appended"`
	// Duplicates counts retries answered with a stored event.
	Duplicates int64 `json:"duplicates"`
	// Conflicts counts keys reused with another payload.
	Conflicts int64 `json:"conflicts"`
	// Commits counts group-commit transactions.
	Commits int64 `json:"commits"`
	// MeanBatch is the mean number of requests per commit.
	MeanBatch float64 `json:"mean_batch"`
	// MaxBatch is the largest number of requests in one commit.
	MaxBatch int64 `json:"max_batch"`
}

// Stats returns the running totals.
func (r *Repo) Stats() Stats {
	s := Stats{
		Appended:   r.stats.appended.Load(),
		Duplicates: r.stats.duplicates.Load(),
		Conflicts:  r.stats.conflicts.Load(),
		Commits:    r.stats.commits.Load(),
		MaxBatch:   r.stats.maxBatch.Load(),
	}
	if s.Commits > 0 {
		s.MeanBatch = float64(r.stats.batched.Load()) / float64(s.Commits)
	}
	return s
}
