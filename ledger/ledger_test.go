package ledger_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/ledger"
	"github.com/chatlog/chatlog/repo"
)

// post posts req and fails the test on an error.
func post(tb testing.TB, l *ledger.Ledger, req ledger.Request) ledger.Result {
	tb.Helper()
	res, err := l.Post(context.Background(), req)
	if err != nil {
		tb.Fatalf("Post(%+v): %v", req, err)
	}
	return res
}

func wantBalance(tb testing.TB, l *ledger.Ledger, user string, want int64) {
	tb.Helper()
	got, err := l.Balance(context.Background(), user)
	if err != nil || got != want {
		tb.Fatalf("Balance(%q) = %d, %v; want %d", user, got, err, want)
	}
}

func wantHead(tb testing.TB, r repo.Repo, user string, want int64) {
	tb.Helper()
	got, err := r.Head(context.Background(), ledger.StreamID(user))
	if err != nil || got != want {
		tb.Fatalf("head of %q's ledger = %d, %v; want %d", user, got, err, want)
	}
}

func TestLedger_Post(t *testing.T) {
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		r := openRepo(t, ":memory:")
		l := ledger.New(r, nil)
		res := post(t, l, ledger.Request{User: "alice", Kind: ledger.Credit, Amount: 100, RequestID: "topup-1", Note: "card 4242"})
		if res.Duplicate() || res.Outcome != repo.Appended {
			t.Fatalf("first credit: outcome %v", res.Outcome)
		}
		e := res.Entry
		if e.User != "alice" || e.Kind != ledger.Credit || e.Amount != 100 || e.Balance != 100 || e.Note != "card 4242" ||
			e.RequestID != "topup-1" || e.Seq != 1 || e.ID == "" || e.CreatedAt.IsZero() {
			t.Fatalf("entry %+v", e)
		}
		res = post(t, l, ledger.Request{User: "alice", Kind: ledger.Debit, Amount: 30, RequestID: "turn-7"})
		if res.Entry.Balance != 70 || res.Entry.Seq != 2 || res.Entry.Kind != ledger.Debit || res.Entry.Note != "" {
			t.Fatalf("debit entry %+v", res.Entry)
		}
		// A debit of the whole balance leaves exactly 0.
		res = post(t, l, ledger.Request{User: "alice", Kind: ledger.Debit, Amount: 70, RequestID: "turn-8"})
		if res.Entry.Balance != 0 {
			t.Fatalf("debit to zero: balance %d", res.Entry.Balance)
		}
		wantBalance(t, l, "alice", 0)

		// The log holds the entries as ledger_entry events of alice's
		// account stream, the running balance in each.
		var got []string
		for e, err := range r.Events(ctx, "~ledger/alice", repo.Range{}) {
			if err != nil {
				t.Fatal(err)
			}
			kind, _ := e.ExtraString("kind")
			amount, _ := e.ExtraInt("amount")
			balance, _ := e.ExtraInt("balance")
			got = append(got, string(e.Type)+" "+kind+" "+e.RequestID+" "+itoa(amount)+" -> "+itoa(balance))
		}
		want := []string{
			"ledger_entry credit topup-1 100 -> 100",
			"ledger_entry debit turn-7 30 -> 70",
			"ledger_entry debit turn-8 70 -> 0",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("Replay", func(t *testing.T) {
		r := openRepo(t, ":memory:")
		l := ledger.New(r, nil)
		credit := ledger.Request{User: "bob", Kind: ledger.Credit, Amount: 50, RequestID: "c1", Note: "welcome"}
		first := post(t, l, credit)
		post(t, l, ledger.Request{User: "bob", Kind: ledger.Debit, Amount: 20, RequestID: "d1"})
		// The retry comes after the balance moved on: its stored entry
		// (balance 50) differs from what applying it now would write,
		// yet it is the same request.
		again := post(t, l, credit)
		if !again.Duplicate() || again.Entry != first.Entry {
			t.Fatalf("retry: outcome %v entry %+v, want the stored %+v", again.Outcome, again.Entry, first.Entry)
		}
		// A retry from another Ledger (another process) is the same.
		if again := post(t, ledger.New(r, nil), credit); !again.Duplicate() || again.Entry != first.Entry {
			t.Fatalf("retry through another Ledger: %v %+v", again.Outcome, again.Entry)
		}
		wantHead(t, r, "bob", 2)
		wantBalance(t, l, "bob", 30)
	})

	t.Run("ErrIdempotencyConflict", func(t *testing.T) {
		r := openRepo(t, ":memory:")
		l := ledger.New(r, nil)
		stored := post(t, l, ledger.Request{User: "carol", Kind: ledger.Credit, Amount: 40, RequestID: "k", Note: "n"})
		for name, req := range map[string]ledger.Request{
			"Amount": {User: "carol", Kind: ledger.Credit, Amount: 41, RequestID: "k", Note: "n"},
			"Kind":   {User: "carol", Kind: ledger.Debit, Amount: 40, RequestID: "k", Note: "n"},
			"Note":   {User: "carol", Kind: ledger.Credit, Amount: 40, RequestID: "k", Note: "other"},
		} {
			t.Run(name, func(t *testing.T) {
				_, err := l.Post(ctx, req)
				if !errors.Is(err, repo.ErrIdempotencyConflict) {
					t.Fatalf("Post = %v, want ErrIdempotencyConflict", err)
				}
				var conflict *repo.ConflictError
				if !errors.As(err, &conflict) || conflict.Key != "k" {
					t.Fatalf("errors.As *repo.ConflictError: %v", err)
				}
				entry, err := ledger.EntryOf(conflict.Stored)
				if err != nil || entry != stored.Entry {
					t.Fatalf("conflict carries %+v (%v), want the stored %+v", entry, err, stored.Entry)
				}
			})
		}
		wantHead(t, r, "carol", 1)
		wantBalance(t, l, "carol", 40)
	})

	t.Run("ErrInsufficientFunds", func(t *testing.T) {
		r := openRepo(t, ":memory:")
		l := ledger.New(r, nil)
		post(t, l, ledger.Request{User: "dave", Kind: ledger.Credit, Amount: 25, RequestID: "c"})
		debit := ledger.Request{User: "dave", Kind: ledger.Debit, Amount: 26, RequestID: "d"}
		_, err := l.Post(ctx, debit)
		if !errors.Is(err, ledger.ErrInsufficientFunds) {
			t.Fatalf("Post = %v, want ErrInsufficientFunds", err)
		}
		var insufficient *ledger.InsufficientFundsError
		if !errors.As(err, &insufficient) || insufficient.Balance != 25 || insufficient.Amount != 26 || insufficient.User != "dave" {
			t.Fatalf("errors.As *InsufficientFundsError: %#v", insufficient)
		}
		if errors.Is(err, repo.ErrIdempotencyConflict) || errors.Is(err, events.ErrInvalid) {
			t.Fatalf("%v matches another sentinel", err)
		}
		// Nothing was written, not even under the key: once funded,
		// the same request goes through.
		wantHead(t, r, "dave", 1)
		if _, err := r.ByRequestID(ctx, ledger.StreamID("dave"), "d"); !errors.Is(err, repo.ErrNotFound) {
			t.Fatalf("the refused debit's key is stored: %v", err)
		}
		post(t, l, ledger.Request{User: "dave", Kind: ledger.Credit, Amount: 1, RequestID: "c2"})
		if res := post(t, l, debit); res.Duplicate() || res.Entry.Balance != 0 {
			t.Fatalf("debit once funded: %v %+v", res.Outcome, res.Entry)
		}
		// An unknown user has nothing to debit.
		if _, err := l.Post(ctx, ledger.Request{User: "nobody", Kind: ledger.Debit, Amount: 1, RequestID: "x"}); !errors.As(err, &insufficient) || insufficient.Balance != 0 {
			t.Fatalf("debit of an unknown user: %v", err)
		}
		wantHead(t, r, "nobody", 0)
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		r := openRepo(t, ":memory:")
		l := ledger.New(r, nil)
		post(t, l, ledger.Request{User: "erin", Kind: ledger.Credit, Amount: math.MaxInt64 - 5, RequestID: "big"})
		ok := ledger.Request{User: "erin", Kind: ledger.Credit, Amount: 1, RequestID: "k"}
		for name, tt := range map[string]struct {
			mutate func(*ledger.Request)
			field  string
		}{
			"NoUser":          {func(q *ledger.Request) { q.User = "" }, "user"},
			"ControlInUser":   {func(q *ledger.Request) { q.User = "a\nb" }, "user"},
			"UserTooLong":     {func(q *ledger.Request) { q.User = strings.Repeat("u", ledger.MaxUserBytes+1) }, "user"},
			"UserNotUTF8":     {func(q *ledger.Request) { q.User = "caf\xe9" }, "user"},
			"NoKind":          {func(q *ledger.Request) { q.Kind = "" }, "kind"},
			"UnknownKind":     {func(q *ledger.Request) { q.Kind = "refund" }, "kind"},
			"ZeroAmount":      {func(q *ledger.Request) { q.Amount = 0 }, "amount"},
			"NegativeAmount":  {func(q *ledger.Request) { q.Amount = -3 }, "amount"},
			"NoRequestID":     {func(q *ledger.Request) { q.RequestID = "" }, "request_id"},
			"LongRequestID":   {func(q *ledger.Request) { q.RequestID = strings.Repeat("k", events.MaxRequestIDBytes+1) }, "request_id"},
			"NoteNotUTF8":     {func(q *ledger.Request) { q.Note = "\xff" }, "note"},
			"BalanceOverflow": {func(q *ledger.Request) { q.Amount = 6 }, "amount"},
		} {
			t.Run(name, func(t *testing.T) {
				req := ok
				tt.mutate(&req)
				_, err := l.Post(ctx, req)
				var fe *events.FieldError
				if !errors.Is(err, events.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tt.field {
					t.Fatalf("Post = %v, want a field error naming %s", err, tt.field)
				}
			})
		}
		wantHead(t, r, "erin", 1)
		// The largest balance is reachable exactly.
		if res := post(t, l, ledger.Request{User: "erin", Kind: ledger.Credit, Amount: 5, RequestID: "top"}); res.Entry.Balance != math.MaxInt64 {
			t.Fatalf("balance %d, want %d", res.Entry.Balance, int64(math.MaxInt64))
		}
	})

	t.Run("Context", func(t *testing.T) {
		r := openRepo(t, ":memory:")
		l := ledger.New(r, nil)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := l.Post(cctx, ledger.Request{User: "f", Kind: ledger.Credit, Amount: 1, RequestID: "k"}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Post with a cancelled context = %v", err)
		}
		wantHead(t, r, "f", 0)
	})
}

func TestLedger_Balance(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, ":memory:")
	l := ledger.New(r, nil)

	t.Run("UnknownUser", func(t *testing.T) {
		wantBalance(t, l, "stranger", 0)
		for e, err := range l.Entries(ctx, "stranger", 0) {
			t.Fatalf("an unknown user has entry %+v (%v)", e, err)
		}
	})
	t.Run("UsersApart", func(t *testing.T) {
		// Ids that share prefixes or hold slashes name other ledgers.
		for i, user := range []string{"a", "a/b", "ab", "a b", "~ledger/a", "Å"} {
			post(t, l, ledger.Request{User: user, Kind: ledger.Credit, Amount: int64(10 + i), RequestID: "same-key"})
		}
		for i, user := range []string{"a", "a/b", "ab", "a b", "~ledger/a", "Å"} {
			wantBalance(t, l, user, int64(10+i))
		}
	})
	t.Run("Entries", func(t *testing.T) {
		post(t, l, ledger.Request{User: "g", Kind: ledger.Credit, Amount: 9, RequestID: "1"})
		post(t, l, ledger.Request{User: "g", Kind: ledger.Debit, Amount: 4, RequestID: "2", Note: "x"})
		var got []int64
		for e, err := range l.Entries(ctx, "g", 0) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, e.Balance)
		}
		if len(got) != 2 || got[0] != 9 || got[1] != 5 {
			t.Fatalf("running balances %v, want [9 5]", got)
		}
		for e, err := range l.Entries(ctx, "g", 1) {
			if err != nil || e.Seq != 2 || e.Note != "x" {
				t.Fatalf("entries after seq 1: %+v %v", e, err)
			}
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		if _, err := l.Balance(ctx, ""); !errors.Is(err, events.ErrInvalid) {
			t.Fatalf("Balance(\"\") = %v", err)
		}
	})
}

