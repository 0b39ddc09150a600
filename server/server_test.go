package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatlog/chatlog/server"
)

func TestServer_AppendEvent(t *testing.T) {
	s := newTestServer(t, nil)
	const path = "/v1/conversations/c1/events"
	body := `{"type":"user_message","content":"hello","request_id":"k1"}`

	t.Run("Created", func(t *testing.T) {
		r := s.do("POST", path, body)
		want(t, r, http.StatusCreated, "")
		m := r.json(t)
		if m["seq"] != 1.0 || m["conversation_id"] != "c1" || m["request_id"] != "k1" || m["content"] != "hello" {
			t.Fatalf("stored event %s", r.body)
		}
		if r.header.Get("Idempotent-Replayed") != "" {
			t.Fatal("a new event is flagged Idempotent-Replayed")
		}
	})
	t.Run("Retry", func(t *testing.T) {
		r := s.do("POST", path, body)
		want(t, r, http.StatusOK, "")
		if r.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("retry not flagged: %v", r.header)
		}
		if r.json(t)["seq"] != 1.0 {
			t.Fatalf("retry answered %s", r.body)
		}
	})
	t.Run("KeyInHeader", func(t *testing.T) {
		r := s.do("POST", path, `{"type":"user_message","content":"two"}`, "Idempotency-Key", "k2")
		want(t, r, http.StatusCreated, "")
		if r.json(t)["request_id"] != "k2" {
			t.Fatalf("header key not used: %s", r.body)
		}
		// The same key in the body is the same request.
		r = s.do("POST", path, `{"type":"user_message","content":"two","request_id":"k2"}`)
		want(t, r, http.StatusOK, "")
		// Both, agreeing.
		r = s.do("POST", path, `{"type":"user_message","content":"two","request_id":"k2"}`, "Idempotency-Key", "k2")
		want(t, r, http.StatusOK, "")
	})
	t.Run("KeysDiffer", func(t *testing.T) {
		r := s.do("POST", path, `{"type":"user_message","content":"x","request_id":"a"}`, "Idempotency-Key", "b")
		want(t, r, http.StatusBadRequest, "invalid_request")
		if f := r.errorField(t); f != "request_id" {
			t.Fatalf("field %q, want request_id", f)
		}
	})
	t.Run("IdempotencyConflict", func(t *testing.T) {
		r := s.do("POST", path, `{"type":"user_message","content":"other","request_id":"k1"}`)
		want(t, r, http.StatusConflict, "idempotency_conflict")
		stored, _ := r.json(t)["error"].(map[string]any)["stored"].(map[string]any)
		if stored["content"] != "hello" || stored["seq"] != 1.0 {
			t.Fatalf("conflict does not carry the stored event: %s", r.body)
		}
	})
	t.Run("SeqConflict", func(t *testing.T) {
		r := s.do("POST", path, `{"type":"user_message","content":"x","expected_seq":1}`)
		want(t, r, http.StatusConflict, "seq_conflict")
		e := r.json(t)["error"].(map[string]any)
		if e["expected_seq"] != 1.0 || e["head_seq"] != 2.0 {
			t.Fatalf("seq conflict details: %s", r.body)
		}
		r = s.do("POST", path, `{"type":"user_message","content":"x","expected_seq":2}`)
		want(t, r, http.StatusCreated, "")
		if r.json(t)["seq"] != 3.0 {
			t.Fatalf("conditional append: %s", r.body)
		}
		r = s.do("POST", path, `{"type":"user_message","content":"x","expected_seq":-1}`)
		want(t, r, http.StatusBadRequest, "invalid_request")
		if f := r.errorField(t); f != "expected_seq" {
			t.Fatalf("field %q, want expected_seq", f)
		}
	})
	t.Run("Invalid", func(t *testing.T) {
		for _, tc := range []struct{ body, field string }{
			{`{"type":"user_message","content":`, ""},
			{`not json`, "event"},
			{`[1,2]`, "event"},
			{``, ""},
			{`{"type":"no_such_type","content":"x"}`, "type"},
			{`{"type":"user_message","content":42}`, "content"},
			{`{"type":"user_message","role":"assistant","content":"x"}`, "role"},
			{`{"type":"user_message","content":"x","conversation_id":"other"}`, "conversation_id"},
			{`{"type":"user_message","content":"x","extra":[1]}`, "extra"},
		} {
			r := s.do("POST", path, tc.body)
			want(t, r, http.StatusBadRequest, "invalid_request")
			if tc.field != "" && r.errorField(t) != tc.field {
				t.Errorf("body %q: field %q, want %q (%s)", tc.body, r.errorField(t), tc.field, r.body)
			}
			if !strings.Contains(string(r.body), `"message":"`) {
				t.Errorf("body %q: no message: %s", tc.body, r.body)
			}
		}
	})
	t.Run("TooLarge", func(t *testing.T) {
		big := `{"type":"user_message","content":"` + strings.Repeat("x", server.DefaultMaxBody) + `"}`
		r := s.do("POST", path, big)
		want(t, r, http.StatusRequestEntityTooLarge, "body_too_large")
	})
	t.Run("TooLargeChunked", func(t *testing.T) {
		// Without Content-Length the limit holds while reading.
		small := newTestServer(t, &server.Options{MaxBody: 100})
		req, _ := http.NewRequest("POST", small.url+path, strings.NewReader(`{"type":"user_message","content":"`+strings.Repeat("y", 200)+`"}`))
		req.ContentLength = -1
		resp, err := small.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413", resp.StatusCode)
		}
	})
	t.Run("Log", func(t *testing.T) {
		r := s.do("GET", path, "")
		want(t, r, http.StatusOK, "")
		var page struct {
			Events []map[string]any `json:"events"`
			Next   int64            `json:"next_after_seq"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Events) != 3 || page.Next != 3 {
			t.Fatalf("log after the subtests: %s", r.body)
		}
	})
}

func TestServer_GetEvents(t *testing.T) {
	s := newTestServer(t, &server.Options{MaxPage: 3})
	for i := range 5 {
		want(t, s.do("POST", "/v1/conversations/c/events", fmt.Sprintf(`{"type":"user_message","content":"m%d"}`, i)), http.StatusCreated, "")
	}
	type page struct {
		Events []struct {
			Seq int64 `json:"seq"`
		} `json:"events"`
		Next *int64 `json:"next_after_seq"`
	}
	get := func(query string) page {
		t.Helper()
		r := s.do("GET", "/v1/conversations/c/events"+query, "")
		want(t, r, http.StatusOK, "")
		var p page
		if err := json.Unmarshal(r.body, &p); err != nil || p.Events == nil || p.Next == nil {
			t.Fatalf("page %s: %v", r.body, err)
		}
		return p
	}
	t.Run("Paging", func(t *testing.T) {
		var seqs []int64
		after := int64(0)
		for range 10 {
			p := get("?limit=2&after_seq=" + strconv.FormatInt(after, 10))
			if len(p.Events) == 0 {
				if *p.Next != after {
					t.Fatalf("empty page: next_after_seq %d, want %d", *p.Next, after)
				}
				break
			}
			for _, e := range p.Events {
				seqs = append(seqs, e.Seq)
			}
			if *p.Next != p.Events[len(p.Events)-1].Seq {
				t.Fatalf("next_after_seq %d is not the last seq returned", *p.Next)
			}
			after = *p.Next
		}
		if fmt.Sprint(seqs) != "[1 2 3 4 5]" {
			t.Fatalf("paged seqs %v", seqs)
		}
	})
	t.Run("Capped", func(t *testing.T) {
		if p := get("?limit=100"); len(p.Events) != 3 {
			t.Fatalf("limit 100 with MaxPage 3 returned %d events", len(p.Events))
		}
	})
	t.Run("UnknownConversation", func(t *testing.T) {
		r := s.do("GET", "/v1/conversations/nobody/events?after_seq=7", "")
		want(t, r, http.StatusOK, "")
		if string(r.body) != `{"events":[],"next_after_seq":7}`+"\n" {
			t.Fatalf("unknown conversation: %s", r.body)
		}
	})
	t.Run("BadParameters", func(t *testing.T) {
		for _, q := range []string{"?after_seq=-1", "?after_seq=x", "?limit=-2", "?limit=1.5"} {
			r := s.do("GET", "/v1/conversations/c/events"+q, "")
			want(t, r, http.StatusBadRequest, "invalid_request")
		}
	})
}

func TestServer_Turns(t *testing.T) {
	s := newTestServer(t, nil)
	const base = "/v1/conversations/t1"
	begin := func(content string, leaseMS int) response {
		return s.do("POST", base+"/turns", fmt.Sprintf(`{"request_id":"u1","content":%q,"lease_ms":%d}`, content, leaseMS))
	}

	r := begin("What is 2+2?", 60)
	want(t, r, http.StatusCreated, "")
	if !strings.HasPrefix(string(r.body), `{"status":"started","attempt":1,"lease_expires_at":"`) {
		t.Fatalf("started: %s", r.body)
	}
	if ue, _ := r.json(t)["user_event"].(map[string]any); ue["content"] != "What is 2+2?" || ue["seq"] != 1.0 {
		t.Fatalf("user_event: %s", r.body)
	}

	t.Run("InFlight", func(t *testing.T) {
		r := begin("What is 2+2?", 60)
		want(t, r, http.StatusConflict, "idempotency_key_in_use")
		ra, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || ra < 1 {
			t.Fatalf("Retry-After %q, want whole seconds >= 1", r.header.Get("Retry-After"))
		}
		if e := r.json(t)["error"].(map[string]any); e["attempt"] != 1.0 || e["lease_expires_at"] == nil {
			t.Fatalf("in flight details: %s", r.body)
		}
	})
	t.Run("OtherContent", func(t *testing.T) {
		want(t, begin("What is 3+3?", 60), http.StatusConflict, "idempotency_conflict")
	})
	t.Run("TakeOver", func(t *testing.T) {
		time.Sleep(80 * time.Millisecond) // the 60 ms lease lapses
		r := begin("What is 2+2?", 30000)
		want(t, r, http.StatusCreated, "")
		if r.json(t)["attempt"] != 2.0 {
			t.Fatalf("take-over: %s", r.body)
		}
	})
	delta := func(index, attempt int, text string) response {
		return s.do("POST", base+"/deltas", fmt.Sprintf(`{"user_request_id":"u1","index":%d,"content":%q,"attempt":%d}`, index, text, attempt))
	}
	t.Run("Deltas", func(t *testing.T) {
		want(t, s.do("POST", base+"/deltas", `{"user_request_id":"u1","index":0,"content":"4"}`), http.StatusConflict, "stale_attempt")
		want(t, delta(0, 1, "4"), http.StatusConflict, "stale_attempt")
		r := delta(0, 2, "2+2 ")
		want(t, r, http.StatusCreated, "")
		if m := r.json(t); m["type"] != "assistant_delta" || m["request_id"] != "delta:u1:2:0" {
			t.Fatalf("chunk: %s", r.body)
		}
		r = delta(0, 2, "2+2 ")
		want(t, r, http.StatusOK, "")
		if r.header.Get("Idempotent-Replayed") != "true" {
			t.Fatal("re-sent chunk not flagged")
		}
		want(t, delta(0, 2, "other"), http.StatusConflict, "idempotency_conflict")
		want(t, delta(2, 2, "4."), http.StatusCreated, "")
	})
	t.Run("Heartbeat", func(t *testing.T) {
		r := s.do("POST", base+"/turns/u1/heartbeat", `{"attempt":2}`)
		want(t, r, http.StatusOK, "")
		if m := r.json(t); m["attempt"] != 2.0 || m["lease_expires_at"] == nil {
			t.Fatalf("heartbeat: %s", r.body)
		}
		want(t, s.do("POST", base+"/turns/u1/heartbeat", `{"attempt":1}`), http.StatusConflict, "stale_attempt")
		want(t, s.do("POST", base+"/turns/nope/heartbeat", `{"attempt":1}`), http.StatusNotFound, "not_found")
		want(t, s.do("POST", base+"/turns/u1/heartbeat", `{}`), http.StatusBadRequest, "invalid_request")
	})
	finish := func(attempt int) response {
		return s.do("POST", base+"/finish", fmt.Sprintf(`{"user_request_id":"u1","attempt":%d,"stop_reason":"end_turn","model":"m1","usage":{"input":7,"output":2}}`, attempt))
	}
	t.Run("Finish", func(t *testing.T) {
		want(t, finish(2), http.StatusConflict, "chunk_gap") // index 1 is missing
		want(t, finish(1), http.StatusConflict, "stale_attempt")
		want(t, delta(1, 2, "is "), http.StatusCreated, "")
		r := finish(2)
		want(t, r, http.StatusCreated, "")
		m := r.json(t)
		if m["type"] != "assistant_message" || m["content"] != "2+2 is 4." || m["stop_reason"] != "end_turn" || m["model"] != "m1" {
			t.Fatalf("finish: %s", r.body)
		}
		if u, _ := m["usage"].(map[string]any); u["input"] != 7.0 {
			t.Fatalf("finish usage: %s", r.body)
		}
		r = finish(2)
		want(t, r, http.StatusOK, "")
		if r.header.Get("Idempotent-Replayed") != "true" || r.json(t)["seq"] != m["seq"] {
			t.Fatalf("second finish: %v %s", r.header, r.body)
		}
	})
	t.Run("Completed", func(t *testing.T) {
		r := begin("What is 2+2?", 60)
		want(t, r, http.StatusOK, "")
		m := r.json(t)
		if m["status"] != "completed" || m["lease_expires_at"] != nil {
			t.Fatalf("completed: %s", r.body)
		}
		if reply, _ := m["reply"].(map[string]any); reply["content"] != "2+2 is 4." {
			t.Fatalf("completed reply: %s", r.body)
		}
		want(t, delta(3, 2, "late"), http.StatusConflict, "stale_attempt")
		want(t, s.do("POST", base+"/turns/u1/heartbeat", `{"attempt":2}`), http.StatusConflict, "stale_attempt")
	})
	t.Run("BadRequests", func(t *testing.T) {
		for _, tc := range []struct{ path, body, field string }{
			{"/turns", `{"content":"x"}`, "request_id"},
			{"/turns", `{"request_id":"u9"}`, "content"},
			{"/turns", `{"request_id":"u9","content":"x","lease_ms":0}`, "lease_ms"},
			{"/turns", `{"request_id":"u9","content":"x","lease_ms":"1s"}`, "lease_ms"},
			{"/turns", `{"request_id":"u9","content":"x","lease":1000}`, "lease"},
			{"/turns", `[]`, ""},
			{"/turns", `{`, ""},
			{"/deltas", `{"index":0,"content":"x"}`, "user_request_id"},
			{"/deltas", `{"user_request_id":"u9","content":"x"}`, "index"},
			{"/deltas", `{"user_request_id":"u9","index":-1,"content":"x"}`, "index"},
			{"/deltas", `{"user_request_id":"u9","index":0}`, "content"},
			{"/finish", `{"attempt":1}`, "user_request_id"},
			{"/finish", `{"user_request_id":"u1","usage":{"input":"x"}}`, "usage.input"},
		} {
			r := s.do("POST", base+tc.path, tc.body)
			want(t, r, http.StatusBadRequest, "invalid_request")
			if r.errorField(t) != tc.field {
				t.Errorf("%s %s: field %q, want %q (%s)", tc.path, tc.body, r.errorField(t), tc.field, r.body)
			}
		}
	})
	t.Run("KeyInHeader", func(t *testing.T) {
		r := s.do("POST", base+"/turns", `{"content":"hi"}`, "Idempotency-Key", "u5")
		want(t, r, http.StatusCreated, "")
		r = s.do("POST", base+"/turns", `{"request_id":"u6","content":"hi"}`, "Idempotency-Key", "u5")
		want(t, r, http.StatusBadRequest, "invalid_request")
	})
}

func TestServer_StreamWithoutTurn(t *testing.T) {
	s := newTestServer(t, nil)
	const base = "/v1/conversations/s1"
	want(t, s.do("POST", base+"/events", `{"type":"user_message","content":"hi","request_id":"q"}`), http.StatusCreated, "")
	for i, text := range []string{"Hel", "lo"} {
		want(t, s.do("POST", base+"/deltas", fmt.Sprintf(`{"user_request_id":"q","index":%d,"content":%q}`, i, text)), http.StatusCreated, "")
	}
	r := s.do("POST", base+"/finish", `{"user_request_id":"q"}`)
	want(t, r, http.StatusCreated, "")
	if r.json(t)["content"] != "Hello" {
		t.Fatalf("finish: %s", r.body)
	}
	want(t, s.do("POST", base+"/finish", `{"user_request_id":"never"}`), http.StatusNotFound, "not_found")
}

func TestServer_Messages(t *testing.T) {
	s := newTestServer(t, nil)
	const base = "/v1/conversations/m1"
	for i, ev := range []string{
		`{"type":"conversation_started","extra":{"system":"Be terse."}}`,
		`{"type":"user_message","content":"first"}`,
		`{"type":"assistant_message","content":"one"}`,
		`{"type":"user_message","content":"second"}`,
		`{"type":"assistant_message","content":"two"}`,
	} {
		want(t, s.do("POST", base+"/events", ev, "Idempotency-Key", strconv.Itoa(i)), http.StatusCreated, "")
	}
	get := func(query string) string {
		t.Helper()
		r := s.do("GET", base+"/messages"+query, "")
		want(t, r, http.StatusOK, "")
		return strings.TrimSpace(string(r.body))
	}
	if got := get(""); got != `[{"role":"system","content":"Be terse."},{"role":"user","content":"first"},{"role":"assistant","content":"one"},{"role":"user","content":"second"},{"role":"assistant","content":"two"}]` {
		t.Errorf("openai: %s", got)
	}
	if got := get("?format=openai&as_of_seq=3&system=Hi"); got != `[{"role":"system","content":"Hi"},{"role":"user","content":"first"},{"role":"assistant","content":"one"}]` {
		t.Errorf("openai as of 3: %s", got)
	}
	if got := get("?format=anthropic&max_turns=1"); got != `{"system":"Be terse.","messages":[{"role":"user","content":[{"type":"text","text":"second"}]},{"role":"assistant","content":[{"type":"text","text":"two"}]}]}` {
		t.Errorf("anthropic, one turn: %s", got)
	}
	if got := get("?max_messages=2&max_tokens=1000"); !strings.Contains(got, `"second"`) || strings.Contains(got, `"first"`) {
		t.Errorf("two messages: %s", got)
	}
	r := s.do("GET", "/v1/conversations/none/messages?format=anthropic", "")
	want(t, r, http.StatusOK, "")
	if strings.TrimSpace(string(r.body)) != `{"messages":[]}` {
		t.Errorf("unknown conversation, anthropic: %s", r.body)
	}
	for _, q := range []string{"?format=gemini", "?as_of_seq=-1", "?max_messages=x", "?max_tokens=-5", "?max_turns=99999999999"} {
		want(t, s.do("GET", base+"/messages"+q, ""), http.StatusBadRequest, "invalid_request")
	}
}

func TestServer_Conversations(t *testing.T) {
	s := newTestServer(t, nil)
	for i := range 3 {
		cid := fmt.Sprintf("conv-%d", i)
		want(t, s.do("POST", "/v1/conversations/"+cid+"/events", `{"type":"conversation_started","extra":{"user":"alice","source":"web"}}`), http.StatusCreated, "")
		want(t, s.do("POST", "/v1/conversations/"+cid+"/events", fmt.Sprintf(`{"type":"user_message","content":"question %d"}`, i)), http.StatusCreated, "")
	}
	want(t, s.do("POST", "/v1/conversations/other/events", `{"type":"user_message","content":"hi"}`), http.StatusCreated, "")

	t.Run("Show", func(t *testing.T) {
		r := s.do("GET", "/v1/conversations/conv-1", "")
		want(t, r, http.StatusOK, "")
		if m := r.json(t); m["conversation_id"] != "conv-1" || m["preview"] != "question 1" || m["user"] != "alice" || m["messages"] != 1.0 {
			t.Fatalf("show: %s", r.body)
		}
		want(t, s.do("GET", "/v1/conversations/absent", ""), http.StatusNotFound, "not_found")
	})
	t.Run("List", func(t *testing.T) {
		var ids []string
		cursor := ""
		for range 5 {
			r := s.do("GET", "/v1/conversations?user=alice&limit=2&cursor="+url.QueryEscape(cursor), "")
			want(t, r, http.StatusOK, "")
			var page struct {
				Conversations []struct {
					ID string `json:"conversation_id"`
				} `json:"conversations"`
				Next *string `json:"next_cursor"`
			}
			if err := json.Unmarshal(r.body, &page); err != nil || page.Next == nil || page.Conversations == nil {
				t.Fatalf("page %s: %v", r.body, err)
			}
			for _, c := range page.Conversations {
				ids = append(ids, c.ID)
			}
			if cursor = *page.Next; cursor == "" {
				break
			}
		}
		if fmt.Sprint(ids) != "[conv-2 conv-1 conv-0]" {
			t.Fatalf("alice's conversations, most recent first: %v", ids)
		}
		r := s.do("GET", "/v1/conversations?user=nobody", "")
		want(t, r, http.StatusOK, "")
		if strings.TrimSpace(string(r.body)) != `{"conversations":[],"next_cursor":""}` {
			t.Fatalf("empty list: %s", r.body)
		}
		want(t, s.do("GET", "/v1/conversations?cursor=garbage", ""), http.StatusBadRequest, "invalid_request")
		want(t, s.do("GET", "/v1/conversations?limit=-1", ""), http.StatusBadRequest, "invalid_request")
	})
}

func TestServer_Search(t *testing.T) {
	s := newTestServer(t, nil)
	want(t, s.do("POST", "/v1/conversations/s/events", `{"type":"user_message","content":"leek soup recipe"}`), http.StatusCreated, "")
	want(t, s.do("POST", "/v1/conversations/s/events", `{"type":"assistant_message","content":"Boil the leek."}`), http.StatusCreated, "")

	r := s.do("GET", "/v1/search?q=leek", "")
	want(t, r, http.StatusOK, "")
	var res struct {
		Results []struct {
			ConversationID string `json:"conversation_id"`
			Seq            int64  `json:"seq"`
			Snippet        string `json:"snippet"`
		} `json:"results"`
	}
	if err := json.Unmarshal(r.body, &res); err != nil || len(res.Results) != 2 || res.Results[0].Seq != 2 || !strings.Contains(res.Results[0].Snippet, "[leek]") {
		t.Fatalf("search: %s (%v)", r.body, err)
	}
	r = s.do("GET", "/v1/search?q=leek&role=user&conversation=s&limit=5", "")
	want(t, r, http.StatusOK, "")
	if err := json.Unmarshal(r.body, &res); err != nil || len(res.Results) != 1 || res.Results[0].Seq != 1 {
		t.Fatalf("filtered search: %s", r.body)
	}

	for _, q := range []string{
		``, `"`, `"leek`, `leek"soup`, `(`, `)`, `*`, `leek*`, `NOT`, `AND OR NOT`, `leek AND`, `NEAR(leek soup)`,
		`content:leek`, `^leek`, `-leek`, `+`, `'; DROP TABLE events; --`, `\`, `%`, `{}`, `[]`, `:`,
		"\x00", "leek\x00soup", strings.Repeat("(", 500), strings.Repeat("leek ", 400), "\xff\xfe", "🍲 leek",
	} {
		r := s.do("GET", "/v1/search?q="+url.QueryEscape(q), "")
		if r.status != http.StatusOK {
			t.Errorf("q=%q: status %d: %s", q, r.status, r.body)
			continue
		}
		if !strings.HasPrefix(string(r.body), `{"results":[`) {
			t.Errorf("q=%q: %s", q, r.body)
		}
	}
	want(t, s.do("GET", "/v1/search?q=x&role=system", ""), http.StatusBadRequest, "invalid_request")
	want(t, s.do("GET", "/v1/search?q=x&limit=many", ""), http.StatusBadRequest, "invalid_request")
}

func TestServer_Auth(t *testing.T) {
	s := newTestServer(t, &server.Options{Token: "s3cret"})
	t.Run("Healthz", func(t *testing.T) {
		r := s.do("GET", "/healthz", "")
		if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "ok" {
			t.Fatalf("healthz: %d %q", r.status, r.body)
		}
	})
	for _, tc := range []struct{ name, auth string }{
		{"Missing", ""},
		{"Wrong", "Bearer s3cre"},
		{"Longer", "Bearer s3crets"},
		{"Basic", "Basic czNjcmV0"},
		{"NoScheme", "s3cret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, req := range [][2]string{
				{"GET", "/v1/conversations"},
				{"POST", "/v1/conversations/c/events"},
				{"GET", "/metrics"},
				{"GET", "/nowhere"},
			} {
				var headers []string
				if tc.auth != "" {
					headers = []string{"Authorization", tc.auth}
				}
				r := s.do(req[0], req[1], `{"type":"user_message","content":"x"}`, headers...)
				want(t, r, http.StatusUnauthorized, "unauthorized")
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("no WWW-Authenticate: %v", r.header)
				}
			}
		})
	}
	t.Run("Right", func(t *testing.T) {
		want(t, s.do("POST", "/v1/conversations/c/events", `{"type":"user_message","content":"x"}`, "Authorization", "Bearer s3cret"), http.StatusCreated, "")
		want(t, s.do("GET", "/v1/conversations", "", "Authorization", "bearer s3cret"), http.StatusOK, "")
		if r := s.do("GET", "/metrics", "", "Authorization", "Bearer s3cret"); r.status != http.StatusOK {
			t.Fatalf("metrics with the token: %d", r.status)
		}
	})
}

func TestServer_Routes(t *testing.T) {
	s := newTestServer(t, nil)
	want(t, s.do("GET", "/v2/anything", ""), http.StatusNotFound, "not_found")
	r := s.do("DELETE", "/v1/conversations/c/events", "")
	want(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	if !strings.Contains(r.header.Get("Allow"), "POST") {
		t.Fatalf("Allow: %q", r.header.Get("Allow"))
	}
	// Endpoints of a later issue are not served.
	want(t, s.do("POST", "/v1/conversations/c/fork", `{}`), http.StatusNotFound, "not_found")
}

func TestServer_Metrics(t *testing.T) {
	s := newTestServer(t, nil)
	body := `{"type":"user_message","content":"x","request_id":"k"}`
	want(t, s.do("POST", "/v1/conversations/c/events", body), http.StatusCreated, "")
	want(t, s.do("POST", "/v1/conversations/c/events", body), http.StatusOK, "")
	want(t, s.do("POST", "/v1/conversations/c/events", `{"type":"user_message","content":"y","request_id":"k"}`), http.StatusConflict, "idempotency_conflict")
	r := s.do("GET", "/metrics", "")
	if r.status != http.StatusOK {
		t.Fatalf("metrics: %d", r.status)
	}
	text := string(r.body)
	for _, line := range []string{
		`chatlog_http_appends_total{endpoint="events"} 1`,
		`chatlog_http_duplicates_total{endpoint="events"} 1`,
		`chatlog_http_conflicts_total{code="idempotency_conflict",endpoint="events"} 1`,
		`chatlog_http_append_duration_seconds_count{endpoint="events"} 3`,
		`chatlog_http_sse_streams_open 0`,
		`chatlog_http_requests_total{code="409",route="POST /v1/conversations/{cid}/events"} 1`,
		`chatlog_store_appended_total 1`,
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
	if !strings.Contains(text, "chatlog_store_commits_total ") {
		t.Error("metrics lack the store's commits")
	}
}
