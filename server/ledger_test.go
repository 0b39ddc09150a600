package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/ledger"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/server"
)

func TestServer_Ledger(t *testing.T) {
	s := newTestServer(t, nil)
	const path = "/v1/users/alice/ledger"
	credit := `{"kind":"credit","amount":500,"request_id":"topup-1","note":"card 4242"}`
	balance := func(t *testing.T, user, want string) {
		t.Helper()
		r := s.do("GET", "/v1/users/"+user+"/balance", "")
		wantStatus(t, r, http.StatusOK)
		if got := strings.TrimSpace(string(r.body)); got != want {
			t.Fatalf("balance of %s: %s, want %s", user, got, want)
		}
	}

	t.Run("Created", func(t *testing.T) {
		r := s.do("POST", path, credit)
		want(t, r, http.StatusCreated, "")
		m := r.json(t)
		if m["user"] != "alice" || m["kind"] != "credit" || m["amount"] != 500.0 || m["balance"] != 500.0 ||
			m["note"] != "card 4242" || m["request_id"] != "topup-1" || m["seq"] != 1.0 || m["id"] == "" || m["created_at"] == nil {
			t.Fatalf("entry %s", r.body)
		}
		if r.header.Get("Idempotent-Replayed") != "" {
			t.Fatal("a new entry is flagged Idempotent-Replayed")
		}
	})
	t.Run("Retry", func(t *testing.T) {
		want(t, s.do("POST", path, `{"kind":"debit","amount":100,"request_id":"d1"}`), http.StatusCreated, "")
		// The credit's retry comes after the balance moved: the stored
		// entry (balance 500) is the answer.
		r := s.do("POST", path, credit)
		want(t, r, http.StatusOK, "")
		if r.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("retry not flagged: %v", r.header)
		}
		if m := r.json(t); m["seq"] != 1.0 || m["balance"] != 500.0 {
			t.Fatalf("retry answered %s", r.body)
		}
		balance(t, "alice", `{"user":"alice","balance":400}`)
	})
	t.Run("KeyInHeader", func(t *testing.T) {
		r := s.do("POST", path, `{"kind":"debit","amount":50}`, "Idempotency-Key", "d2")
		want(t, r, http.StatusCreated, "")
		if m := r.json(t); m["request_id"] != "d2" || m["balance"] != 350.0 {
			t.Fatalf("header key: %s", r.body)
		}
		want(t, s.do("POST", path, `{"kind":"debit","amount":50,"request_id":"d2"}`), http.StatusOK, "")
		r = s.do("POST", path, `{"kind":"debit","amount":50,"request_id":"a"}`, "Idempotency-Key", "b")
		want(t, r, http.StatusBadRequest, "invalid_request")
		if f := r.errorField(t); f != "request_id" {
			t.Fatalf("field %q, want request_id", f)
		}
	})
	t.Run("IdempotencyConflict", func(t *testing.T) {
		for _, body := range []string{
			`{"kind":"credit","amount":501,"request_id":"topup-1","note":"card 4242"}`,
			`{"kind":"debit","amount":500,"request_id":"topup-1","note":"card 4242"}`,
			`{"kind":"credit","amount":500,"request_id":"topup-1"}`,
		} {
			r := s.do("POST", path, body)
			want(t, r, http.StatusConflict, "idempotency_conflict")
			stored, _ := r.json(t)["error"].(map[string]any)["stored"].(map[string]any)
			extra, _ := stored["extra"].(map[string]any)
			if stored["seq"] != 1.0 || extra["amount"] != 500.0 || extra["kind"] != "credit" {
				t.Fatalf("conflict does not carry the stored entry: %s", r.body)
			}
		}
	})
	t.Run("InsufficientFunds", func(t *testing.T) {
		debit := `{"kind":"debit","amount":351,"request_id":"d3"}`
		r := s.do("POST", path, debit)
		want(t, r, http.StatusConflict, "insufficient_funds")
		e := r.json(t)["error"].(map[string]any)
		if e["balance"] != 350.0 || e["amount"] != 351.0 {
			t.Fatalf("insufficient_funds details: %s", r.body)
		}
		balance(t, "alice", `{"user":"alice","balance":350}`)
		// Nothing was written under the key: funded, it goes through.
		want(t, s.do("POST", path, `{"kind":"credit","amount":1,"request_id":"c2"}`), http.StatusCreated, "")
		r = s.do("POST", path, debit)
		want(t, r, http.StatusCreated, "")
		if r.json(t)["balance"] != 0.0 {
			t.Fatalf("debit once funded: %s", r.body)
		}
		want(t, s.do("POST", "/v1/users/nobody/ledger", `{"kind":"debit","amount":1,"request_id":"x"}`), http.StatusConflict, "insufficient_funds")
	})
	t.Run("BadRequest", func(t *testing.T) {
		want(t, s.do("POST", "/v1/users/rich/ledger", `{"kind":"credit","amount":10,"request_id":"c"}`), http.StatusCreated, "")
		for _, tc := range []struct{ name, path, body, field string }{
			{"MalformedJSON", path, `{"kind":`, ""},
			{"NotAnObject", path, `[1]`, ""},
			{"Empty", path, ``, ""},
			{"UnknownMember", path, `{"kind":"credit","amount":1,"request_id":"k","currency":"EUR"}`, "currency"},
			{"NoKey", path, `{"kind":"credit","amount":1}`, "request_id"},
			{"NoKind", path, `{"amount":1,"request_id":"k"}`, "kind"},
			{"UnknownKind", path, `{"kind":"refund","amount":1,"request_id":"k"}`, "kind"},
			{"NoAmount", path, `{"kind":"credit","request_id":"k"}`, "amount"},
			{"ZeroAmount", path, `{"kind":"credit","amount":0,"request_id":"k"}`, "amount"},
			{"NegativeAmount", path, `{"kind":"credit","amount":-5,"request_id":"k"}`, "amount"},
			{"FractionalAmount", path, `{"kind":"credit","amount":1.5,"request_id":"k"}`, "amount"},
			{"AmountOverflow", path, `{"kind":"credit","amount":9223372036854775808,"request_id":"k"}`, "amount"},
			{"AmountString", path, `{"kind":"credit","amount":"5","request_id":"k"}`, "amount"},
			{"BalanceOverflow", "/v1/users/rich/ledger", `{"kind":"credit","amount":9223372036854775807,"request_id":"k"}`, "amount"},
			{"ControlInUser", "/v1/users/a%09b/ledger", `{"kind":"credit","amount":1,"request_id":"k"}`, "user"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := s.do("POST", tc.path, tc.body)
				want(t, r, http.StatusBadRequest, "invalid_request")
				if f := r.errorField(t); f != tc.field {
					t.Fatalf("field %q, want %q; body %s", f, tc.field, r.body)
				}
			})
		}
		r := s.do("GET", "/v1/users/a%09b/balance", "")
		want(t, r, http.StatusBadRequest, "invalid_request")
		balance(t, "alice", `{"user":"alice","balance":0}`)
	})
	t.Run("Balance", func(t *testing.T) {
		balance(t, "bob", `{"user":"bob","balance":0}`)
		want(t, s.do("POST", "/v1/users/b%2Fc/ledger", `{"kind":"credit","amount":7,"request_id":"k"}`), http.StatusCreated, "")
		balance(t, "b%2Fc", `{"user":"b/c","balance":7}`)
	})
	t.Run("ReservedIDs", func(t *testing.T) {
		// An ordinary append cannot reach a ledger, whatever it carries.
		for _, body := range []string{
			`{"type":"ledger_entry","extra":{"kind":"credit","amount":1000,"balance":1000}}`,
			`{"type":"user_message","content":"hi"}`,
		} {
			r := s.do("POST", "/v1/conversations/~ledger%2Falice/events", body)
			want(t, r, http.StatusBadRequest, "invalid_request")
			if f := r.errorField(t); f != "conversation_id" {
				t.Fatalf("field %q, want conversation_id; body %s", f, r.body)
			}
		}
		balance(t, "alice", `{"user":"alice","balance":0}`)
		// Ledgers are not conversations.
		r := s.do("GET", "/v1/conversations", "")
		want(t, r, http.StatusOK, "")
		if strings.Contains(string(r.body), "~ledger") {
			t.Fatalf("the conversation list shows a ledger: %s", r.body)
		}
		want(t, s.do("GET", "/v1/conversations/~ledger%2Falice", ""), http.StatusNotFound, "not_found")
	})
	t.Run("Metrics", func(t *testing.T) {
		text := string(s.do("GET", "/metrics", "").body)
		for _, line := range []string{
			`chatlog_http_duplicates_total{endpoint="ledger"} 2`,
			`chatlog_http_conflicts_total{code="insufficient_funds",endpoint="ledger"} 2`,
			`chatlog_http_conflicts_total{code="idempotency_conflict",endpoint="ledger"} 3`,
		} {
			if !strings.Contains(text, line+"\n") {
				t.Errorf("metrics lack %q", line)
			}
		}
	})
}

