package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/ledger"
	"github.com/chatlog/chatlog/repo"
)

// Error codes of the "error" object. The 409 codes are fixed by
// INTERFACE.md; the others are this package's choice (see the package
// documentation).
const (
	codeInvalid          = "invalid_request"
	codeUnauthorized     = "unauthorized"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeTooLarge         = "body_too_large"
	codeIdempotency      = "idempotency_conflict"
	codeSeq              = "seq_conflict"
	codeStaleAttempt     = "stale_attempt"
	codeInFlight         = "idempotency_key_in_use"
	codeChunkGap         = "chunk_gap"
	codeChunkConflict    = "chunk_conflict"
	codeToolCall         = "invalid_tool_call"
	codeTitleTaken       = "title_taken"
	codeAmbiguous        = "ambiguous"
	codeHasBranches      = "has_branches"
	codeExists           = "conversation_exists"
	codeUnavailable      = "unavailable"
	codeInsufficient     = "insufficient_funds"
	codeContended        = "ledger_contended"
	codeInternal         = "internal"
)

// apiError is an error response: its status, and the members of the
// body's "error" object.
type apiError struct {
	status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the request field at fault (400).
	Field string `json:"field,omitempty"`
	// Stored is the event stored under the key (idempotency_conflict).
	Stored *events.Event `json:"stored,omitempty"`
	// ExpectedSeq and HeadSeq detail a seq_conflict.
	ExpectedSeq *int64 `json:"expected_seq,omitempty"`
	HeadSeq     *int64 `json:"head_seq,omitempty"`
	// HeldBy is the conversation holding a taken title (title_taken).
	HeldBy string `json:"held_by,omitempty"`
	// Matches lists the conversations of an ambiguous reference, or the
	// branches that keep a conversation from being erased.
	Matches []string `json:"matches,omitempty"`
	// Attempt and LeaseExpiresAt say who holds a turn in flight.
	Attempt        int    `json:"attempt,omitempty"`
	LeaseExpiresAt string `json:"lease_expires_at,omitempty"`
	// Balance and Amount detail insufficient_funds: the balance the
	// debit was refused against, and the debit.
	Balance *int64 `json:"balance,omitempty"`
	Amount  *int64 `json:"amount,omitempty"`
	// retryAfter, when positive, is sent as Retry-After (seconds).
	retryAfter int
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// badRequest is a 400 naming the field at fault.
func badRequest(field, format string, args ...any) *apiError {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	return &apiError{status: http.StatusBadRequest, Code: codeInvalid, Field: field, Message: msg}
}

// errorFor maps an error from a handler to its response. It is the one
// place where the library's errors become status codes; the server's own
// request errors (a bad parameter, a missing token) arrive as *apiError
// and pass through.
func (s *Server) errorFor(err error) *apiError {
	var (
		ae        *apiError
		conflict  *repo.ConflictError
		seq       *repo.SeqConflictError
		inFlight  *dedupe.InFlightError
		gap       *compact.GapError
		tooLarge  *http.MaxBytesError
		field     *events.FieldError
		taken     *repo.TitleTakenError
		ambiguous *repo.AmbiguousError
		branches  *repo.HasBranchesError
		short     *ledger.InsufficientFundsError
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &tooLarge):
		return &apiError{status: http.StatusRequestEntityTooLarge, Code: codeTooLarge,
			Message: fmt.Sprintf("the request body is over the limit of %d bytes", tooLarge.Limit)}
	case errors.As(err, &conflict):
		stored := conflict.Stored
		return &apiError{status: http.StatusConflict, Code: codeIdempotency, Message: err.Error(), Stored: &stored}
	case errors.As(err, &seq):
		return &apiError{status: http.StatusConflict, Code: codeSeq, Message: err.Error(),
			ExpectedSeq: &seq.Expected, HeadSeq: &seq.Actual}
	case errors.Is(err, repo.ErrSeqConflict):
		return &apiError{status: http.StatusConflict, Code: codeSeq, Message: err.Error()}
	case errors.Is(err, repo.ErrStaleAttempt):
		return &apiError{status: http.StatusConflict, Code: codeStaleAttempt, Message: err.Error()}
	case errors.As(err, &inFlight):
		return &apiError{status: http.StatusConflict, Code: codeInFlight, Message: err.Error(),
			Attempt: inFlight.Attempt, LeaseExpiresAt: events.FormatTime(inFlight.LeaseExpiresAt),
			retryAfter: s.retryAfter(inFlight)}
	case errors.As(err, &short):
		return &apiError{status: http.StatusConflict, Code: codeInsufficient, Message: err.Error(),
			Balance: &short.Balance, Amount: &short.Amount}
	case errors.Is(err, ledger.ErrContended):
		// Other writers kept winning the user's ledger: nothing was
		// written, and the same request may be sent again shortly.
		return &apiError{status: http.StatusServiceUnavailable, Code: codeContended, Message: err.Error(), retryAfter: 1}
	case errors.As(err, &gap):
		return &apiError{status: http.StatusConflict, Code: codeChunkGap, Message: err.Error() + "; nothing written"}
	case errors.Is(err, compact.ErrIndexConflict):
		return &apiError{status: http.StatusConflict, Code: codeChunkConflict, Message: err.Error()}
	case errors.Is(err, compact.ErrToolCall):
		return &apiError{status: http.StatusUnprocessableEntity, Code: codeToolCall, Message: err.Error()}
	case errors.As(err, &taken):
		return &apiError{status: http.StatusConflict, Code: codeTitleTaken, Message: err.Error(), HeldBy: taken.ConversationID}
	case errors.As(err, &ambiguous):
		return &apiError{status: http.StatusConflict, Code: codeAmbiguous, Message: err.Error(), Matches: ambiguous.Matches}
	case errors.As(err, &branches):
		return &apiError{status: http.StatusConflict, Code: codeHasBranches, Message: err.Error() +
			"; erase them first or add ?cascade=true", Matches: branches.Branches}
	case errors.Is(err, repo.ErrConversationExists):
		return &apiError{status: http.StatusConflict, Code: codeExists, Message: err.Error()}
	case errors.Is(err, events.ErrInvalid):
		out := &apiError{status: http.StatusBadRequest, Code: codeInvalid, Message: err.Error()}
		if errors.As(err, &field) {
			out.Field = field.Field
		}
		return out
	case errors.Is(err, repo.ErrNotFound):
		return &apiError{status: http.StatusNotFound, Code: codeNotFound, Message: err.Error()}
	case errors.Is(err, repo.ErrClosed):
		return &apiError{status: http.StatusServiceUnavailable, Code: codeUnavailable, Message: "the server is shutting down"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The client went away or the server is stopping; whoever
		// still reads gets a retryable answer.
		return &apiError{status: http.StatusServiceUnavailable, Code: codeUnavailable, Message: "the request was cancelled"}
	}
	return &apiError{status: http.StatusInternalServerError, Code: codeInternal, Message: "internal server error"}
}

// retryAfter is the whole seconds left on a lease, rounded up, at least 1.
func (s *Server) retryAfter(e *dedupe.InFlightError) int {
	left := e.LeaseExpiresAt.Sub(s.opts.Now()).Seconds()
	return max(1, int(math.Ceil(min(left, math.MaxInt32))))
}

// writeError writes err as the JSON error response and counts conflicts.
// Internal errors are logged, not shown.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := s.errorFor(err)
	switch {
	case ae.status >= http.StatusInternalServerError && ae.Code == codeInternal:
		s.log.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
	case ae.status == http.StatusConflict:
		s.metrics.conflict(endpointOf(r), ae.Code)
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.retryAfter))
	}
	writeJSON(w, ae.status, struct {
		Error *apiError `json:"error"`
	}{ae})
}
