package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	sqlite3 "github.com/ncruces/go-sqlite3"

	"github.com/chatlog/chatlog/repo/sqlite"
)

// TestOpen_NewerSchema: a database migrated by a newer chatlog is refused
// instead of being misread.
func TestOpen_NewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "newer.db")
	r, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	db, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := sqlite.Open(ctx, path, nil); !errors.Is(err, sqlite.ErrNewerSchema) {
		t.Fatalf("Open of a newer database = %v, want ErrNewerSchema", err)
	}
}
