// Package ledger is a per-user credit ledger on chatlog's event log:
// credits and debits in the smallest unit of a currency (cents, tokens,
// credits), each applied exactly once per request_id, with a balance that
// never goes below zero, also under concurrent writers in several
// processes sharing one store.
//
// # Storage
//
// A user's ledger is an account stream of the log, StreamID(user) =
// events.LedgerStreamPrefix + user, holding ledger_entry events whose
// extra carries the kind, the amount, the note and the balance after the
// entry. The balance is the last entry's: one read (repo.Repo.Last)
// however long the ledger is, 0 for a user without entries. Account
// streams are left out of the read models (no conversation list row, no
// search hit) and only account-level events may enter them, so nothing
// but an entry is ever found there.
//
// The package uses nothing but repo.Repo, so every backend that passes
// the repotest conformance suite carries it unchanged.
//
// # Concurrency
//
// Post reads the head of the user's ledger, computes the new balance and
// appends on condition that the head has not moved (repo.ExpectSeq). A
// writer that lost the race (repo.ErrSeqConflict) reads again and retries
// after a short random pause, at most Options.MaxAttempts times, then
// gives up with ErrContended. The store's expected-seq check is the
// guard, so it holds across processes; within one Ledger, posts for one
// user also queue for each other, so its own goroutines do not spend
// rounds racing one another.
//
// # Idempotency
//
// The running balance makes a stored entry depend on the ledger's state
// when it was written, so a retry cannot be judged on the whole event:
// it is judged on the caller's fields (kind, amount, note). The same
// fields return the stored entry as a duplicate and write nothing; other
// fields are repo.ErrIdempotencyConflict, a *repo.ConflictError whose
// Stored event EntryOf decodes. Two callers with one key who both find it
// unused are settled by the store's unique key: the one refused looks up
// the winner's entry and is judged as above.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// Kind says which way an entry moves the balance.
type Kind string

// Kinds of entry.
const (
	// Credit adds its amount to the balance.
	Credit Kind = "credit"
	// Debit takes its amount from the balance; it is refused with
	// ErrInsufficientFunds when the balance is smaller.
	Debit Kind = "debit"
)

// MaxUserBytes caps a user id: the ledger's stream id is the prefix
// followed by it, within events.MaxConversationIDBytes.
const MaxUserBytes = events.MaxConversationIDBytes - len(events.LedgerStreamPrefix)

// StreamID is the conversation id of a user's ledger in the log.
func StreamID(user string) string { return events.LedgerStreamPrefix + user }

// Request asks for one entry.
type Request struct {
	// User owns the ledger; required.
	User string
	// Kind is Credit or Debit; required.
	Kind Kind
	// Amount is a positive number of the smallest unit.
	Amount int64
	// RequestID is the idempotency key, unique within the user's ledger;
	// required, because a credit or debit retried without one would be
	// applied twice.
	RequestID string
	// Note is free text kept with the entry (an invoice number, a reason).
	Note string
}

// Entry is one stored credit or debit.
type Entry struct {
	User   string `json:"user"`
	Kind   Kind   `json:"kind"`
	Amount int64  `json:"amount"`
	Note   string `json:"note,omitempty"`
	// Balance is the user's balance after this entry.
	Balance   int64  `json:"balance"`
	RequestID string `json:"request_id"`
	// Seq is the entry's position in the user's ledger, from 1.
	Seq int64 `json:"seq"`
	// ID is the entry's event id.
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
}

// MarshalJSON writes created_at as events write it (UTC, nine fractional
// digits), so every timestamp chatlog prints has one form.
func (e Entry) MarshalJSON() ([]byte, error) {
	type plain Entry
	return json.Marshal(struct {
		plain
		CreatedAt string `json:"created_at"`
	}{plain(e), events.FormatTime(e.CreatedAt)})
}

