package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

func (s *testServer) say(conv, text string) {
	s.tb.Helper()
	r := s.do("POST", "/v1/conversations/"+conv+"/events", fmt.Sprintf(`{"type":"user_message","content":%q}`, text))
	want(s.tb, r, http.StatusCreated, "")
}

func TestFork(t *testing.T) {
	s := newTestServer(t, nil)
	for _, text := range []string{"one", "two", "three"} {
		s.say("p", text)
	}
	r := s.do("POST", "/v1/conversations/p/fork", `{"at_seq":2,"new_id":"b"}`)
	want(t, r, http.StatusCreated, "")
	if m := r.json(t); m["conversation_id"] != "b" || m["parent_id"] != "p" || m["parent_seq"] != 2.0 {
		t.Errorf("fork answered %v", m)
	}
	r = s.do("POST", "/v1/conversations/p/fork", `{"at_seq":2,"new_id":"b"}`)
	want(t, r, http.StatusOK, "")
	if r.header.Get("Idempotent-Replayed") != "true" {
		t.Error("a repeated fork is not flagged as replayed")
	}
	want(t, s.do("POST", "/v1/conversations/p/fork", `{"at_seq":1,"new_id":"b"}`), http.StatusConflict, "conversation_exists")
	r = s.do("POST", "/v1/conversations/p/fork", `{"at_seq":9}`)
	want(t, r, http.StatusBadRequest, "invalid_request")
	if e, _ := r.json(t)["error"].(map[string]any); e["field"] != "at_seq" {
		t.Errorf("a fork beyond the head answered %v, want the field at_seq named", e)
	}
	want(t, s.do("POST", "/v1/conversations/nobody/fork", ``), http.StatusNotFound, "not_found")
	want(t, s.do("POST", "/v1/conversations/p/fork", `{"at_seq":-1}`), http.StatusBadRequest, "invalid_request")
	// A fork with no body forks at the head, under a new id.
	r = s.do("POST", "/v1/conversations/p/fork", ``)
	want(t, r, http.StatusCreated, "")
	if m := r.json(t); m["conversation_id"] == "" || m["parent_seq"] != 3.0 {
		t.Errorf("fork at the head answered %v", m)
	}
	// The branch reads through its parent.
	r = s.do("GET", "/v1/conversations/b/events", "")
	var page struct {
		Events []struct {
			ConversationID string `json:"conversation_id"`
			Seq            int64  `json:"seq"`
		} `json:"events"`
	}
	json.Unmarshal(r.body, &page)
	if len(page.Events) != 3 || page.Events[0].ConversationID != "p" || page.Events[2].ConversationID != "b" || page.Events[2].Seq != 3 {
		t.Errorf("branch events = %+v", page.Events)
	}
	r = s.do("GET", "/v1/conversations/b/messages", "")
	if string(r.body) != `[{"role":"user","content":"one"},{"role":"user","content":"two"}]`+"\n" {
		t.Errorf("branch messages = %s", r.body)
	}
}

func TestDeleteEndpoint(t *testing.T) {
	s := newTestServer(t, nil)
	s.say("p", "secret words")
	want(t, s.do("POST", "/v1/conversations/p/fork", `{"new_id":"b"}`), http.StatusCreated, "")
	r := s.do("DELETE", "/v1/conversations/p", "")
	want(t, r, http.StatusConflict, "has_branches")
	if m, _ := r.json(t)["error"].(map[string]any); fmt.Sprint(m["matches"]) != "[b]" {
		t.Errorf("has_branches error = %v", m)
	}
	want(t, s.do("DELETE", "/v1/conversations/p?cascade=maybe", ""), http.StatusBadRequest, "invalid_request")
	r = s.do("DELETE", "/v1/conversations/p?cascade=true", "")
	want(t, r, http.StatusNoContent, "")
	want(t, s.do("GET", "/v1/conversations/p", ""), http.StatusNotFound, "not_found")
	want(t, s.do("GET", "/v1/conversations/b", ""), http.StatusNotFound, "not_found")
	r = s.do("GET", "/v1/search?q=secret", "")
	if string(r.body) != `{"results":[]}`+"\n" {
		t.Errorf("search after delete = %s", r.body)
	}
	want(t, s.do("DELETE", "/v1/conversations/p", ""), http.StatusNoContent, "")
}

