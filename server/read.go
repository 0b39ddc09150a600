package server

import (
	"net/http"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
)

// messages is GET /v1/conversations/{cid}/messages: what the model sees,
// as the CLI's messages prints it: format=openai (default; an array of
// messages) or anthropic ({"system":...,"messages":[...]}), with
// as_of_seq, system, max_messages, max_turns and max_tokens.
func (s *Server) messages(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	format := q.Get("format")
	switch format {
	case "", "openai", "anthropic":
	default:
		return badRequest("format", "must be openai or anthropic, got %q", format)
	}
	var (
		opts = projection.Options{System: q.Get("system")}
		err  error
	)
	if opts.AsOfSeq, err = count(q, "as_of_seq"); err != nil {
		return err
	}
	if opts.MaxMessages, err = intCount(q, "max_messages"); err != nil {
		return err
	}
	if opts.MaxTurns, err = intCount(q, "max_turns"); err != nil {
		return err
	}
	if opts.MaxTokens, err = intCount(q, "max_tokens"); err != nil {
		return err
	}
	conv, err := projection.Read(r.Context(), s.repo, r.PathValue("cid"), opts)
	if err != nil {
		return err
	}
	if format == "anthropic" {
		req := conv.Anthropic()
		if req.Messages == nil {
			req.Messages = []projection.AnthropicMessage{}
		}
		return writeJSON(w, http.StatusOK, req)
	}
	return writeJSON(w, http.StatusOK, conv.OpenAI())
}

// showConversation is GET /v1/conversations/{cid}: the read model, as
// the CLI's show prints it; 404 when the conversation has no events.
func (s *Server) showConversation(w http.ResponseWriter, r *http.Request) error {
	sum, err := s.repo.Summary(r.Context(), r.PathValue("cid"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, sum)
}

// listConversations is GET /v1/conversations?user&source&limit&cursor:
// {"conversations":[...],"next_cursor":X}, most recently active first;
// next_cursor is "" on the last page.
func (s *Server) listConversations(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := intCount(q, "limit")
	if err != nil {
		return err
	}
	page, err := s.repo.ListConversations(r.Context(), repo.ListQuery{
		User:   q.Get("user"),
		Source: q.Get("source"),
		Limit:  limit,
		Cursor: q.Get("cursor"),
	})
	if err != nil {
		return err
	}
	if page.Conversations == nil {
		page.Conversations = []repo.Summary{}
	}
	return writeJSON(w, http.StatusOK, page)
}

// searchResults is the answer to GET /v1/search.
type searchResults struct {
	Results []repo.SearchHit `json:"results"`
}

// search is GET /v1/search?q&limit&conversation&role&source&user:
// {"results":[...]}, newest first. Any q is answered (the store treats it
// as plain words); an empty q finds nothing.
func (s *Server) search(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := intCount(q, "limit")
	if err != nil {
		return err
	}
	role := events.Role(q.Get("role"))
	switch role {
	case "", events.RoleUser, events.RoleAssistant, events.RoleTool:
	default:
		return badRequest("role", "must be user, assistant or tool, got %q", role)
	}
	hits, err := s.repo.Search(r.Context(), repo.SearchQuery{
		Query:          q.Get("q"),
		ConversationID: q.Get("conversation"),
		Role:           role,
		Source:         q.Get("source"),
		User:           q.Get("user"),
		Limit:          limit,
	})
	if err != nil {
		return err
	}
	if hits == nil {
		hits = []repo.SearchHit{}
	}
	return writeJSON(w, http.StatusOK, searchResults{Results: hits})
}
