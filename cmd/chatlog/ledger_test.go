package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ledgerEntry is the shape ledger credit and debit print.
type ledgerEntry struct {
	User      string `json:"user"`
	Kind      string `json:"kind"`
	Amount    int64  `json:"amount"`
	Note      string `json:"note"`
	Balance   int64  `json:"balance"`
	RequestID string `json:"request_id"`
	Seq       int64  `json:"seq"`
	ID        string `json:"id"`
	CreatedAt string `json:"created_at"`
	Duplicate *bool  `json:"duplicate"`
}

func decodeEntry(tb testing.TB, out string) ledgerEntry {
	tb.Helper()
	var e ledgerEntry
	d := json.NewDecoder(strings.NewReader(out))
	d.DisallowUnknownFields()
	if err := d.Decode(&e); err != nil || strings.Count(out, "\n") != 1 {
		tb.Fatalf("not one ledger entry line: %q: %v", out, err)
	}
	if e.Duplicate == nil || e.ID == "" || e.CreatedAt == "" {
		tb.Fatalf("entry lacks duplicate, id or created_at: %q", out)
	}
	return e
}

func wantLedgerBalance(tb testing.TB, db, user, want string) {
	tb.Helper()
	r := run(tb, "", "--db", db, "ledger", "balance", "--user", user)
	wantCode(tb, r, 0)
	if got := strings.TrimSpace(r.stdout); got != want {
		tb.Fatalf("balance of %s: %s, want %s", user, got, want)
	}
}

func TestLedger(t *testing.T) {
	db := tempDB(t)
	ledgerArgs := func(args ...string) []string { return append([]string{"--db", db, "ledger"}, args...) }
	credit := ledgerArgs("credit", "--user", "alice", "--amount", "500", "--request-id", "topup-1", "--note", "card 4242")

	t.Run("Credit", func(t *testing.T) {
		r := run(t, "", credit...)
		wantCode(t, r, 0)
		e := decodeEntry(t, r.stdout)
		if e.User != "alice" || e.Kind != "credit" || e.Amount != 500 || e.Balance != 500 || e.Note != "card 4242" ||
			e.RequestID != "topup-1" || e.Seq != 1 || *e.Duplicate {
			t.Fatalf("entry %+v", e)
		}
		if r.stderr != "" {
			t.Errorf("stderr %q", r.stderr)
		}
	})
	t.Run("Retry", func(t *testing.T) {
		r := run(t, "", credit...)
		wantCode(t, r, 0)
		if e := decodeEntry(t, r.stdout); !*e.Duplicate || e.Seq != 1 || e.Balance != 500 {
			t.Fatalf("retry printed %+v", e)
		}
		wantLedgerBalance(t, db, "alice", `{"user":"alice","balance":500}`)
	})
	t.Run("Debit", func(t *testing.T) {
		r := run(t, "", ledgerArgs("debit", "--user", "alice", "--amount", "120", "--request-id", "reply-42")...)
		wantCode(t, r, 0)
		if e := decodeEntry(t, r.stdout); e.Kind != "debit" || e.Balance != 380 || e.Seq != 2 || *e.Duplicate {
			t.Fatalf("debit printed %+v", e)
		}
	})
	t.Run("InsufficientFunds", func(t *testing.T) {
		for _, user := range []string{"alice", "nobody"} {
			r := run(t, "", ledgerArgs("debit", "--user", user, "--amount", "381", "--request-id", "reply-43")...)
			wantCode(t, r, 1)
			wantOneLine(t, r.stderr, "insufficient_funds", "nothing written")
			if r.stdout != "" {
				t.Errorf("stdout %q", r.stdout)
			}
		}
		wantLedgerBalance(t, db, "alice", `{"user":"alice","balance":380}`)
		// Nothing was stored under the key either: once the balance
		// allows it, the same debit goes through.
		wantCode(t, run(t, "", ledgerArgs("credit", "--user", "alice", "--amount", "1", "--request-id", "topup-2")...), 0)
		r := run(t, "", ledgerArgs("debit", "--user", "alice", "--amount", "381", "--request-id", "reply-43")...)
		wantCode(t, r, 0)
		if e := decodeEntry(t, r.stdout); e.Balance != 0 || *e.Duplicate {
			t.Fatalf("debit once funded: %+v", e)
		}
	})
	t.Run("Conflict", func(t *testing.T) {
		for _, args := range [][]string{
			{"credit", "--user", "alice", "--amount", "501", "--request-id", "topup-1", "--note", "card 4242"},
			{"credit", "--user", "alice", "--amount", "500", "--request-id", "topup-1"},
			{"debit", "--user", "alice", "--amount", "500", "--request-id", "topup-1", "--note", "card 4242"},
		} {
			r := run(t, "", ledgerArgs(args...)...)
			wantCode(t, r, 3)
			wantOneLine(t, r.stderr, "idempotency conflict", `"topup-1"`)
		}
		wantLedgerBalance(t, db, "alice", `{"user":"alice","balance":0}`)
	})
	t.Run("UnknownUser", func(t *testing.T) {
		wantLedgerBalance(t, db, "bob", `{"user":"bob","balance":0}`)
	})
	t.Run("BadUser", func(t *testing.T) {
		r := run(t, "", ledgerArgs("balance", "--user", "a\tb")...)
		wantCode(t, r, 1)
		wantOneLine(t, r.stderr, "user: contains control characters")
	})
	t.Run("Help", func(t *testing.T) {
		for _, sub := range []string{"credit", "debit", "balance"} {
			r := run(t, "", "ledger", sub, "--help")
			wantCode(t, r, 0)
			for _, want := range []string{"chatlog [--db PATH] ledger " + sub + " --user U", "--user ID", "Example:\n  chatlog ledger " + sub} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("ledger %s --help lacks %q:\n%s", sub, want, r.stdout)
				}
			}
		}
	})
}

