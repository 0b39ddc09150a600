package ledger_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/chatlog/chatlog/ledger"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// Credit a user, charge a reply, retry the charge, and be refused an
// overdraft.
func ExampleLedger_Post() {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, ":memory:", nil)
	if err != nil {
		panic(err)
	}
	defer store.Close()
	l := ledger.New(store, nil)

	// Amounts are integers in the smallest unit (here, cents).
	top, _ := l.Post(ctx, ledger.Request{User: "alice", Kind: ledger.Credit, Amount: 500, RequestID: "topup-1", Note: "card"})
	charge := ledger.Request{User: "alice", Kind: ledger.Debit, Amount: 120, RequestID: "reply-42"}
	first, _ := l.Post(ctx, charge)
	retry, _ := l.Post(ctx, charge) // the same request again: applied once
	fmt.Println(top.Entry.Balance, first.Entry.Balance, retry.Outcome, retry.Entry.Balance)

	_, err = l.Post(ctx, ledger.Request{User: "alice", Kind: ledger.Debit, Amount: 1000, RequestID: "reply-43"})
	var short *ledger.InsufficientFundsError
	if errors.As(err, &short) {
		fmt.Println("refused:", short.Balance, "<", short.Amount)
	}

	// The same key with another amount is a conflict, not a second charge.
	_, err = l.Post(ctx, ledger.Request{User: "alice", Kind: ledger.Debit, Amount: 99, RequestID: "reply-42"})
	fmt.Println(errors.Is(err, repo.ErrIdempotencyConflict))

	balance, _ := l.Balance(ctx, "alice")
	unknown, _ := l.Balance(ctx, "bob")
	fmt.Println(balance, unknown)
	// Output:
	// 500 380 duplicate 380
	// refused: 380 < 1000
	// true
	// 380 0
}
