package postgres_test

import (
	"testing"

	"github.com/chatlog/chatlog/internal/storetest"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/repotest"
)

// TestConformance runs the backend conformance suite, each case in a
// schema of its own.
func TestConformance(t *testing.T) {
	b := storetest.Postgres(t)
	repotest.Run(t, func(t testing.TB) repo.Repo { return b.Open(t) })
}
