package server

import (
	"net/http"
	"time"

	"github.com/chatlog/chatlog/compact"
	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// MaxLease caps lease_ms of a turn.
const MaxLease = 24 * time.Hour

// turnRequest is the body of POST .../turns.
type turnRequest struct {
	// RequestID is the user request's key; the Idempotency-Key header may
	// give it instead.
	RequestID string `json:"request_id"`
	// Content is the user message: a string or an array of parts.
	Content *events.Content `json:"content"`
	// LeaseMS is how long the turn is held without a heartbeat, in
	// milliseconds. Default 30000.
	LeaseMS *int64 `json:"lease_ms"`
}

// beginTurn is POST /v1/conversations/{cid}/turns: it records the user
// message (idempotently) and answers 201 started when the caller now
// holds the turn, 200 completed with the reply when it was answered, or
// 409 idempotency_key_in_use with Retry-After while another attempt's
// lease is live.
func (s *Server) beginTurn(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req turnRequest
	if err := decodeBody(body, &req); err != nil {
		return err
	}
	key, err := requestKey(r, req.RequestID)
	switch {
	case err != nil:
		return err
	case key == "":
		return badRequest("request_id", "is required: the user request's idempotency key names the turn")
	case req.Content == nil:
		return badRequest("content", "is required: the user message")
	}
	lease := DefaultLease
	if req.LeaseMS != nil {
		lease = time.Duration(*req.LeaseMS) * time.Millisecond
		if *req.LeaseMS <= 0 || *req.LeaseMS > MaxLease.Milliseconds() {
			return badRequest("lease_ms", "must be between 1 and %d milliseconds, got %d", MaxLease.Milliseconds(), *req.LeaseMS)
		}
	}
	start := time.Now()
	st, err := s.repo.BeginTurn(r.Context(), repo.BeginTurn{
		UserMessage: events.Event{
			ConversationID: r.PathValue("cid"),
			Type:           events.TypeUserMessage,
			Role:           events.RoleUser,
			RequestID:      key,
			Content:        req.Content,
		},
		Owner: s.opts.Owner,
		Lease: lease,
	})
	s.metrics.write(epTurns, time.Since(start), 0)
	if err != nil {
		return err
	}
	switch st.Status {
	case repo.TurnStarted:
		return writeJSON(w, http.StatusCreated, turnOutput(st))
	case repo.TurnCompleted:
		return writeJSON(w, http.StatusOK, turnOutput(st))
	}
	return &dedupe.InFlightError{Attempt: st.Attempt, LeaseExpiresAt: st.LeaseExpiresAt}
}

// turnJSON is the answer to a begun turn, as the CLI's turn prints it:
// lease_expires_at in the events' time format, only while the turn is
// held.
type turnJSON struct {
	Status         repo.TurnStatus `json:"status"`
	Attempt        int             `json:"attempt"`
	LeaseExpiresAt string          `json:"lease_expires_at,omitempty"`
	UserEvent      events.Event    `json:"user_event"`
	Reply          *events.Event   `json:"reply,omitempty"`
	LastError      string          `json:"last_error,omitempty"`
}

func turnOutput(st repo.TurnState) turnJSON {
	out := turnJSON{Status: st.Status, Attempt: st.Attempt, UserEvent: st.UserEvent, Reply: st.Reply, LastError: st.LastError}
	if !st.LeaseExpiresAt.IsZero() && st.Status != repo.TurnCompleted {
		out.LeaseExpiresAt = events.FormatTime(st.LeaseExpiresAt)
	}
	return out
}

// heartbeatRequest is the body of POST .../turns/{U}/heartbeat.
type heartbeatRequest struct {
	Attempt int `json:"attempt"`
}

// heartbeatResponse is the answer to a heartbeat.
type heartbeatResponse struct {
	Attempt        int    `json:"attempt"`
	LeaseExpiresAt string `json:"lease_expires_at"`
}

// heartbeat is POST /v1/conversations/{cid}/turns/{uid}/heartbeat: it
// extends the holder's lease by the turn's lease length.
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req heartbeatRequest
	if err := decodeBody(body, &req); err != nil {
		return err
	}
	if req.Attempt <= 0 {
		return badRequest("attempt", "is required: the attempt holding the turn, as the turn's begin returned it")
	}
	start := time.Now()
	until, err := s.repo.Heartbeat(r.Context(), r.PathValue("cid"), r.PathValue("uid"), req.Attempt)
	s.metrics.write(epHeartbeat, time.Since(start), 0)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, heartbeatResponse{Attempt: req.Attempt, LeaseExpiresAt: events.FormatTime(until)})
}