// TestServer_Ledger_sameKeyAtOnce: many clients send one debit at once;
// it is applied once, and all but one are told it was a retry.
func TestServer_Ledger_sameKeyAtOnce(t *testing.T) {
	s := newTestServer(t, nil)
	want(t, s.do("POST", "/v1/users/u/ledger", `{"kind":"credit","amount":100,"request_id":"c"}`), http.StatusCreated, "")
	const clients = 20
	statuses := make([]int, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			r := doRequest(t, s.client, s.url, "POST", "/v1/users/u/ledger", `{"kind":"debit","amount":60,"request_id":"d"}`)
			statuses[i] = r.status
		})
	}
	wg.Wait()
	created := 0
	for _, st := range statuses {
		switch st {
		case http.StatusCreated:
			created++
		case http.StatusOK:
		default:
			t.Fatalf("statuses %v: want one 201 and the rest 200", statuses)
		}
	}
	if created != 1 {
		t.Fatalf("statuses %v: want one 201 and the rest 200", statuses)
	}
	r := s.do("GET", "/v1/users/u/balance", "")
	if strings.TrimSpace(string(r.body)) != `{"user":"u","balance":40}` {
		t.Fatalf("balance %s", r.body)
	}
}

// losingRepo loses every conditional append, as if other writers always
// moved the ledger's head first.
type losingRepo struct{ repo.Repo }