// TestLedger_Post_concurrent has 50 goroutines post the same keys, each
// in its own order, to one user: credits and debits, many refused at
// first for want of funds. Each key must be applied once, the running
// balances must be exact and never negative, and every post must have
// been told the truth. Once with one Ledger shared by all (how a
// process uses it), once with a Ledger each, so that only the store's
// expected-seq check keeps them apart.
func TestLedger_Post_concurrent(t *testing.T) {
	for _, shared := range []bool{true, false} {
		name := "SharedLedger"
		if !shared {
			name = "LedgerEach"
		}
		t.Run(name, func(t *testing.T) {
			sd := seed(t)
			r := &countingRepo{Repo: openRepo(t, "")}
			spec := stormSpec{User: "u", Keys: stormKeys, Workers: 50, Seed: sd, Shared: shared}
			var mu sync.Mutex
			var outcomes []outcome
			storm(context.Background(), r, spec, func(o outcome) {
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			})
			if len(outcomes) != spec.Workers*spec.Keys {
				t.Fatalf("%d outcomes, want %d", len(outcomes), spec.Workers*spec.Keys)
			}
			checkStorm(t, r, spec.User, spec.Keys, outcomes)
			t.Logf("%d appends lost a race and were retried", r.seqConflicts.Load())
			if !shared && r.seqConflicts.Load() == 0 {
				t.Error("50 Ledgers on one user never lost a race: the storm did not test the guard")
			}
		})
	}
}