// deltaRequest is the body of POST .../deltas.
type deltaRequest struct {
	UserRequestID string `json:"user_request_id"`
	// Index is the chunk's position in the reply, from 0.
	Index *int `json:"index"`
	// Content is the chunk: a string or an array of parts.
	Content *events.Content `json:"content"`
	// ToolCalls are streamed tool-call fragments (see package compact).
	ToolCalls []events.ToolCall `json:"tool_calls"`
	// Attempt is the attempt holding the turn (0: not begun as a turn).
	Attempt int `json:"attempt"`
}

// appendDelta is POST /v1/conversations/{cid}/deltas: one streamed
// chunk, idempotent on user request, attempt and index.
func (s *Server) appendDelta(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req deltaRequest
	if err := decodeBody(body, &req); err != nil {
		return err
	}
	switch {
	case req.UserRequestID == "":
		return badRequest("user_request_id", "is required: the user request this chunk answers")
	case req.Index == nil:
		return badRequest("index", "is required: the chunk's position in the reply, from 0")
	case *req.Index < 0:
		return badRequest("index", "must not be negative, got %d", *req.Index)
	case req.Content == nil && len(req.ToolCalls) == 0:
		return badRequest("content", "is required (or tool_calls): the chunk")
	case req.Attempt < 0:
		return badRequest("attempt", "must not be negative, got %d", req.Attempt)
	}
	e := compact.Chunk(r.PathValue("cid"), req.UserRequestID, req.Attempt, *req.Index, "")
	e.Content, e.ToolCalls = req.Content, req.ToolCalls
	start := time.Now()
	res, err := s.repo.Append(r.Context(), e, repo.AppendOptions{})
	s.metrics.write(epDeltas, time.Since(start), res.Outcome)
	if err != nil {
		return err
	}
	return writeResult(w, res)
}

// finishRequest is the body of POST .../finish.
type finishRequest struct {
	UserRequestID string `json:"user_request_id"`
	// Attempt is the attempt holding the turn (0: not begun as a turn).
	Attempt    int           `json:"attempt"`
	StopReason string        `json:"stop_reason"`
	Model      string        `json:"model"`
	Provider   string        `json:"provider"`
	Usage      *events.Usage `json:"usage"`
}

// finish is POST /v1/conversations/{cid}/finish: it folds the chunks of
// one attempt into the assistant_message, 201 the first time and 200
// with Idempotent-Replayed after; 409 chunk_gap when an index is missing.
func (s *Server) finish(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req finishRequest
	if err := decodeBody(body, &req); err != nil {
		return err
	}
	switch {
	case req.UserRequestID == "":
		return badRequest("user_request_id", "is required: the user request whose reply to finish")
	case req.Attempt < 0:
		return badRequest("attempt", "must not be negative, got %d", req.Attempt)
	}
	start := time.Now()
	res, err := compact.Finish(r.Context(), s.repo, r.PathValue("cid"), req.UserRequestID, req.Attempt, compact.Options{
		StopReason: req.StopReason,
		Model:      req.Model,
		Provider:   req.Provider,
		Usage:      req.Usage,
	})
	s.metrics.write(epFinish, time.Since(start), res.Outcome)
	if err != nil {
		return err
	}
	return writeResult(w, res)
}