func TestLedger_UsageErrors(t *testing.T) {
	db := tempDB(t)
	post := func(extra ...string) []string {
		return append([]string{"--db", db, "ledger", "debit", "--user", "u", "--request-id", "k"}, extra...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"NoSubcommand", []string{"--db", db, "ledger"}, "subcommand is required: credit, debit, balance"},
		{"UnknownSubcommand", []string{"--db", db, "ledger", "refund"}, `unknown subcommand "refund"`},
		{"FlagBeforeSubcommand", []string{"--db", db, "ledger", "--user", "u", "balance"}, "-user"},
		{"NoUser", []string{"--db", db, "ledger", "balance"}, "--user is required"},
		{"NoAmount", post(), "--amount is required"},
		{"ZeroAmount", post("--amount", "0"), "positive whole number"},
		{"NegativeAmount", post("--amount", "-5"), "positive whole number"},
		{"FractionalAmount", post("--amount", "1.5"), "positive whole number"},
		{"AmountOverflow", post("--amount", "9223372036854775808"), "positive whole number"},
		{"NoRequestID", []string{"--db", db, "ledger", "credit", "--user", "u", "--amount", "5"}, "--request-id is required"},
		{"UnknownFlag", post("--amount", "5", "--currency", "EUR"), "-currency"},
		{"Positional", post("--amount", "5", "extra"), `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, "", tc.args...)
			wantCode(t, r, 2)
			wantOneLine(t, r.stderr, tc.want)
			if r.stdout != "" {
				t.Errorf("stdout %q", r.stdout)
			}
		})
	}
	if _, err := os.Stat(db); err == nil {
		t.Errorf("a usage error created the database")
	}
}

// TestLedger_ReadModels: ledgers stay out of ls, show, search and the
// conversation count of stats; verify passes; append cannot write into a
// ledger; export and import carry it.
func TestLedger_ReadModels(t *testing.T) {
	db := tempDB(t)
	for _, args := range [][]string{
		{"append", "--conversation", "c1", "--type", "conversation_started", "--extra", `{"user":"alice"}`},
		{"append", "--conversation", "c1", "--type", "user_message", "--content", "where is my refund", "--request-id", "m1"},
		{"ledger", "credit", "--user", "alice", "--amount", "70", "--request-id", "k1", "--note", "refund 12"},
		{"ledger", "debit", "--user", "alice", "--amount", "20", "--request-id", "k2", "--note", "refund fee"},
	} {
		wantCode(t, run(t, "", append([]string{"--db", db}, args...)...), 0)
	}

	r := run(t, "", "--db", db, "ls")
	wantCode(t, r, 0)
	var page struct {
		Conversations []struct {
			ConversationID string `json:"conversation_id"`
		} `json:"conversations"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &page); err != nil || len(page.Conversations) != 1 || page.Conversations[0].ConversationID != "c1" {
		t.Fatalf("ls: %s (%v), want c1 alone", r.stdout, err)
	}
	r = run(t, "", "--db", db, "show", "--conversation", "~ledger/alice")
	wantCode(t, r, 1)
	r = run(t, "", "--db", db, "search", "refund")
	wantCode(t, r, 0)
	if strings.Count(r.stdout, `"conversation_id"`) != 1 || !strings.Contains(r.stdout, `"conversation_id":"c1"`) {
		t.Fatalf("search refund: %s, want the message of c1 alone", r.stdout)
	}
	r = run(t, "", "--db", db, "verify")
	wantCode(t, r, 0)
	if strings.TrimSpace(r.stdout) != `{"ok":true,"problems":[]}` {
		t.Fatalf("verify: %s", r.stdout)
	}
	r = run(t, "", "--db", db, "stats")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, `"conversations":1,`) || !strings.Contains(r.stdout, `"ledger_entry":2`) {
		t.Fatalf("stats: %s, want 1 conversation and 2 ledger entries", r.stdout)
	}

	// An ordinary append cannot reach a ledger, whatever the type.
	for _, args := range [][]string{
		{"--type", "ledger_entry", "--extra", `{"kind":"credit","amount":1000,"balance":1050}`},
		{"--type", "user_message", "--content", "hi"},
	} {
		r = run(t, "", append([]string{"--db", db, "append", "--conversation", "~ledger/alice"}, args...)...)
		wantCode(t, r, 1)
		wantOneLine(t, r.stderr, "conversation_id", "reserved")
	}
	wantLedgerBalance(t, db, "alice", `{"user":"alice","balance":50}`)

	// export and import carry ledgers, balances and all.
	r = run(t, "", "--db", db, "export")
	wantCode(t, r, 0)
	other := tempDB(t)
	wantCode(t, run(t, r.stdout, "--db", other, "import"), 0)
	wantLedgerBalance(t, other, "alice", `{"user":"alice","balance":50}`)
	r = run(t, "", "--db", other, "ledger", "debit", "--user", "alice", "--amount", "20", "--request-id", "k2", "--note", "refund fee")
	wantCode(t, r, 0)
	if e := decodeEntry(t, r.stdout); !*e.Duplicate || e.Balance != 50 {
		t.Fatalf("retry after import: %+v", e)
	}
}