func (l losingRepo) Append(ctx context.Context, e events.Event, opts repo.AppendOptions) (repo.Result, error) {
	if want, ok := opts.Expected.Seq(); ok {
		return repo.Result{}, &repo.SeqConflictError{ConversationID: e.ConversationID, Expected: want, Actual: want + 1}
	}
	return l.Repo.Append(ctx, e, opts)
}

func TestServer_Ledger_contended(t *testing.T) {
	r := openRepo(t, filepath.Join(t.TempDir(), "x.db"))
	ts := httptest.NewServer(server.New(losingRepo{r}, quiet(&server.Options{Ledger: &ledger.Options{MaxAttempts: 3}})))
	t.Cleanup(ts.Close)
	resp := doRequest(t, ts.Client(), ts.URL, "POST", "/v1/users/u/ledger", `{"kind":"credit","amount":1,"request_id":"k"}`)
	want(t, resp, http.StatusServiceUnavailable, "ledger_contended")
	if resp.header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q, want 1", resp.header.Get("Retry-After"))
	}
	if head, err := r.Head(context.Background(), "~ledger/u"); err != nil || head != 0 {
		t.Fatalf("head %d, %v: a contended post wrote", head, err)
	}
}

func wantStatus(tb testing.TB, r response, status int) {
	tb.Helper()
	if r.status != status {
		tb.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
}