func TestTitleEndpoint(t *testing.T) {
	s := newTestServer(t, nil)
	r := s.do("PUT", "/v1/conversations/a/title", `{"title":"  Weekly\u200b sync  "}`)
	want(t, r, http.StatusOK, "")
	if m := r.json(t); m["title"] != "Weekly sync" || m["conversation_id"] != "a" {
		t.Errorf("title answered %v", m)
	}
	r = s.do("PUT", "/v1/conversations/b/title", `{"title":"Weekly sync"}`)
	want(t, r, http.StatusConflict, "title_taken")
	if m, _ := r.json(t)["error"].(map[string]any); m["held_by"] != "a" {
		t.Errorf("title_taken error = %v", m)
	}
	r = s.do("PUT", "/v1/conversations/b/title", `{"title":"Weekly sync","next":true}`)
	want(t, r, http.StatusOK, "")
	if m := r.json(t); m["title"] != "Weekly sync #2" {
		t.Errorf("next title = %v", m)
	}
	r = s.do("GET", "/v1/resolve?ref=Weekly%20sync", "")
	want(t, r, http.StatusOK, "")
	if m := r.json(t); m["conversation_id"] != "b" {
		t.Errorf("resolve = %v", m)
	}
	want(t, s.do("GET", "/v1/resolve?ref=zzz", ""), http.StatusNotFound, "not_found")
	want(t, s.do("GET", "/v1/resolve", ""), http.StatusBadRequest, "invalid_request")
	s.say("x-1", "a")
	s.say("x-2", "b")
	want(t, s.do("GET", "/v1/resolve?ref=x-", ""), http.StatusConflict, "ambiguous")
	want(t, s.do("PUT", "/v1/conversations/a/title", `{}`), http.StatusBadRequest, "invalid_request")
	r = s.do("PUT", "/v1/conversations/a/title", `{"title":""}`)
	want(t, r, http.StatusOK, "")
	if m := r.json(t); m["title"] != nil {
		t.Errorf("cleared title answered %v", m)
	}
}

func TestLifecycleEndpoints(t *testing.T) {
	s := newTestServer(t, nil)
	r := s.do("POST", "/v1/conversations/c/start", `{"source":"web","user":"ann","system":"be brief","title":"Hello"}`)
	want(t, r, http.StatusCreated, "")
	r = s.do("POST", "/v1/conversations/c/start", `{"source":"other"}`)
	want(t, r, http.StatusOK, "")
	if r.header.Get("Idempotent-Replayed") != "true" {
		t.Error("a second start is not flagged as replayed")
	}
	s.say("c", "one")
	s.say("c", "two")
	r = s.do("POST", "/v1/conversations/c/pop", "")
	want(t, r, http.StatusOK, "")
	if m := r.json(t); m["content"] != "two" {
		t.Errorf("pop answered %v", m)
	}
	want(t, s.do("PUT", "/v1/conversations/c/system", `{"system":"be verbose"}`), http.StatusCreated, "")
	r = s.do("GET", "/v1/conversations/c/messages", "")
	if string(r.body) != `[{"role":"system","content":"be verbose"},{"role":"user","content":"one"}]`+"\n" {
		t.Errorf("messages = %s", r.body)
	}
	r = s.do("POST", "/v1/conversations/c/clear", "")
	want(t, r, http.StatusOK, "")
	if m := r.json(t); m["type"] != "conversation_cleared" {
		t.Errorf("clear answered %v", m)
	}
	r = s.do("POST", "/v1/conversations/c/pop", "")
	if r.status != http.StatusOK || string(r.body) != "null\n" {
		t.Errorf("pop of nothing = %d %s, want 200 null", r.status, r.body)
	}
	want(t, s.do("POST", "/v1/conversations/c/end", `{"reason":"bye"}`), http.StatusOK, "")
	r = s.do("GET", "/v1/conversations/c", "")
	if m := r.json(t); m["ended"] != true || m["ended_reason"] != "bye" || m["user"] != "ann" || m["title"] != "Hello" {
		t.Errorf("read model after end = %v", m)
	}
	want(t, s.do("POST", "/v1/conversations/c/reopen", ""), http.StatusOK, "")
	r = s.do("GET", "/v1/conversations/c", "")
	if m := r.json(t); m["ended"] != false {
		t.Errorf("read model after reopen = %v", m)
	}
	want(t, s.do("POST", "/v1/conversations/c/end", `{"reason":3}`), http.StatusBadRequest, "invalid_request")
}

