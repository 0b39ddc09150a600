package server

import (
	"net/http"
	"time"

	"github.com/chatlog/chatlog/ledger"
)

// ledgerRequest is the body of POST /v1/users/{uid}/ledger.
type ledgerRequest struct {
	// Kind is "credit" or "debit".
	Kind string `json:"kind"`
	// Amount is a positive integer in the smallest unit; a pointer, so a
	// missing amount is told from 0.
	Amount *int64 `json:"amount"`
	// RequestID is the idempotency key; the Idempotency-Key header may
	// give it instead.
	RequestID string `json:"request_id"`
	// Note is free text kept with the entry.
	Note string `json:"note"`
}

// balanceResponse is the answer to GET /v1/users/{uid}/balance, the CLI's
// ledger balance shape.
type balanceResponse struct {
	User    string `json:"user"`
	Balance int64  `json:"balance"`
}

// postLedger is POST /v1/users/{uid}/ledger: one credit or debit,
// applied once per key. 201 with the entry when it was written, 200 with
// the stored entry and Idempotent-Replayed: true on a retry; 409
// insufficient_funds for a debit larger than the balance, 409
// idempotency_conflict for a key used with another kind, amount or note.
func (s *Server) postLedger(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req ledgerRequest
	if err := decodeBody(body, &req); err != nil {
		return err
	}
	key, err := requestKey(r, req.RequestID)
	switch {
	case err != nil:
		return err
	case key == "":
		return badRequest("request_id", "is required: without a key a retried credit or debit would be applied twice")
	case req.Kind == "":
		return badRequest("kind", `is required: "credit" or "debit"`)
	case req.Amount == nil:
		return badRequest("amount", "is required: a positive integer in the smallest unit")
	}
	start := time.Now()
	res, err := s.ledger.Post(r.Context(), ledger.Request{
		User: r.PathValue("uid"), Kind: ledger.Kind(req.Kind), Amount: *req.Amount, RequestID: key, Note: req.Note,
	})
	s.metrics.write(epLedger, time.Since(start), res.Outcome)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if res.Duplicate() {
		w.Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	return writeJSON(w, status, res.Entry)
}

// balance is GET /v1/users/{uid}/balance: {"user":U,"balance":N}, 0 for
// a user without entries.
func (s *Server) balance(w http.ResponseWriter, r *http.Request) error {
	uid := r.PathValue("uid")
	b, err := s.ledger.Balance(r.Context(), uid)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, balanceResponse{User: uid, Balance: b})
}