// blindRepo misses the first look-up of each key, as a caller does whose
// twin (same key) commits between its look-up and its append.
type blindRepo struct {
	repo.Repo
	mu     sync.Mutex
	missed map[string]bool
}

func (b *blindRepo) ByRequestID(ctx context.Context, conversationID, requestID string) (events.Event, error) {
	b.mu.Lock()
	miss := !b.missed[requestID]
	b.missed[requestID] = true
	b.mu.Unlock()
	if miss {
		return events.Event{}, repo.ErrNotFound
	}
	return b.Repo.ByRequestID(ctx, conversationID, requestID)
}

// TestLedger_Post_twinMissedLookup: a post that missed its key in the
// look-up (its twin committed just after) reaches the store, whose
// unique key refuses it; the post is then judged on its own fields
// against the twin's entry, although the twin's running balance differs
// from the one the post computed.
func TestLedger_Post_twinMissedLookup(t *testing.T) {
	ctx := context.Background()
	store := openRepo(t, ":memory:")
	twin := ledger.Request{User: "u", Kind: ledger.Credit, Amount: 10, RequestID: "k", Note: "n"}
	stored := post(t, ledger.New(store, nil), twin)
	post(t, ledger.New(store, nil), ledger.Request{User: "u", Kind: ledger.Credit, Amount: 5, RequestID: "other"})

	l := ledger.New(&blindRepo{Repo: store, missed: map[string]bool{}}, nil)
	res, err := l.Post(ctx, twin)
	if err != nil || !res.Duplicate() || res.Entry != stored.Entry {
		t.Fatalf("Post = %+v, %v; want the twin's entry %+v as a duplicate", res, err, stored.Entry)
	}
	l = ledger.New(&blindRepo{Repo: store, missed: map[string]bool{}}, nil)
	_, err = l.Post(ctx, ledger.Request{User: "u", Kind: ledger.Credit, Amount: 11, RequestID: "k", Note: "n"})
	var conflict *repo.ConflictError
	if !errors.As(err, &conflict) || conflict.Stored.ID != stored.Entry.ID {
		t.Fatalf("Post with another amount = %v, want a conflict carrying the twin's entry", err)
	}
	wantHead(t, store, "u", 2)
	wantBalance(t, ledger.New(store, nil), "u", 15)
}