// TestEndToEnd_Ledger drives the built binary: a credit, its retry, an
// overdraft refused, a balance.
func TestEndToEnd_Ledger(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "chatlog")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	chatlog := func(args ...string) (code int, stdout, stderr string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CHATLOG_DB=")
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatalf("run %v: %v", args, err)
		}
		return code, out.String(), errOut.String()
	}

	for i, want := range []string{`"balance":300,"request_id":"t1","seq":1,`, `"duplicate":true}`} {
		code, out, errOut := chatlog("ledger", "credit", "--user", "u1", "--amount", "300", "--request-id", "t1")
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("credit %d: exit %d, stdout %q, stderr %q; want %s", i+1, code, out, errOut, want)
		}
	}
	code, out, errOut := chatlog("ledger", "debit", "--user", "u1", "--amount", "301", "--request-id", "d1")
	if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "insufficient_funds") {
		t.Fatalf("overdraft: exit %d, stdout %q, stderr %q; want exit 1 naming insufficient_funds", code, out, errOut)
	}
	code, out, errOut = chatlog("ledger", "debit", "--user", "u1", "--amount", "1", "--request-id", "t1")
	if code != 3 {
		t.Fatalf("key reuse: exit %d, stdout %q, stderr %q; want 3", code, out, errOut)
	}
	code, out, errOut = chatlog("ledger", "balance", "--user", "u1")
	if code != 0 || out != `{"user":"u1","balance":300}`+"\n" {
		t.Fatalf("balance: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
