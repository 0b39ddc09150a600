package ledger_test

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/ledger"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

var seedFlag = flag.Uint64("ledger.seed", 0, "seed for the randomised ledger storms (0: pick one and log it)")

// seed returns the seed of a randomised test, logging it so a failure can
// be rerun.
func seed(tb testing.TB) uint64 {
	tb.Helper()
	s := *seedFlag
	if s == 0 {
		s = rand.Uint64()
	}
	tb.Logf("seed %d (rerun with -ledger.seed=%d)", s, s)
	return s
}

// openRepo opens a SQLite store at path (":memory:" for a private one,
// "" for a file in a fresh temporary directory), closed when the test
// ends.
func openRepo(tb testing.TB, path string) *sqlite.Repo {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "ledger.db")
	}
	r, err := sqlite.Open(context.Background(), path, &sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := r.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return r
}

// stormKey is key i of a storm: what every process asking for it posts.
// A third are credits, and the debits add up to more than the credits,
// so the balance keeps coming back to near zero: many debits meet a
// balance too small for them, some of them a large enough one later,
// others never.
func stormKey(i int) (kind ledger.Kind, amount int64, requestID string) {
	requestID = "k" + strconv.Itoa(i)
	if i%3 == 0 {
		return ledger.Credit, int64(5 + i%11), requestID
	}
	return ledger.Debit, int64(1 + i%13), requestID
}

func stormRequest(user string, i int) ledger.Request {
	kind, amount, key := stormKey(i)
	return ledger.Request{User: user, Kind: kind, Amount: amount, RequestID: key, Note: "storm " + key}
}

// outcome is what one post of a storm got.
type outcome struct {
	Proc   int    `json:"proc"`
	Worker int    `json:"worker"`
	Key    int    `json:"key"`
	Kind   string `json:"kind"` // "appended", "duplicate", "insufficient" or "error"
	// Seq and ID are the entry's (appended, duplicate).
	Seq int64  `json:"seq,omitempty"`
	ID  string `json:"id,omitempty"`
	// Balance and Amount are the insufficient-funds error's.
	Balance int64  `json:"balance,omitempty"`
	Amount  int64  `json:"amount,omitempty"`
	Err     string `json:"err,omitempty"`
}

// stormSpec says what one process of a storm does.
type stormSpec struct {
	Proc    int    `json:"proc"`
	User    string `json:"user"`
	Keys    int    `json:"keys"`
	Workers int    `json:"workers"`
	Seed    uint64 `json:"seed"`
	// Shared makes the workers share one Ledger; otherwise each has its
	// own, and only the store's expected-seq check keeps them apart.
	Shared bool `json:"shared"`
}

// storm has spec.Workers goroutines each post every key, in an order of
// their own drawn from the seed, and reports each outcome through out.
func storm(ctx context.Context, r repo.Repo, spec stormSpec, out func(outcome)) {
	shared := ledger.New(r, nil)
	var wg sync.WaitGroup
	for w := range spec.Workers {
		l := shared
		if !spec.Shared {
			l = ledger.New(r, nil)
		}
		order := rand.New(rand.NewPCG(spec.Seed, uint64(spec.Proc*1000+w))).Perm(spec.Keys)
		wg.Go(func() {
			for _, i := range order {
				res, err := l.Post(ctx, stormRequest(spec.User, i))
				o := outcome{Proc: spec.Proc, Worker: w, Key: i}
				var insufficient *ledger.InsufficientFundsError
				switch {
				case err == nil:
					o.Kind, o.Seq, o.ID = res.Outcome.String(), res.Entry.Seq, res.Entry.ID
				case errors.As(err, &insufficient):
					o.Kind, o.Balance, o.Amount = "insufficient", insufficient.Balance, insufficient.Amount
				default:
					o.Kind, o.Err = "error", err.Error()
				}
				out(o)
			}
		})
	}
	wg.Wait()
}