// countingRepo counts the appends refused for a moved head.
type countingRepo struct {
	repo.Repo
	seqConflicts atomic.Int64
}

func (c *countingRepo) Append(ctx context.Context, e events.Event, opts repo.AppendOptions) (repo.Result, error) {
	res, err := c.Repo.Append(ctx, e, opts)
	if errors.Is(err, repo.ErrSeqConflict) {
		c.seqConflicts.Add(1)
	}
	return res, err
}

// raceRepo makes every append lose once, as if another writer always got
// there first, to check that Post gives up after MaxAttempts.
type raceRepo struct {
	repo.Repo
	appends atomic.Int64
}

func (r *raceRepo) Append(ctx context.Context, e events.Event, opts repo.AppendOptions) (repo.Result, error) {
	r.appends.Add(1)
	want, _ := opts.Expected.Seq()
	return repo.Result{}, &repo.SeqConflictError{ConversationID: e.ConversationID, Expected: want, Actual: want + 1}
}

func TestLedger_Post_ErrContended(t *testing.T) {
	r := &raceRepo{Repo: openRepo(t, ":memory:")}
	l := ledger.New(r, &ledger.Options{MaxAttempts: 4})
	_, err := l.Post(context.Background(), ledger.Request{User: "h", Kind: ledger.Credit, Amount: 1, RequestID: "k"})
	if !errors.Is(err, ledger.ErrContended) || errors.Is(err, repo.ErrSeqConflict) {
		t.Fatalf("Post = %v, want ErrContended alone", err)
	}
	if n := r.appends.Load(); n != 4 {
		t.Fatalf("%d appends tried, want MaxAttempts = 4", n)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
