package sqlite_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/chatlog/chatlog/events"
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
	// A prefixed store on a file that another store, unprefixed, already
	// fills with events and turns under the ids and keys the suite uses:
	// anything that leaked between them would show. The other store's
	// file is made once and copied for each case.
	t.Run("TablePrefix", func(t *testing.T) {
		template := filepath.Join(t.TempDir(), "other.db")
		other := open(t, template)
		for _, conv := range []string{"a", "b", "c"} {
			for i := range 6 {
				e := events.Event{ConversationID: conv, Type: events.TypeUserMessage,
					RequestID: fmt.Sprintf("r%d", i), Content: events.NewText("another application's message")}
				if _, err := other.Append(t.Context(), e, repo.AppendOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			_, err := other.BeginTurn(t.Context(), repo.BeginTurn{UserMessage: events.Event{ConversationID: conv,
				Type: events.TypeUserMessage, RequestID: "u1", Content: events.NewText("another application's turn")}})
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := other.Close(); err != nil {
			t.Fatal(err)
		}
		filled, err := os.ReadFile(template)
		if err != nil {
			t.Fatal(err)
		}
		repotest.Run(t, func(t testing.TB) repo.Repo {
			path := filepath.Join(t.TempDir(), "shared.db")
			if err := os.WriteFile(path, filled, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := sqlite.Open(t.Context(), path, &sqlite.Options{TablePrefix: "suite_"})
			if err != nil {
				t.Fatalf("Open(%q, TablePrefix suite_): %v", path, err)
			}
			t.Cleanup(func() {
				if err := r.Close(); err != nil && !errors.Is(err, repo.ErrClosed) {
					t.Errorf("Close(%q): %v", path, err)
				}
			})
			return r
		})
	})
}

// open opens a repository and closes it when the test ends. The Close
// contract test closes it first, so ErrClosed from the second Close is
// fine.
func open(t testing.TB, path string) *sqlite.Repo {
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
