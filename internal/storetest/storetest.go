// Package storetest gives tests the stores they run against: SQLite
// always, and PostgreSQL when $CHATLOG_TEST_POSTGRES names a server, so
// that every test written for one backend runs for both.
//
//	func TestSomething(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, b storetest.Backend) {
//			r := b.Open(t)
//			...
//		})
//	}
//
// Each store is fresh and isolated: a file in a temporary directory, or a
// schema of its own in the PostgreSQL database, dropped when the test
// ends. Without $CHATLOG_TEST_POSTGRES the PostgreSQL runs are skipped
// with a message naming the variable.
package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/postgres"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// EnvPostgres is the variable naming the PostgreSQL database the tests
// use, as a connection URL (postgres://user@host:port/db?sslmode=disable).
// Each test makes a schema of its own in it.
const EnvPostgres = "CHATLOG_TEST_POSTGRES"

// Store is what the backends have in common beyond repo.Repo.
type Store interface {
	repo.Repo
	// IntegrityCheck checks the store's files or indexes.
	IntegrityCheck(ctx context.Context) error
}

// Backend makes stores of one kind.
type Backend struct {
	// Name is "sqlite" or "postgres", the subtest's name in Run.
	Name string
	// dsn is the PostgreSQL server's database ("" for SQLite).
	dsn string
}

// SQLite is the SQLite backend: stores are files.
var SQLite = Backend{Name: "sqlite"}

// Postgres returns the PostgreSQL backend, or skips tb with a message
// when $CHATLOG_TEST_POSTGRES is not set.
func Postgres(tb testing.TB) Backend {
	tb.Helper()
	dsn := os.Getenv(EnvPostgres)
	if dsn == "" {
		tb.Skipf("PostgreSQL tests skipped: set %s to a database URL (postgres://user@host:port/db?sslmode=disable) to run them; .ci/run starts a server and sets it", EnvPostgres)
	}
	return Backend{Name: "postgres", dsn: dsn}
}

// Run runs f as one subtest per backend: "sqlite", then "postgres"
// (skipped without $CHATLOG_TEST_POSTGRES).
func Run(t *testing.T, f func(t *testing.T, b Backend)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { f(t, SQLite) })
	t.Run("postgres", func(t *testing.T) { f(t, Postgres(t)) })
}

// New returns the location of a fresh, empty store that is removed when
// tb ends: a file path for SQLite; for PostgreSQL the server's URL with
// search_path naming a new schema, which the first Open creates. Any
// process can open it with OpenLocation.
func (b Backend) New(tb testing.TB) string {
	tb.Helper()
	if b.dsn == "" {
		return filepath.Join(tb.TempDir(), "chatlog.db")
	}
	schema := "t_" + strings.ToLower(rand.Text()[:16])
	loc, err := postgres.WithSchema(b.dsn, schema)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := postgres.DropSchema(ctx, b.dsn, schema); err != nil {
			tb.Errorf("drop the test schema: %v", err)
		}
	})
	return loc
}

// Open opens a fresh store, closed when tb ends.
func (b Backend) Open(tb testing.TB) Store {
	tb.Helper()
	return OpenAt(tb, b.New(tb))
}

// OpenScratch opens a fresh store for a test that needs neither a file
// nor another process: a private in-memory SQLite database (faster than
// a file), or a fresh PostgreSQL schema. Closed when tb ends.
func (b Backend) OpenScratch(tb testing.TB) Store {
	tb.Helper()
	if b.dsn == "" {
		return OpenAt(tb, ":memory:")
	}
	return b.Open(tb)
}

// OpenAt opens the store at loc (as New returned it), closed when tb
// ends; a second Close by the test itself is fine.
func OpenAt(tb testing.TB, loc string) Store {
	tb.Helper()
	r, err := OpenLocation(context.Background(), loc)
	if err != nil {
		tb.Fatalf("open %s: %v", loc, err)
	}
	tb.Cleanup(func() {
		if err := r.Close(); err != nil && !errors.Is(err, repo.ErrClosed) {
			tb.Errorf("close %s: %v", loc, err)
		}
	})
	return r
}

// OpenLocation opens a store of either backend with default options: a
// postgres:// URL opens PostgreSQL, anything else is a SQLite file. It is
// what child processes of a test call with the location they were given.
func OpenLocation(ctx context.Context, loc string) (Store, error) {
	if postgres.IsURL(loc) {
		return postgres.Open(ctx, loc, nil)
	}
	return sqlite.Open(ctx, loc, nil)
}

// Describe names a location for test logs without its credentials.
func Describe(loc string) string {
	if !postgres.IsURL(loc) {
		return loc
	}
	if i := strings.Index(loc, "search_path="); i >= 0 {
		return "postgres schema " + strings.SplitN(loc[i+len("search_path="):], "&", 2)[0]
	}
	return fmt.Sprintf("postgres %s", loc)
}