// checkStorm reads the user's ledger straight from the log and checks it
// against the keys' definitions and what the posts were told:
//
//   - every entry is a key's, stored once, with the key's kind, amount
//     and note, at seq 1, 2, 3...;
//   - every entry's balance is the one before it (0 before the first)
//     plus or minus its amount, and never negative: no overdraft ever;
//   - every post that succeeded got the stored entry of its key, so each
//     key was applied once however many posts carried it;
//   - a key that no post applied is not stored, and every refusal for
//     want of funds quoted a balance below the amount asked;
//   - the ledger's balance is the last running balance.
func checkStorm(tb testing.TB, r repo.Repo, user string, keys int, outcomes []outcome) {
	tb.Helper()
	ctx := context.Background()
	stored := map[string]events.Event{}
	var balance, seq int64
	for e, err := range r.Events(ctx, ledger.StreamID(user), repo.Range{}) {
		if err != nil {
			tb.Fatal(err)
		}
		seq++
		if e.Seq != seq || e.Type != events.TypeLedgerEntry {
			tb.Fatalf("event %d of the ledger: seq %d, type %s", seq, e.Seq, e.Type)
		}
		if _, dup := stored[e.RequestID]; dup {
			tb.Fatalf("key %q stored twice (seq %d and %d)", e.RequestID, stored[e.RequestID].Seq, e.Seq)
		}
		stored[e.RequestID] = e
		i, err := strconv.Atoi(e.RequestID[1:])
		if err != nil || i < 0 || i >= keys {
			tb.Fatalf("seq %d: key %q is none of the storm's", e.Seq, e.RequestID)
		}
		kind, amount, _ := stormKey(i)
		gotKind, _ := e.ExtraString("kind")
		gotAmount, _ := e.ExtraInt("amount")
		note, _ := e.ExtraString("note")
		if gotKind != string(kind) || gotAmount != amount || note != "storm "+e.RequestID {
			tb.Fatalf("seq %d (key %s): kind %q amount %d note %q, want %q %d %q", e.Seq, e.RequestID, gotKind, gotAmount, note, kind, amount, "storm "+e.RequestID)
		}
		if kind == ledger.Credit {
			balance += amount
		} else {
			balance -= amount
		}
		running, ok := e.ExtraInt("balance")
		if !ok || running != balance || running < 0 {
			tb.Fatalf("seq %d (key %s, %s of %d): running balance %d (ok %v), want %d and never below 0",
				e.Seq, e.RequestID, kind, amount, running, ok, balance)
		}
	}
	applied := map[int]bool{}
	kinds := map[string]int{}
	for _, o := range outcomes {
		kinds[o.Kind]++
		key := "k" + strconv.Itoa(o.Key)
		switch o.Kind {
		case "appended", "duplicate":
			e, ok := stored[key]
			if !ok {
				tb.Fatalf("proc %d worker %d: key %s was %s, but it is not stored", o.Proc, o.Worker, key, o.Kind)
			}
			if o.Seq != e.Seq || o.ID != e.ID {
				tb.Fatalf("proc %d worker %d: key %s answered with seq %d id %s, stored as seq %d id %s", o.Proc, o.Worker, key, o.Seq, o.ID, e.Seq, e.ID)
			}
			applied[o.Key] = true
		case "insufficient":
			if _, amount, _ := stormKey(o.Key); o.Amount != amount || o.Balance >= amount || o.Balance < 0 {
				tb.Fatalf("proc %d worker %d: key %s refused with balance %d amount %d (its amount is %d)", o.Proc, o.Worker, key, o.Balance, o.Amount, amount)
			}
		default:
			tb.Fatalf("proc %d worker %d: key %s: %s", o.Proc, o.Worker, key, o.Err)
		}
	}
	for key := range stored {
		i, _ := strconv.Atoi(key[1:])
		if !applied[i] {
			tb.Errorf("key %s is stored, but no post was told it was applied", key)
		}
	}
	got, err := ledger.New(r, nil).Balance(ctx, user)
	if err != nil || got != balance {
		tb.Fatalf("Balance = %d, %v; the entries sum to %d", got, err, balance)
	}
	tb.Logf("%d posts (%d appended, %d duplicates, %d refused for want of funds), %d entries stored, final balance %d",
		len(outcomes), kinds["appended"], kinds["duplicate"], kinds["insufficient"], len(stored), balance)
}