// EntryOf decodes a stored ledger_entry event, such as the Stored event
// of a *repo.ConflictError returned by Post.
func EntryOf(e events.Event) (Entry, error) {
	user, ok := strings.CutPrefix(e.ConversationID, events.LedgerStreamPrefix)
	if e.Type != events.TypeLedgerEntry || !ok || user == "" {
		return Entry{}, fmt.Errorf("ledger: event %s of %q is a %s, not a ledger entry", e.ID, e.ConversationID, e.Type)
	}
	if err := e.Validate(); err != nil {
		// Not %w: a malformed stored entry is the store's fault, never
		// the caller's invalid input.
		return Entry{}, fmt.Errorf("ledger: event %s of %q (seq %d) is a malformed ledger entry: %v", e.ID, e.ConversationID, e.Seq, err)
	}
	// Validate checked the fields.
	kind, _ := e.ExtraString("kind")
	amount, _ := e.ExtraInt("amount")
	balance, _ := e.ExtraInt("balance")
	note, _ := e.ExtraString("note")
	return Entry{
		User: user, Kind: Kind(kind), Amount: amount, Note: note, Balance: balance,
		RequestID: e.RequestID, Seq: e.Seq, ID: e.ID, CreatedAt: e.CreatedAt,
	}, nil
}

// Result is a successful Post: the entry, and whether it was written now
// or found stored under the request's key.
type Result struct {
	Entry   Entry
	Outcome repo.Outcome
}

// Duplicate reports whether the post was a retry of a stored entry.
func (r Result) Duplicate() bool { return r.Outcome == repo.Duplicate }

// Defaults of Options.
const (
	DefaultMaxAttempts = 100
	DefaultMaxBackoff  = 50 * time.Millisecond
)

// Options adjust a Ledger. A nil *Options means all defaults; each zero
// field takes its default.
type Options struct {
	// MaxAttempts bounds how many times Post tries to append an entry
	// when other writers keep moving the ledger's head first; then it
	// returns ErrContended. Default DefaultMaxAttempts (100).
	MaxAttempts int
	// MaxBackoff caps the random pause between attempts, which doubles
	// from 1ms at each lost race. Default DefaultMaxBackoff (50ms).
	MaxBackoff time.Duration
}

// Ledger posts entries to users' ledgers in a store and reads their
// balances. It is safe for concurrent use, and any number of Ledgers, in
// any number of processes, may share one store.
type Ledger struct {
	repo repo.Repo
	opts Options

	mu    sync.Mutex
	users map[string]*userLock // users with a Post running or waiting
}

// userLock queues the posts of one user within a Ledger.
type userLock struct {
	sem  chan struct{}
	refs int // posts holding or waiting for sem; guarded by Ledger.mu
}

// New returns a Ledger over r.
func New(r repo.Repo, opts *Options) *Ledger {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	return &Ledger{repo: r, opts: o, users: make(map[string]*userLock)}
}

// Post applies one entry to the user's ledger, exactly once per
// RequestID, and returns it with outcome repo.Appended; a retry of a
// stored entry (same kind, amount and note) returns the stored one with
// outcome repo.Duplicate and writes nothing.
//
// Errors, each meaning nothing was written: events.ErrInvalid (a
// *events.FieldError naming user, kind, amount, request_id or note) for
// a malformed request or a credit that would take the balance past
// math.MaxInt64; ErrInsufficientFunds (*InsufficientFundsError) for a
// debit larger than the balance; repo.ErrIdempotencyConflict
// (*repo.ConflictError with the stored entry's event) for a key already
// used with other fields; ErrContended; the store's and the context's
// errors.
func (l *Ledger) Post(ctx context.Context, req Request) (Result, error) {
	if err := req.validate(); err != nil {
		return Result{}, err
	}
	unlock, err := l.lock(ctx, req.User)
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	for attempt := 1; ; attempt++ {
		res, err := l.try(ctx, req)
		if !errors.Is(err, repo.ErrSeqConflict) {
			return res, err
		}
		if attempt >= l.opts.MaxAttempts {
			return Result{}, fmt.Errorf("ledger: %s of %d for user %q: other writers moved the ledger first %d times in a row; retry with the same request_id: %w",
				req.Kind, req.Amount, req.User, attempt, ErrContended)
		}
		if err := l.pause(ctx, attempt); err != nil {
			return Result{}, err
		}
	}
}

