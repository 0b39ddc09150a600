package ledger

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is; the typed errors carry
// details for errors.As. A key reused with other fields is
// repo.ErrIdempotencyConflict (a *repo.ConflictError carrying the stored
// entry's event), as for any append.
var (
	// ErrInsufficientFunds is returned when a debit would take a balance
	// below zero. Nothing is written; errors.As with
	// *InsufficientFundsError gives the balance and the amount.
	ErrInsufficientFunds = errors.New("insufficient funds")

	// ErrContended is returned when Post lost the race for a user's
	// ledger to other writers Options.MaxAttempts times in a row. Nothing
	// was written by this call; retrying later with the same request_id
	// is safe.
	ErrContended = errors.New("ledger contended")
)

// InsufficientFundsError details ErrInsufficientFunds.
type InsufficientFundsError struct {
	User string
	// Balance is the balance the debit was refused against.
	Balance int64
	// Amount is the debit asked for.
	Amount int64
}

func (e *InsufficientFundsError) Error() string {
	return fmt.Sprintf("insufficient funds: user %q has a balance of %d, a debit of %d would overdraw it by %d; nothing written",
		e.User, e.Balance, e.Amount, e.Amount-e.Balance)
}

// Is makes an InsufficientFundsError match ErrInsufficientFunds.
func (e *InsufficientFundsError) Is(target error) bool { return target == ErrInsufficientFunds }