func TestUsageEndpoints(t *testing.T) {
	s := newTestServer(t, nil)
	want(t, s.do("POST", "/v1/conversations/c/start", `{"user":"ann"}`), http.StatusCreated, "")
	for range 2 {
		r := s.do("POST", "/v1/conversations/c/usage", `{"input":10,"output":2,"cost":0.25,"currency":"USD","request_id":"t1"}`)
		want(t, r, http.StatusOK, "")
		if u, _ := r.json(t)["usage"].(map[string]any); u["input"] != 10.0 || u["cost"] != 0.25 || u["currency"] != "USD" {
			t.Errorf("usage answered %v (a retry adds nothing)", u)
		}
	}
	want(t, s.do("POST", "/v1/conversations/c/usage", `{"input":11,"request_id":"t1"}`), http.StatusConflict, "idempotency_conflict")
	r := s.do("POST", "/v1/conversations/c/usage", `{"input":100,"set":true}`, "Idempotency-Key", "total-1")
	want(t, r, http.StatusOK, "")
	if u, _ := r.json(t)["usage"].(map[string]any); u["input"] != 100.0 || u["output"] != nil {
		t.Errorf("usage after set = %v", u)
	}
	r = s.do("POST", "/v1/conversations/c/usage", "")
	if u, _ := r.json(t)["usage"].(map[string]any); u["input"] != 100.0 {
		t.Errorf("usage read = %v", u)
	}
	r = s.do("GET", "/v1/users/ann/usage", "")
	want(t, r, http.StatusOK, "")
	if m := r.json(t); m["user"] != "ann" || m["usage"].(map[string]any)["input"] != 100.0 {
		t.Errorf("user usage = %v", m)
	}
	want(t, s.do("POST", "/v1/conversations/c/usage", `{"input":-1}`), http.StatusBadRequest, "invalid_request")
	want(t, s.do("POST", "/v1/conversations/c/usage", `{"tokens":1}`), http.StatusBadRequest, "invalid_request")
}

func TestEventsDescending(t *testing.T) {
	s := newTestServer(t, nil)
	for i := 1; i <= 5; i++ {
		s.say("c", fmt.Sprint("m", i))
	}
	type page struct {
		Events []struct {
			Seq int64 `json:"seq"`
		} `json:"events"`
		NextBefore *int64 `json:"next_before_seq"`
	}
	var seqs []int64
	before := int64(0)
	for {
		path := fmt.Sprintf("/v1/conversations/c/events?order=desc&limit=2&before_seq=%d", before)
		r := s.do("GET", path, "")
		want(t, r, http.StatusOK, "")
		var p page
		if err := json.Unmarshal(r.body, &p); err != nil || p.NextBefore == nil {
			t.Fatalf("%s: %s", path, r.body)
		}
		if len(p.Events) == 0 {
			break
		}
		for _, e := range p.Events {
			seqs = append(seqs, e.Seq)
		}
		before = *p.NextBefore
		if before == 1 {
			r := s.do("GET", "/v1/conversations/c/events?order=desc&before_seq=1", "")
			json.Unmarshal(r.body, &p)
			if len(p.Events) != 0 {
				t.Errorf("before_seq=1 yields %v", p.Events)
			}
			break
		}
	}
	if fmt.Sprint(seqs) != "[5 4 3 2 1]" {
		t.Errorf("paging backwards gave %v", seqs)
	}
	want(t, s.do("GET", "/v1/conversations/c/events?order=sideways", ""), http.StatusBadRequest, "invalid_request")
}

func TestCurrentEndpoints(t *testing.T) {
	s := newTestServer(t, nil)
	r := s.do("GET", "/v1/users/ann/current", "")
	want(t, r, http.StatusOK, "")
	if string(r.body) != `{"user":"ann","scope":"default","conversation_id":null}`+"\n" {
		t.Errorf("current of a new user = %s", r.body)
	}
	r = s.do("PUT", "/v1/users/ann/current", `{"scope":"tg","conversation_id":"c1"}`)
	want(t, r, http.StatusOK, "")
	if m := r.json(t); m["conversation_id"] != "c1" || m["scope"] != "tg" {
		t.Errorf("set current = %v", m)
	}
	r = s.do("GET", "/v1/users/ann/current?scope=tg", "")
	if m := r.json(t); m["conversation_id"] != "c1" {
		t.Errorf("current = %v", m)
	}
	r = s.do("PUT", "/v1/users/ann/current", `{"scope":"tg","conversation_id":null}`)
	if m := r.json(t); m["conversation_id"] != nil {
		t.Errorf("cleared current = %v", m)
	}
	want(t, s.do("PUT", "/v1/users/ann/current", `{"scope":3}`), http.StatusBadRequest, "invalid_request")
}
