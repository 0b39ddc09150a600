package repotest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/ledger"
	"github.com/chatlog/chatlog/repo"
)

// The ledger is built on repo.Repo alone; these cases check that a
// backend gives it what it relies on: an expected-seq append that is
// atomic with the head it checks, request_id lookups that see every
// commit, Last for the balance, and read models that leave account
// streams out. Check verifies every ledger's running balances.
var ledgerCases = []subCase{
	{"Entries", testLedgerEntries},
	{"Storm", testLedgerStorm},
	{"ReadModels", testLedgerReadModels},
}

// testLedgerEntries: credits and debits, a retry after the balance moved,
// a key reused, an overdraft refused, a user without entries.
func testLedgerEntries(t *testing.T, s *suite) {
	e := s.fresh(t)
	l := ledger.New(e.r, nil)
	post := func(req ledger.Request) (ledger.Result, error) { return l.Post(e.ctx, req) }
	credit := ledger.Request{User: "alice", Kind: ledger.Credit, Amount: 100, RequestID: "c1", Note: "top-up"}
	first, err := post(credit)
	if err != nil || first.Duplicate() || first.Entry.Balance != 100 || first.Entry.Seq != 1 {
		t.Fatalf("credit: %+v, %v", first, err)
	}
	if res, err := post(ledger.Request{User: "alice", Kind: ledger.Debit, Amount: 30, RequestID: "d1"}); err != nil || res.Entry.Balance != 70 {
		t.Fatalf("debit: %+v, %v", res, err)
	}
	if res, err := post(credit); err != nil || !res.Duplicate() || res.Entry != first.Entry {
		t.Fatalf("retry after the balance moved: %+v, %v; want the stored %+v", res, err, first.Entry)
	}
	_, err = post(ledger.Request{User: "alice", Kind: ledger.Credit, Amount: 101, RequestID: "c1", Note: "top-up"})
	var conflict *repo.ConflictError
	if !errors.As(err, &conflict) || conflict.Stored.ID != first.Entry.ID {
		t.Fatalf("key reused with another amount: %v", err)
	}
	_, err = post(ledger.Request{User: "alice", Kind: ledger.Debit, Amount: 71, RequestID: "d2"})
	var short *ledger.InsufficientFundsError
	if !errors.As(err, &short) || short.Balance != 70 || short.Amount != 71 {
		t.Fatalf("overdraft: %v", err)
	}
	if head := e.head("~ledger/alice"); head != 2 {
		t.Fatalf("ledger head %d after two entries", head)
	}
	for user, want := range map[string]int64{"alice": 70, "bob": 0} {
		if got, err := l.Balance(e.ctx, user); err != nil || got != want {
			t.Fatalf("Balance(%q) = %d, %v; want %d", user, got, err, want)
		}
	}
}

// ledgerStormKey is key i of the storm: a third credits, the debits
// larger in sum, so the balance keeps returning to near zero and many
// debits are refused for a while, some for good.
func ledgerStormKey(i int) ledger.Request {
	req := ledger.Request{User: "storm", Kind: ledger.Debit, Amount: int64(1 + i%13), RequestID: "k" + strconv.Itoa(i)}
	if i%3 == 0 {
		req.Kind, req.Amount = ledger.Credit, int64(5+i%11)
	}
	return req
}

