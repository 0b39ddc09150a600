package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// Options configures Open. A nil *Options means all defaults; each zero
// field takes its default.
type Options struct {
	// Schema is the schema that holds chatlog's tables; Open creates it
	// when it is missing. Default: the connection string's search_path
	// when it names one schema, else the server's current schema
	// (usually public).
	Schema string
	// MaxConns caps the pool's connections: one for each writer, the
	// others serve reads. The listener for other replicas' commits has a
	// connection of its own. Default 8 (at least Writers + 2).
	MaxConns int
	// MaxBatch caps how many events one group commit writes. Default 1024.
	MaxBatch int
	// Writers is how many writers group-commit in parallel, each on a
	// connection of its own, each taking the conversations of its share
	// of a hash (a request spanning several conversations goes to the
	// first one's writer and locks the others). A second writer overlaps
	// one commit's round trips and fsync with the next, and lets two
	// replicas writing the same conversations commit two shares at once
	// instead of taking turns. Default 2.
	Writers int
	// PollInterval is how often Follow reads the log when no notification
	// came: the fallback when a notification from another replica is
	// lost (its process died between commit and NOTIFY, or the listener
	// was reconnecting). Default 1s.
	PollInterval time.Duration
	// NoNotify turns LISTEN/NOTIFY off: followers then see other
	// replicas' events only by polling. With it on, each write
	// transaction NOTIFYs the conversations it touched, which makes
	// PostgreSQL take a global lock for the moment of commit: commits
	// that notify are serialised, a cost only at thousands of commits a
	// second (group commit keeps them far fewer).
	NoNotify bool
	// Now is the clock for created_at, ids and leases. Replicas sharing
	// a database compare each other's lease times, so their clocks must
	// agree (NTP) to well within a lease. Default time.Now.
	Now func() time.Time
	// Logger receives operational messages. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) withDefaults() Options {
	var v Options
	if o != nil {
		v = *o
	}
	if v.MaxConns <= 0 {
		v.MaxConns = 8
	}
	if v.MaxBatch <= 0 {
		v.MaxBatch = 1024
	}
	if v.Writers <= 0 {
		v.Writers = 2
	}
	if v.PollInterval <= 0 {
		v.PollInterval = time.Second
	}
	if v.Now == nil {
		v.Now = time.Now
	}
	if v.Logger == nil {
		v.Logger = slog.Default()
	}
	return v
}

// Repo is the PostgreSQL event store. It is safe for concurrent use, and
// any number of processes (replicas) may open the same database at once.
type Repo struct {
	opts   Options
	pool   *pgxpool.Pool
	schema string
	// instance tells this Repo's notifications from other replicas'.
	instance string

	// closeMu guards closed, the send side of the writers' queues and
	// ops: callers hold it shared while they register, Close
	// exclusively.
	closeMu sync.RWMutex
	closed  bool
	closing chan struct{} // closed by Close, ends waiting follows
	ops     sync.WaitGroup
	writers []*writer

	notify   notifier
	listener *listener
	// channel is the NOTIFY channel of the schema; "" with NoNotify.
	channel string
	stats   counters
}