// try makes one attempt at req. A lost race is repo.ErrSeqConflict.
func (l *Ledger) try(ctx context.Context, req Request) (Result, error) {
	stream := StreamID(req.User)
	// The head is read before the key is looked up. A twin request (same
	// key) that committed in between is then found by the lookup, and one
	// that commits after it moves the head, so the conditional append
	// below fails instead of applying the entry twice; and a debit is
	// never refused for want of funds against a balance that its own
	// twin, already found, had lowered.
	head, balance, err := l.head(ctx, req.User)
	if err != nil {
		return Result{}, err
	}
	stored, err := l.repo.ByRequestID(ctx, stream, req.RequestID)
	switch {
	case err == nil:
		return judge(req, stored)
	case !errors.Is(err, repo.ErrNotFound):
		return Result{}, fmt.Errorf("ledger: look up request %q of user %q: %w", req.RequestID, req.User, err)
	}
	after, err := apply(balance, req)
	if err != nil {
		return Result{}, err
	}
	extra := map[string]any{"kind": string(req.Kind), "amount": req.Amount, "balance": after}
	if req.Note != "" {
		extra["note"] = req.Note
	}
	e := events.Event{ConversationID: stream, Type: events.TypeLedgerEntry, RequestID: req.RequestID, Extra: extra}
	res, err := l.repo.Append(ctx, e, repo.AppendOptions{Expected: repo.ExpectSeq(head)})
	var conflict *repo.ConflictError
	switch {
	case err == nil:
		// A Duplicate here is a twin that read the same head and so
		// wrote this very entry: a retry, answered with it.
		entry, err := EntryOf(res.Event)
		return Result{Entry: entry, Outcome: res.Outcome}, err
	case errors.As(err, &conflict) && conflict.Key == req.RequestID:
		// A twin won the race from another head: its entry differs in
		// balance, which says nothing about the request.
		return judge(req, conflict.Stored)
	case errors.Is(err, repo.ErrSeqConflict):
		return Result{}, err
	}
	return Result{}, fmt.Errorf("ledger: append the entry of request %q of user %q: %w", req.RequestID, req.User, err)
}

// judge answers a request whose key is already stored: the stored entry
// when the caller's fields match it, else an idempotency conflict.
func judge(req Request, stored events.Event) (Result, error) {
	entry, err := EntryOf(stored)
	if err != nil {
		return Result{}, err
	}
	if entry.Kind != req.Kind || entry.Amount != req.Amount || entry.Note != req.Note {
		return Result{}, &repo.ConflictError{Key: req.RequestID, Stored: stored}
	}
	return Result{Entry: entry, Outcome: repo.Duplicate}, nil
}

// apply returns the balance after req, or why req cannot be applied.
func apply(balance int64, req Request) (int64, error) {
	if req.Kind == Debit {
		if req.Amount > balance {
			return 0, &InsufficientFundsError{User: req.User, Balance: balance, Amount: req.Amount}
		}
		return balance - req.Amount, nil
	}
	if req.Amount > math.MaxInt64-balance {
		return 0, &events.FieldError{Field: "amount", Reason: fmt.Sprintf(
			"a credit of %d would take the balance of %d past the largest one a ledger holds (%d)", req.Amount, balance, int64(math.MaxInt64))}
	}
	return balance + req.Amount, nil
}

