package server

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/chatlog/chatlog/conversation"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// The conversation-management endpoints: thin wrappers over the
// conversation package and repo.Management, answering as the CLI's
// commands of the same names print.

// forkRequest is the body of POST .../fork.
type forkRequest struct {
	AtSeq int64  `json:"at_seq"`
	NewID string `json:"new_id"`
}

// forkResponse answers a fork.
type forkResponse struct {
	ConversationID string `json:"conversation_id"`
	ParentID       string `json:"parent_id"`
	ParentSeq      int64  `json:"parent_seq"`
}

// fork is POST /v1/conversations/{cid}/fork: 201 with the branch's id,
// 200 with Idempotent-Replayed when the same new_id was forked the same
// way before; 409 conversation_exists when new_id names another.
func (s *Server) fork(w http.ResponseWriter, r *http.Request) error {
	var req forkRequest
	if err := s.optionalBody(w, r, &req); err != nil {
		return err
	}
	if req.AtSeq < 0 {
		return badRequest("at_seq", "must not be negative, got %d", req.AtSeq)
	}
	res, err := s.repo.Fork(r.Context(), r.PathValue("cid"), req.AtSeq, req.NewID)
	var fe *events.FieldError
	if errors.As(err, &fe) && fe.Field == "extra.parent_seq" {
		// The store checks the fork point as the event's extra.parent_seq;
		// the caller sent it as at_seq.
		return badRequest("at_seq", "%s", fe.Reason)
	}
	if err != nil {
		return err
	}
	out := forkResponse{ConversationID: res.Event.ConversationID}
	out.ParentID, _ = res.Event.ExtraString("parent_id")
	out.ParentSeq, _ = res.Event.ExtraInt("parent_seq")
	status := http.StatusCreated
	if res.Duplicate() {
		w.Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	return writeJSON(w, status, out)
}

// optionalBody decodes a JSON body into v when there is one.
func (s *Server) optionalBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := s.readBody(w, r)
	if err != nil || len(body) == 0 {
		return err
	}
	return decodeBody(body, v)
}

// deleteConversation is DELETE /v1/conversations/{cid}[?cascade=true]:
// 204 once erased (also when there was nothing to erase); 409
// has_branches when it has branches and cascade is not set.
func (s *Server) deleteConversation(w http.ResponseWriter, r *http.Request) error {
	cascade, err := flag(r, "cascade")
	if err != nil {
		return err
	}
	if _, err := s.repo.Delete(r.Context(), r.PathValue("cid"), repo.DeleteOptions{Cascade: cascade}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// flag reads a boolean query parameter (absent: false).
func flag(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest(name, "must be true or false, got %q", v)
	}
	return b, nil
}

// titleRequest is the body of PUT .../title.
type titleRequest struct {
	Title *string `json:"title"`
	// Next sets the next free title of Title's lineage.
	Next bool `json:"next"`
}

// titleResponse answers a title change: the title as stored (null when
// cleared).
type titleResponse struct {
	ConversationID string  `json:"conversation_id"`
	Title          *string `json:"title"`
}

// setTitle is PUT /v1/conversations/{cid}/title: 200 with the stored
// (sanitised) title; 409 title_taken naming the conversation holding it.
func (s *Server) setTitle(w http.ResponseWriter, r *http.Request) error {
	var req titleRequest
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	if err := decodeBody(body, &req); err != nil {
		return err
	}
	if req.Title == nil {
		return badRequest("title", `is required ("" clears the title)`)
	}
	res, err := s.repo.SetTitle(r.Context(), r.PathValue("cid"), *req.Title, repo.TitleOptions{Next: req.Next})
	if err != nil {
		return err
	}
	out := titleResponse{ConversationID: res.Event.ConversationID}
	if t, _ := res.Event.ExtraString("title"); t != "" {
		out.Title = &t
	}
	return writeJSON(w, http.StatusOK, out)
}

// systemRequest is the body of PUT .../system.
type systemRequest struct {
	System *string `json:"system"`
}

// setSystem is PUT /v1/conversations/{cid}/system: replaces the system
// prompt the model sees from now on; 201 with the system_prompt_set.
func (s *Server) setSystem(w http.ResponseWriter, r *http.Request) error {
	var req systemRequest
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	if err := decodeBody(body, &req); err != nil {
		return err
	}
	if req.System == nil {
		return badRequest("system", "is required: the new system prompt")
	}
	res, err := conversation.SetSystemPrompt(r.Context(), s.repo, r.PathValue("cid"), *req.System)
	if err != nil {
		return err
	}
	return writeResult(w, res)
}

// start is POST /v1/conversations/{cid}/start: records that the
// conversation started with the body's metadata; 201 the first time, 200
// with Idempotent-Replayed (and the first start) after.
func (s *Server) start(w http.ResponseWriter, r *http.Request) error {
	var md conversation.Metadata
	if err := s.optionalBody(w, r, &md); err != nil {
		return err
	}
	res, err := conversation.Start(r.Context(), s.repo, r.PathValue("cid"), md)
	if err != nil {
		return err
	}
	return writeResult(w, res)
}

// endRequest is the optional body of POST .../end.
type endRequest struct {
	Reason string `json:"reason"`
}

// end is POST /v1/conversations/{cid}/end: 200 with the
// conversation_ended event.
func (s *Server) end(w http.ResponseWriter, r *http.Request) error {
	var req endRequest
	if err := s.optionalBody(w, r, &req); err != nil {
		return err
	}
	res, err := conversation.End(r.Context(), s.repo, r.PathValue("cid"), req.Reason)
	return writeEvent(w, res.Event, err)
}

// reopen is POST /v1/conversations/{cid}/reopen: 200 with the
// conversation_reopened event.
func (s *Server) reopen(w http.ResponseWriter, r *http.Request) error {
	res, err := conversation.Reopen(r.Context(), s.repo, r.PathValue("cid"))
	return writeEvent(w, res.Event, err)
}

// clear is POST /v1/conversations/{cid}/clear: 200 with the
// conversation_cleared event.
func (s *Server) clear(w http.ResponseWriter, r *http.Request) error {
	res, err := conversation.Clear(r.Context(), s.repo, r.PathValue("cid"))
	return writeEvent(w, res.Event, err)
}

// pop is POST /v1/conversations/{cid}/pop: 200 with the message it
// retracted, or the body null when the model sees none.
func (s *Server) pop(w http.ResponseWriter, r *http.Request) error {
	popped, _, found, err := conversation.Pop(r.Context(), s.repo, r.PathValue("cid"))
	if err != nil {
		return err
	}
	if !found {
		return writeRaw(w, http.StatusOK, []byte("null"))
	}
	return writeEvent(w, popped, nil)
}

// writeEvent answers 200 with one event.
func writeEvent(w http.ResponseWriter, e events.Event, err error) error {
	if err != nil {
		return err
	}
	b, err := e.MarshalJSON()
	if err != nil {
		return err
	}
	return writeRaw(w, http.StatusOK, b)
}

// usageRequest is the body of POST .../usage: usage to add (or, with
// set, the totals), all optional, and an idempotency key.
type usageRequest struct {
	events.Usage
	Set       bool   `json:"set"`
	RequestID string `json:"request_id"`
}

// usageResponse is a conversation's or a user's totals.
type usageResponse struct {
	ConversationID string       `json:"conversation_id,omitempty"`
	User           string       `json:"user,omitempty"`
	Usage          events.Usage `json:"usage"`
}

// usage is POST /v1/conversations/{cid}/usage: adds the body's usage (or
// states the totals with "set": true; an empty body only reads) and
// answers 200 with the conversation's totals. A key reused with other
// numbers is 409 idempotency_conflict.
func (s *Server) usage(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req usageRequest
	if len(body) > 0 {
		if err := decodeBody(body, &req); err != nil {
			return err
		}
	}
	key, err := requestKey(r, req.RequestID)
	if err != nil {
		return err
	}
	cid := r.PathValue("cid")
	if req.Usage != (events.Usage{}) || req.Set {
		if req.Set {
			_, err = conversation.SetUsage(r.Context(), s.repo, cid, req.Usage, key)
		} else {
			_, err = conversation.AddUsage(r.Context(), s.repo, cid, req.Usage, key)
		}
		if err != nil {
			return err
		}
	}
	total, err := conversation.Usage(r.Context(), s.repo, cid)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, usageResponse{ConversationID: cid, Usage: total})
}