var _ repo.Repo = (*Repo)(nil)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// IsURL reports whether dsn is a PostgreSQL connection URL
// (postgres://... or postgresql://...), the form the command line takes.
func IsURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value connection string, as libpq takes them), creates the schema
// and applies pending migrations, and starts the writer and the listener.
func Open(ctx context.Context, dsn string, opts *Options) (*Repo, error) {
	o := opts.withDefaults()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if o.Schema == "" {
		if sp := cfg.ConnConfig.RuntimeParams["search_path"]; plainIdent.MatchString(sp) {
			o.Schema = sp
		}
	}
	if o.Schema != "" {
		if !validIdent(o.Schema) {
			return nil, fmt.Errorf("postgres: schema name %q is not a valid identifier", o.Schema)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{o.Schema}.Sanitize()
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !ok {
		// The statements are written so that one plan serves every
		// argument (look-ups probe an index per key). With custom plans,
		// which the planner keeps choosing for array arguments of
		// varying length, planning took a third of the server's time
		// per commit.
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		// Operators find the store's sessions in pg_stat_activity.
		cfg.ConnConfig.RuntimeParams["application_name"] = "chatlog"
	}
	cfg.MaxConns = int32(max(o.MaxConns, o.Writers+2))
	cfg.MinConns = 1
	listenCfg := cfg.ConnConfig.Copy()

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	r := &Repo{opts: o, pool: pool, closing: make(chan struct{}), instance: events.NewID(time.Now())}
	if err := r.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if !o.NoNotify {
		r.channel = channelName(r.schema)
		r.listener = newListener(r, listenCfg)
		if err := r.listener.start(ctx); err != nil {
			pool.Close()
			return nil, err
		}
	}
	for range o.Writers {
		w := &writer{repo: r, queue: make(chan *request, 4*o.MaxBatch), done: make(chan struct{})}
		r.writers = append(r.writers, w)
		go w.run()
	}
	if err := r.catchUp(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// plainIdent is a schema name that needs no quoting, as a search_path
// naming one schema gives it.
var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

func validIdent(s string) bool {
	return s != "" && len(s) <= 63 && !strings.ContainsRune(s, 0)
}

// Close stops accepting appends, commits those already queued, waits for
// the calls in progress and closes every connection.
func (r *Repo) Close() error {
	r.closeMu.Lock()
	if r.closed {
		r.closeMu.Unlock()
		return nil
	}
	r.closed = true
	close(r.closing)
	for _, w := range r.writers {
		close(w.queue)
	}
	r.closeMu.Unlock()
	for _, w := range r.writers {
		<-w.done
	}
	r.ops.Wait()
	if r.listener != nil {
		r.listener.stop()
	}
	r.pool.Close()
	return nil
}

// settle learns the outcome of a transaction whose connection broke with
// COMMIT on its way: once the server has ended that connection's
// backend, the transaction is committed or aborted for good, and
// pg_xact_status says which. A backend still alive after a while (a
// connection cut on the client's side only) is terminated first. It
// tries for a minute, on fresh connections: the trouble that broke one
// connection may break the next.
func (r *Repo) settle(pid uint32, xid string) (bool, error) {
	if xid == "" {
		return false, errors.New("the transaction's id is unknown")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	terminateAt := time.Now().Add(5 * time.Second)
	for {
		status, err := r.xactStatus(ctx, pid, xid, &terminateAt)
		switch {
		case err == nil && (status == "committed" || status == "aborted"):
			r.stats.settled.Add(1)
			r.opts.Logger.Warn("postgres: a commit's connection broke; the server settled it", "xid", xid, "status", status)
			return status == "committed", nil
		case err == nil && status != "":
			return false, fmt.Errorf("transaction %s is %s", xid, status)
		case ctx.Err() != nil:
			return false, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// xactStatus returns the status of xid once the backend pid is gone, ""
// while it is alive, and an error when the connection it used failed.
func (r *Repo) xactStatus(ctx context.Context, pid uint32, xid string, terminateAt *time.Time) (string, error) {
	c, err := r.pool.Acquire(ctx)
	if err != nil {
		return "", err
	}
	defer c.Release()
	var alive int64
	if err := c.QueryRow(ctx, qBackendAlive, int32(pid)).Scan(&alive); err != nil {
		return "", err
	}
	if alive > 0 {
		if time.Now().After(*terminateAt) {
			if _, err := c.Exec(ctx, qTerminate, int32(pid)); err != nil {
				return "", err
			}
			*terminateAt = time.Now().Add(time.Minute)
		}
		return "", errors.New("the broken connection's backend is still alive")
	}
	var status *string
	if err := c.QueryRow(ctx, qXactStatus, xid).Scan(&status); err != nil {
		return "", err
	}
	if status == nil {
		return "unknown (too old)", nil
	}
	return *status, nil
}

// positions reads the positions of events committed by a transaction
// whose answer was lost, trying on fresh connections for a minute.
func (r *Repo) positions(staged []*storedEvent) (map[string]int64, error) {
	pos := make(map[string]int64, len(staged))
	if len(staged) == 0 {
		return pos, nil
	}
	ids := make([]string, len(staged))
	for i, s := range staged {
		ids[i] = s.ev.ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		err := func() error {
			rows, err := r.pool.Query(ctx, qPositions, ids)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id string
				var p int64
				if err := rows.Scan(&id, &p); err != nil {
					return err
				}
				pos[id] = p
			}
			return rows.Err()
		}()
		if err == nil {
			return pos, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// enter registers a call in progress; the caller must call r.ops.Done
// when it returns. It fails with ErrClosed after Close and with the
// context's error when ctx is done.
func (r *Repo) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.closeMu.RLock()
	defer r.closeMu.RUnlock()
	if r.closed {
		return repo.ErrClosed
	}
	r.ops.Add(1)
	return nil
}

// read runs f on a pooled connection. When the connection turns out to be
// broken (the server restarted, an operator ended the session), f runs
// again on another, so f must be safe to run twice: it sets its results
// afresh each time.
func (r *Repo) read(ctx context.Context, f func(c *pgxpool.Conn) error) error {
	if err := r.enter(ctx); err != nil {
		return err
	}
	defer r.ops.Done()
	for attempt := 1; ; attempt++ {
		c, err := r.pool.Acquire(ctx)
		if err != nil {
			return r.dbErr(ctx, "acquire a connection", err)
		}
		err = f(c)
		broken := err != nil && (c.Conn().IsClosed() || fatal(err))
		c.Release()
		if err == nil {
			return nil
		}
		if !broken || attempt == 3 || ctx.Err() != nil {
			return r.dbErr(ctx, "read", err)
		}
	}
}

// dbErr names the operation of a driver error, and reports the context's
// error instead when the context ended the operation.
func (r *Repo) dbErr(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && (errors.Is(err, ctxErr) || pgconn.Timeout(err) || sqlState(err) == codeQueryCanceled) {
		return ctxErr
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) || !strings.HasPrefix(err.Error(), "postgres: ") {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return err
}

// SQLSTATE codes the backend acts on. Errors are told apart by code,
// never by message text.
const (
	codeUniqueViolation    = "23505"
	codeSerialization      = "40001"
	codeDeadlock           = "40P01"
	codeQueryCanceled      = "57014"
	codeAdminShutdown      = "57P01"
	codeInFailedTxn        = "25P02"
	codeUndefinedTable     = "42P01"
	codeInsufficientPriv   = "42501"
	codeTooManyConnections = "53300"
)

// sqlState returns the SQLSTATE of a server error, "" for any other.
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// retryable reports whether a failed write transaction may simply be run
// again: its connection broke before it committed, or the server rolled
// it back because of another transaction (a deadlock, a serialization
// failure), or a unique index refused a row a concurrent transaction had
// just written, so a second run reads what that transaction stored.
func retryable(err error) bool {
	var lost *connLostError
	if errors.As(err, &lost) {
		return true
	}
	switch sqlState(err) {
	case codeDeadlock, codeSerialization, codeUniqueViolation:
		return true
	}
	return false
}

// lockKey is the advisory lock key of name within this schema: tests and
// deployments that keep several schemas in one database do not share
// locks.
func (r *Repo) lockKey(kind, name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(r.schema))
	h.Write([]byte{0})
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// writeLockKey is the lock every write transaction holds shared and a
// read model rebuild holds exclusively.
func (r *Repo) writeLockKey() int64 { return r.lockKey("write", "") }

// convLockKeys returns the sorted, distinct lock keys of conversations.
func (r *Repo) convLockKeys(convs []string) []int64 {
	keys := make([]int64, 0, len(convs))
	for _, c := range convs {
		keys = append(keys, r.lockKey("conversation", c))
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	out := keys[:0]
	for i, k := range keys {
		if i == 0 || k != keys[i-1] {
			out = append(out, k)
		}
	}
	return out
}

// migrate creates the schema when missing and applies the embedded
// migrations not yet recorded, each in its own transaction under an
// advisory lock, so replicas opening one database at once agree.
func (r *Repo) migrate(ctx context.Context) error {
	c, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer c.Release()
	conn := c.Conn()
	if r.opts.Schema != "" {
		r.schema = r.opts.Schema
	}
	migrateKey := r.lockKey("migrate", "")
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qLockOne, migrateKey); err != nil {
			return err
		}
		if r.opts.Schema != "" {
			if _, err := tx.Exec(ctx, qCreateSchema+pgx.Identifier{r.opts.Schema}.Sanitize()); err != nil {
				return err
			}
		}
		var schema *string
		if err := tx.QueryRow(ctx, qCurrentSchema).Scan(&schema); err != nil {
			return err
		}
		if schema == nil {
			return errors.New("no schema to create the tables in: the search_path names none that exists (set Options.Schema, or search_path in the connection string)")
		}
		if r.schema != "" && *schema != r.schema {
			return fmt.Errorf("the search_path resolves to schema %q, not %q", *schema, r.schema)
		}
		r.schema = *schema
		_, err := tx.Exec(ctx, qMigrationsTable)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: prepare schema: %w", err)
	}
	if err := refuseNewer(ctx, conn); err != nil {
		return err
	}
	// The key above was computed before the schema was known when the
	// connection string chose it; from here on every key includes it.
	migrateKey = r.lockKey("migrate", "")
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("postgres: migration %s: name must start with its number", base)
		}
		body, err := migrationFiles.ReadFile(name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, qLockOne, migrateKey); err != nil {
				return err
			}
			var applied int
			if err := tx.QueryRow(ctx, qMigrationVersion).Scan(&applied); err != nil {
				return err
			}
			if applied >= version {
				return nil
			}
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, qMigrationRecord, version, base, time.Now().UnixNano())
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: migration %s: %w", base, err)
		}
	}
	return nil
}

// ErrNewerSchema is returned by Open for a schema a newer chatlog
// migrated.
var ErrNewerSchema = errors.New("postgres: database schema is newer than this build")

// knownMigration is the newest migration this build has.
func knownMigration() int {
	names, _ := fs.Glob(migrationFiles, "migrations/*.sql")
	known := 0
	for _, name := range names {
		if v, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(name, "migrations/"), "_", 2)[0]); err == nil {
			known = max(known, v)
		}
	}
	return known
}

// refuseNewer fails when a newer chatlog migrated the schema: this one
// would misread what the newer schema stores, or write rows it does not
// expect. Replicas being upgraded one by one meet it too: the old ones
// stop at their next Open rather than write beside the new.
func refuseNewer(ctx context.Context, conn *pgx.Conn) error {
	var applied int
	if err := conn.QueryRow(ctx, qMigrationVersion).Scan(&applied); err != nil {
		return fmt.Errorf("postgres: read migration version: %w", err)
	}
	if known := knownMigration(); applied > known {
		return fmt.Errorf("%w: the schema is version %d, newer than this chatlog's %d; use the chatlog that wrote it, or a newer one",
			ErrNewerSchema, applied, known)
	}
	return nil
}

// Schema returns the schema that holds the store's tables.
func (r *Repo) Schema() string { return r.schema }

// IntegrityCheck checks what the server does not check by itself: that
// every index of the store's tables is valid (an interrupted REINDEX
// CONCURRENTLY leaves one that is not) and that every migration this
// code knows is applied. It returns an error listing the problems.
func (r *Repo) IntegrityCheck(ctx context.Context) error {
	var problems []string
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		problems = nil
		rows, err := c.Query(ctx, qInvalidIndexes)
		if err != nil {
			return err
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, n := range names {
			problems = append(problems, fmt.Sprintf("index %s is not valid (rebuild it with REINDEX)", n))
		}
		var applied int
		if err := c.QueryRow(ctx, qMigrationVersion).Scan(&applied); err != nil {
			return err
		}
		if known := knownMigration(); applied != known {
			problems = append(problems, fmt.Sprintf("schema at migration %d, this code knows %d", applied, known))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("postgres: integrity check failed: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Setting returns the value of a server setting for the store's
// sessions (synchronous_commit, for one).
func (r *Repo) Setting(ctx context.Context, name string) (string, error) {
	var v string
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, qSetting, name).Scan(&v)
	})
	return v, err
}

// Size returns the bytes the store's tables and their indexes take.
func (r *Repo) Size(ctx context.Context) (int64, error) {
	var n int64
	err := r.read(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, qSize).Scan(&n)
	})
	return n, err
}

// DropSchema drops a schema and everything in it, as a clean-up for
// scratch stores (benchmarks, tests). It connects with dsn.
func DropSchema(ctx context.Context, dsn, schema string) error {
	if !validIdent(schema) {
		return fmt.Errorf("postgres: schema name %q is not a valid identifier", schema)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, qDropSchema+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("postgres: drop schema %s: %w", schema, err)
	}
	return nil
}

// WithSchema returns dsn with its search_path set to schema, so that Open
// keeps the store there (and creates the schema when it is missing).
func WithSchema(dsn, schema string) (string, error) {
	if !plainIdent.MatchString(schema) {
		return "", fmt.Errorf("postgres: schema name %q must be lower-case letters, digits and underscores", schema)
	}
	if !IsURL(dsn) {
		return dsn + " search_path=" + schema, nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// counters are the store's running statistics.
type counters struct {
	appended   atomic.Int64
	duplicates atomic.Int64
	conflicts  atomic.Int64
	commits    atomic.Int64
	batched    atomic.Int64 // requests written through group commits
	maxBatch   atomic.Int64
	retries    atomic.Int64
	settled    atomic.Int64
	notified   atomic.Int64
	heard      atomic.Int64
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
	// Retries counts write transactions run again after the server
	// rolled them back (deadlock, serialization failure, a row another
	// replica had just written).
	Retries int64 `json:"retries"`
	// Settled counts commits whose connection broke before the answer
	// came, and whose outcome was then read from the server.
	Settled int64 `json:"settled"`
	// Notified counts commits that notified other replicas; Heard the
	// notifications received from them.
	Notified int64 `json:"notified"`
	Heard    int64 `json:"heard"`
	// Conns, IdleConns and AcquireWaits describe the connection pool:
	// its connections, those idle, and how many acquisitions had to
	// wait for one.
	Conns        int32 `json:"conns"`
	IdleConns    int32 `json:"idle_conns"`
	AcquireWaits int64 `json:"acquire_waits"`
}

// Stats returns the running totals.
func (r *Repo) Stats() Stats {
	ps := r.pool.Stat()
	s := Stats{
		Appended:     r.stats.appended.Load(),
		Duplicates:   r.stats.duplicates.Load(),
		Conflicts:    r.stats.conflicts.Load(),
		Commits:      r.stats.commits.Load(),
		MaxBatch:     r.stats.maxBatch.Load(),
		Retries:      r.stats.retries.Load(),
		Settled:      r.stats.settled.Load(),
		Notified:     r.stats.notified.Load(),
		Heard:        r.stats.heard.Load(),
		Conns:        ps.TotalConns(),
		IdleConns:    ps.IdleConns(),
		AcquireWaits: ps.EmptyAcquireCount(),
	}
	if s.Commits > 0 {
		s.MeanBatch = float64(r.stats.batched.Load()) / float64(s.Commits)
	}
	return s
}
