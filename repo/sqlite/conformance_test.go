package sqlite_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/repotest"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// TestConformance runs the backend conformance suite on an in-memory
// database and on a file (WAL behaviour only shows on a file).
func TestConformance(t *testing.T) {
	t.Run("Memory", func(t *testing.T) {
		repotest.Run(t, func(t testing.TB) repo.Repo { return open(t, ":memory:") })
	})
	t.Run("File", func(t *testing.T) {
		repotest.Run(t, func(t testing.TB) repo.Repo {
			return open(t, filepath.Join(t.TempDir(), "chatlog.db"))
		})
	})
}

// open opens a repository and closes it when the test ends. The Close
// contract test closes it first, so ErrClosed from the second Close is
// fine.
func open(t testing.TB, path string) repo.Repo {
	t.Helper()
	r, err := sqlite.Open(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil && !errors.Is(err, repo.ErrClosed) {
			t.Errorf("Close(%q): %v", path, err)
		}
	})
	return r
}
