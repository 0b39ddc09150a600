package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// DefaultPage is the page size of GET .../events without limit.
const DefaultPage = 100

// appendEvent is POST /v1/conversations/{cid}/events: the body is an
// event (the wire format of package events), plus an optional
// expected_seq that makes the append conditional on the conversation's
// head. The conversation is the path's; a body naming another is 400.
func (s *Server) appendEvent(w http.ResponseWriter, r *http.Request) error {
	cid := r.PathValue("cid")
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	e, err := events.Decode(body)
	if err != nil {
		return err
	}
	switch {
	case e.ConversationID == "":
		e.ConversationID = cid
	case e.ConversationID != cid:
		return badRequest("conversation_id", "is %q, but the path names conversation %q", e.ConversationID, cid)
	}
	if events.IsAccountStream(e.ConversationID) {
		// Validate lets a ledger_entry into its account stream; only the
		// ledger endpoint may write one there, with its guards.
		return badRequest("conversation_id", "ids beginning with %q are reserved for per-user account streams; use POST /v1/users/{uid}/ledger",
			events.AccountStreamPrefix)
	}
	if e.RequestID, err = requestKey(r, e.RequestID); err != nil {
		return err
	}
	var opts repo.AppendOptions
	var cond struct {
		ExpectedSeq *json.RawMessage `json:"expected_seq"`
	}
	if err := json.Unmarshal(body, &cond); err == nil && cond.ExpectedSeq != nil && string(*cond.ExpectedSeq) != "null" {
		n, err := strconv.ParseInt(string(*cond.ExpectedSeq), 10, 64)
		if err != nil || n < 0 {
			return badRequest("expected_seq", "must be a non-negative integer, the seq the conversation's last event must have (0: none yet)")
		}
		opts.Expected = repo.ExpectSeq(n)
	}
	start := time.Now()
	res, err := s.repo.Append(r.Context(), e, opts)
	s.metrics.write(epEvents, time.Since(start), res.Outcome)
	if err != nil {
		return err
	}
	return writeResult(w, res)
}

// getEvents is GET /v1/conversations/{cid}/events: a page of events
// after after_seq, {"events":[...],"next_after_seq":K} where K is the
// seq of the last event returned (after_seq when none) (limit defaults to DefaultPage, capped at
// Options.MaxPage), or, with Accept: text/event-stream, the live stream.
func (s *Server) getEvents(w http.ResponseWriter, r *http.Request) error {
	if wantsEventStream(r) {
		return s.stream(w, r)
	}
	q := r.URL.Query()
	after, err := count(q, "after_seq")
	if err != nil {
		return err
	}
	before, err := count(q, "before_seq")
	if err != nil {
		return err
	}
	limit, err := intCount(q, "limit")
	if err != nil {
		return err
	}
	if limit == 0 {
		limit = DefaultPage
	}
	limit = min(limit, s.opts.MaxPage)
	rg := repo.Range{AfterSeq: after, Limit: limit}
	switch order := q.Get("order"); order {
	case "", "asc":
	case "desc":
		rg.Reverse = true
	default:
		return badRequest("order", "must be asc or desc, got %q", order)
	}
	if before > 0 {
		if before == 1 {
			rg.Limit = -1 // nothing comes before seq 1
		}
		rg.UntilSeq = before - 1
	}
	// Ascending pages continue after the last seq returned
	// (next_after_seq); descending ones before it (next_before_seq).
	next := after
	if rg.Reverse {
		next = before
	}
	evs := make([]events.Event, 0, min(limit, 64))
	if rg.Limit > 0 {
		for e, err := range s.repo.Events(r.Context(), r.PathValue("cid"), rg) {
			if err != nil {
				return err
			}
			evs = append(evs, e)
			next = e.Seq
		}
	}
	b, err := appendEvents([]byte(`{"events":`), evs)
	if err != nil {
		return err
	}
	if rg.Reverse {
		b = append(b, `,"next_before_seq":`...)
	} else {
		b = append(b, `,"next_after_seq":`...)
	}
	b = append(strconv.AppendInt(b, next, 10), '}')
	return writeRaw(w, http.StatusOK, b)
}