// Balance returns the user's balance: the last entry's, 0 when the user
// has none. Errors: events.ErrInvalid for a malformed user id; the
// store's and the context's errors.
func (l *Ledger) Balance(ctx context.Context, user string) (int64, error) {
	if err := checkUser(user); err != nil {
		return 0, err
	}
	_, balance, err := l.head(ctx, user)
	return balance, err
}

// head returns the seq and balance of the user's last entry (0, 0 when
// there is none).
func (l *Ledger) head(ctx context.Context, user string) (seq, balance int64, err error) {
	last, err := l.repo.Last(ctx, StreamID(user), 1)
	if err != nil {
		return 0, 0, fmt.Errorf("ledger: read the balance of user %q: %w", user, err)
	}
	if len(last) == 0 {
		return 0, 0, nil
	}
	entry, err := EntryOf(last[0])
	if err != nil {
		return 0, 0, err
	}
	return entry.Seq, entry.Balance, nil
}

// Entries yields the user's entries after afterSeq, oldest first; a user
// without entries yields nothing. Appends made while it runs are seen as
// repo.Repo.Events sees them.
func (l *Ledger) Entries(ctx context.Context, user string, afterSeq int64) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		if err := checkUser(user); err != nil {
			yield(Entry{}, err)
			return
		}
		for e, err := range l.repo.Events(ctx, StreamID(user), repo.Range{AfterSeq: afterSeq}) {
			var entry Entry
			if err == nil {
				entry, err = EntryOf(e)
			}
			if !yield(entry, err) || err != nil {
				return
			}
		}
	}
}

// validate checks a request's own fields, before any read.
func (req *Request) validate() error {
	if err := checkUser(req.User); err != nil {
		return err
	}
	switch {
	case req.Kind != Credit && req.Kind != Debit:
		return &events.FieldError{Field: "kind", Reason: fmt.Sprintf(`must be "credit" or "debit", not %q`, req.Kind)}
	case req.Amount <= 0:
		return &events.FieldError{Field: "amount", Reason: fmt.Sprintf("must be a positive integer (in the smallest unit), got %d", req.Amount)}
	case req.RequestID == "":
		return &events.FieldError{Field: "request_id", Reason: "is required: without a key a retried credit or debit would be applied twice"}
	case !utf8.ValidString(req.Note):
		return &events.FieldError{Field: "note", Reason: "is not valid UTF-8"}
	}
	return nil
}

// checkUser checks a user id, so a bad one is named as the user rather
// than as the stream id it makes.
func checkUser(user string) error {
	reason := ""
	switch {
	case user == "":
		reason = "is required"
	case len(user) > MaxUserBytes:
		reason = fmt.Sprintf("is %d bytes, over the limit of %d", len(user), MaxUserBytes)
	case !utf8.ValidString(user):
		reason = "is not valid UTF-8"
	case strings.ContainsFunc(user, unicode.IsControl):
		reason = "contains control characters"
	default:
		return nil
	}
	return &events.FieldError{Field: "user", Reason: reason}
}

// lock waits until no other Post of this Ledger runs for user; the
// returned func ends the hold.
func (l *Ledger) lock(ctx context.Context, user string) (func(), error) {
	l.mu.Lock()
	ul := l.users[user]
	if ul == nil {
		ul = &userLock{sem: make(chan struct{}, 1)}
		l.users[user] = ul
	}
	ul.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if ul.refs--; ul.refs == 0 {
			delete(l.users, user)
		}
		l.mu.Unlock()
	}
	select {
	case ul.sem <- struct{}{}:
		return func() { <-ul.sem; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// pause waits a random time before the next attempt: up to 1ms after the
// first lost race, doubling at each, at most Options.MaxBackoff. The
// randomness spreads writers that lost together, so they do not collide
// again at once.
func (l *Ledger) pause(ctx context.Context, attempt int) error {
	limit := min(l.opts.MaxBackoff, time.Millisecond<<min(attempt-1, 20))
	t := time.NewTimer(rand.N(limit) + 1)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