// testLedgerStorm: workers, each with a Ledger of its own (so only the
// store's expected-seq check keeps them apart), post the same keys in
// orders of their own. Each key is stored once with its own fields, and
// every post that succeeded got the stored entry; Check verifies the
// running balances.
func testLedgerStorm(t *testing.T, s *suite) {
	e := s.fresh(t)
	sd := seed(t)
	workers, keys := 32, 120
	if raceEnabled {
		workers, keys = 12, 30
	}
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
	defer cancel()
	type answer struct {
		key int
		id  string
	}
	var (
		mu      sync.Mutex
		answers []answer
		errs    []string
		wg      sync.WaitGroup
	)
	for w := range workers {
		l := ledger.New(e.r, nil)
		order := rand.New(rand.NewPCG(sd, uint64(w))).Perm(keys)
		wg.Go(func() {
			for _, i := range order {
				res, err := l.Post(ctx, ledgerStormKey(i))
				mu.Lock()
				switch {
				case err == nil:
					answers = append(answers, answer{i, res.Entry.ID})
				case !errors.Is(err, ledger.ErrInsufficientFunds):
					errs = append(errs, fmt.Sprintf("worker %d key %d: %v", w, i, err))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("posts failed:\n\t%s", strings.Join(errs[:min(len(errs), 10)], "\n\t"))
	}
	stored := map[string]events.Event{}
	for ev, err := range e.r.Events(e.ctx, ledger.StreamID("storm"), repo.Range{}) {
		if err != nil {
			t.Fatal(err)
		}
		stored[ev.RequestID] = ev
		i, _ := strconv.Atoi(strings.TrimPrefix(ev.RequestID, "k"))
		want := ledgerStormKey(i)
		kind, _ := ev.ExtraString("kind")
		amount, _ := ev.ExtraInt("amount")
		if kind != string(want.Kind) || amount != want.Amount {
			t.Fatalf("key %s stored as %s %d, posted as %s %d", ev.RequestID, kind, amount, want.Kind, want.Amount)
		}
	}
	told := map[string]bool{}
	for _, a := range answers {
		key := "k" + strconv.Itoa(a.key)
		if ev, ok := stored[key]; !ok || ev.ID != a.id {
			t.Fatalf("key %s: a post got entry %s, the log holds %s", key, a.id, ev.ID)
		}
		told[key] = true
	}
	for key := range stored {
		if !told[key] {
			t.Fatalf("key %s is stored, but no post was told so", key)
		}
	}
	t.Logf("%d workers x %d keys: %d entries stored, %d posts answered with one", workers, keys, len(stored), len(answers))
}

// testLedgerReadModels: a ledger is no conversation: not listed, no
// summary, no search hit, no branch; verify agrees.
func testLedgerReadModels(t *testing.T, s *suite) {
	e := s.fresh(t)
	e.mustAppend(userMsg("c1", "m1", "refund please"), repo.AppendOptions{}, repo.Appended)
	l := ledger.New(e.r, nil)
	if _, err := l.Post(e.ctx, ledger.Request{User: "u", Kind: ledger.Credit, Amount: 5, RequestID: "k", Note: "refund"}); err != nil {
		t.Fatal(err)
	}
	page, err := e.r.ListConversations(e.ctx, repo.ListQuery{})
	if err != nil || len(page.Conversations) != 1 || page.Conversations[0].ConversationID != "c1" {
		t.Fatalf("ListConversations = %+v, %v; want c1 alone", page.Conversations, err)
	}
	if _, err := e.r.Summary(e.ctx, ledger.StreamID("u")); !errors.Is(err, repo.ErrNotFound) {
		t.Fatalf("Summary of a ledger: %v, want ErrNotFound", err)
	}
	hits, err := e.r.Search(e.ctx, repo.SearchQuery{Query: "refund"})
	if err != nil || len(hits) != 1 || hits[0].ConversationID != "c1" {
		t.Fatalf("Search(refund) = %+v, %v; want the message of c1 alone", hits, err)
	}
	if problems, err := e.r.VerifyReadModels(e.ctx, nil); err != nil || len(problems) > 0 {
		t.Fatalf("VerifyReadModels = %q, %v", problems, err)
	}
	// A branch would inherit the entries as a conversation's history.
	if _, err := e.r.Fork(e.ctx, ledger.StreamID("u"), 0, "b1"); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Fork of a ledger = %v, want ErrInvalid", err)
	}
	if head := e.head("b1"); head != 0 {
		t.Fatalf("a refused fork left %d events", head)
	}
	// An entry written around the ledger, whose balance does not follow
	// from the one before it, is what verify is for.
	e.mustAppend(events.Event{ConversationID: ledger.StreamID("u"), Type: events.TypeLedgerEntry, RequestID: "forged",
		Extra: map[string]any{"kind": "debit", "amount": 1, "balance": 500}}, repo.AppendOptions{}, repo.Appended)
	problems, err := e.r.VerifyReadModels(e.ctx, nil)
	if err != nil || len(problems) != 1 || !strings.Contains(problems[0], `seq 2 (debit of 1) states balance 500; the entries before it make 4`) {
		t.Fatalf("VerifyReadModels after a forged entry = %q, %v; want the broken balance chain", problems, err)
	}
	// Erased again, so the suite's own check after the test finds the
	// log sound.
	if _, err := e.r.Delete(e.ctx, ledger.StreamID("u"), repo.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// checkLedger verifies the running balances of a ledger stream: every
// event is a ledger entry whose balance is the one before it (0 before
// the first) plus or minus its amount, and never negative.
func checkLedger(conv string, evs []events.Event, bad func(format string, args ...any)) {
	var balance int64
	for _, e := range evs {
		entry, err := ledger.EntryOf(e)
		if err != nil {
			bad("ledger %q: seq %d: %v", conv, e.Seq, err)
			return
		}
		if entry.Kind == ledger.Credit {
			balance += entry.Amount
		} else {
			balance -= entry.Amount
		}
		if entry.Balance != balance || balance < 0 {
			bad("ledger %q: seq %d (%s of %d) has balance %d, the entries before it make %d", conv, e.Seq, entry.Kind, entry.Amount, entry.Balance, balance)
			return
		}
	}
}