// userUsage is GET /v1/users/{uid}/usage: the totals of every
// conversation of the user.
func (s *Server) userUsage(w http.ResponseWriter, r *http.Request) error {
	uid := r.PathValue("uid")
	total, err := s.repo.UserUsage(r.Context(), uid)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, usageResponse{User: uid, Usage: total})
}

// resolve is GET /v1/resolve?ref=X: {"conversation_id":...} for an id, a
// unique id prefix or a title; 404 when none, 409 ambiguous.
func (s *Server) resolve(w http.ResponseWriter, r *http.Request) error {
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		return badRequest("ref", "is required: an id, an id prefix or a title")
	}
	id, err := s.repo.Resolve(r.Context(), ref)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{"conversation_id": id})
}

// pointerResponse is a user's current conversation in a scope.
type pointerResponse struct {
	User           string  `json:"user"`
	Scope          string  `json:"scope"`
	ConversationID *string `json:"conversation_id"`
}

// pointerRequest is the body of PUT /v1/users/{uid}/current.
type pointerRequest struct {
	Scope          string  `json:"scope"`
	ConversationID *string `json:"conversation_id"`
}

// current is GET /v1/users/{uid}/current?scope=S: the user's current
// conversation in the scope (conversation_id null when none).
func (s *Server) current(w http.ResponseWriter, r *http.Request) error {
	return s.writePointer(w, r, r.PathValue("uid"), r.URL.Query().Get("scope"))
}

// setCurrent is PUT /v1/users/{uid}/current: body {"scope":S,
// "conversation_id":C} (null or "" clears it); 200 with the pointer.
func (s *Server) setCurrent(w http.ResponseWriter, r *http.Request) error {
	var req pointerRequest
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	if err := decodeBody(body, &req); err != nil {
		return err
	}
	id := ""
	if req.ConversationID != nil {
		id = *req.ConversationID
	}
	uid := r.PathValue("uid")
	if _, err := conversation.SetCurrent(r.Context(), s.repo, uid, req.Scope, id); err != nil {
		return err
	}
	return s.writePointer(w, r, uid, req.Scope)
}

func (s *Server) writePointer(w http.ResponseWriter, r *http.Request, uid, scope string) error {
	id, ok, err := conversation.Current(r.Context(), s.repo, uid, scope)
	if err != nil {
		return err
	}
	out := pointerResponse{User: uid, Scope: scope}
	if out.Scope == "" {
		out.Scope = conversation.DefaultScope
	}
	if ok {
		out.ConversationID = &id
	}
	return writeJSON(w, http.StatusOK, out)
}
