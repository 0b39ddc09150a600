package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/chatlog/chatlog/ledger"
)

var ledgerCommand = &command{
	positional: true,
	name:       "ledger",
	args:       "credit|debit --user U --amount N --request-id K [--note TEXT] | balance --user U",
	summary:    `a per-user credit ledger: apply a credit or debit once per key (a debit that would overdraw exits 1 with insufficient_funds and writes nothing), or print {"user":U,"balance":N}`,
	example:    `chatlog ledger credit --user alice --amount 500 --request-id topup-1 --note "card"   # then: chatlog ledger balance --user alice`,
	setup: func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, env *env, args []string) error {
			names := make([]string, len(ledgerSubcommands))
			for i, c := range ledgerSubcommands {
				names[i] = strings.TrimPrefix(c.name, "ledger ")
			}
			if len(args) == 0 {
				return usageErr("a subcommand is required: %s (run 'chatlog ledger --help')", strings.Join(names, ", "))
			}
			var sub *command
			for _, c := range ledgerSubcommands {
				if c.name == "ledger "+args[0] {
					sub = c
				}
			}
			if sub == nil {
				return usageErr("unknown subcommand %q: %s (run 'chatlog ledger --help')", args[0], strings.Join(names, ", "))
			}
			// The subcommand's flags follow its name, so they are parsed
			// here, as the dispatcher parses a command's.
			prog := "chatlog " + sub.name
			sfs := flag.NewFlagSet(prog, flag.ContinueOnError)
			sfs.SetOutput(io.Discard)
			run := sub.setup(sfs)
			if err := sfs.Parse(args[1:]); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					commandUsage(env.stdout, sub, sfs)
					return nil
				}
				return usageErr("%s (run '%s --help')", flagError(err), prog)
			}
			if sfs.NArg() > 0 {
				return usageErr("unexpected argument %q", sfs.Arg(0))
			}
			return run(ctx, env, nil)
		}
	},
}

// ledgerSubcommands are the commands under "chatlog ledger".
var ledgerSubcommands = []*command{
	ledgerPostCommand(ledger.Credit),
	ledgerPostCommand(ledger.Debit),
	ledgerBalanceCommand,
}

func ledgerPostCommand(kind ledger.Kind) *command {
	summary := "add N to the user's balance, once per key"
	example := `chatlog ledger credit --user alice --amount 500 --request-id topup-1 --note "card 4242"`
	if kind == ledger.Debit {
		summary = "take N from the user's balance, once per key; a debit larger than the balance exits 1 with insufficient_funds and writes nothing"
		example = `chatlog ledger debit --user alice --amount 120 --request-id reply-42`
	}
	return &command{
		name:    "ledger " + string(kind),
		args:    "--user U --amount N --request-id K [--note TEXT]",
		summary: summary + `. Prints the entry with its running balance and "duplicate" (true for a retry); the key reused with another amount or note exits 3`,
		example: example,
		setup: func(fs *flag.FlagSet) runFunc {
			var (
				user      = fs.String("user", "", "the user `ID` (required)")
				amount    int64
				requestID = fs.String("request-id", "", "the idempotency `KEY` (required): the entry is applied once however often it is sent")
				note      = fs.String("note", "", "free `TEXT` kept with the entry")
			)
			fs.Func("amount", "a positive whole `N` in the smallest unit, such as cents (required)", func(s string) error {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil || n <= 0 {
					return fmt.Errorf("must be a positive whole number of at most %d", int64(math.MaxInt64))
				}
				amount = n
				return nil
			})
			return func(ctx context.Context, env *env, args []string) error {
				switch {
				case *user == "":
					return usageErr("--user is required")
				case amount == 0:
					return usageErr("--amount is required")
				case *requestID == "":
					return usageErr("--request-id is required: without a key a retried %s would be applied twice", kind)
				}
				r, err := env.repo(ctx)
				if err != nil {
					return err
				}
				res, err := ledger.New(r, nil).Post(ctx, ledger.Request{
					User: *user, Kind: kind, Amount: amount, RequestID: *requestID, Note: *note,
				})
				var short *ledger.InsufficientFundsError
				switch {
				case errors.As(err, &short):
					return fmt.Errorf("insufficient_funds: user %q has a balance of %d, less than the debit of %d; nothing written",
						short.User, short.Balance, short.Amount)
				case err != nil:
					return err
				}
				b, err := json.Marshal(res.Entry)
				if err != nil {
					return err
				}
				b = append(b[:len(b)-1], fmt.Sprintf(`,"duplicate":%t}`, res.Duplicate())...)
				_, err = env.stdout.Write(append(b, '\n'))
				return err
			}
		},
	}
}

// balanceJSON is what ledger balance prints, the HTTP API's shape.
type balanceJSON struct {
	User    string `json:"user"`
	Balance int64  `json:"balance"`
}

var ledgerBalanceCommand = &command{
	name:    "ledger balance",
	args:    "--user U",
	summary: `print the user's balance as {"user":U,"balance":N} (0 for a user without entries)`,
	example: "chatlog ledger balance --user alice",
	setup: func(fs *flag.FlagSet) runFunc {
		user := fs.String("user", "", "the user `ID` (required)")
		return func(ctx context.Context, env *env, args []string) error {
			if *user == "" {
				return usageErr("--user is required")
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			balance, err := ledger.New(r, nil).Balance(ctx, *user)
			if err != nil {
				return err
			}
			return writeJSON(env, balanceJSON{User: *user, Balance: balance})
		}
	},
}
