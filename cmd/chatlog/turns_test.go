package main

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// turnOut is what turn prints.
type turnOut struct {
	Status         string `json:"status"`
	Attempt        int    `json:"attempt"`
	LeaseExpiresAt string `json:"lease_expires_at"`
	UserEvent      *event `json:"user_event"`
	Reply          *event `json:"reply"`
}

func decodeTurn(tb testing.TB, out string) turnOut {
	tb.Helper()
	if strings.Count(out, "\n") != 1 {
		tb.Fatalf("turn printed %q, want one line", out)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &members); err != nil {
		tb.Fatalf("not a turn: %q: %v", out, err)
	}
	for k := range members {
		switch k {
		case "status", "attempt", "lease_expires_at", "user_event", "reply", "last_error":
		default:
			tb.Errorf("turn printed an unknown member %q: %s", k, out)
		}
	}
	var t turnOut
	if err := json.Unmarshal([]byte(out), &t); err != nil {
		tb.Fatalf("not a turn: %q: %v", out, err)
	}
	return t
}

// message is the final message as finish prints it.
type message struct {
	event
	StopReason string `json:"stop_reason"`
	Model      string `json:"model"`
}

func decodeMessage(tb testing.TB, out string) message {
	tb.Helper()
	var m message
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		tb.Fatalf("not an event: %q: %v", out, err)
	}
	if m.Type != "assistant_message" {
		tb.Fatalf("finish printed a %s, want an assistant_message: %s", m.Type, out)
	}
	return m
}

// leaseTime is lease_expires_at's format: the events' time format.
var leaseTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$`)

// cli runs commands against one database.
type cli struct {
	tb testing.TB
	db string
}

func newCLI(tb testing.TB) *cli { return &cli{tb: tb, db: tempDB(tb)} }

func (c *cli) run(args ...string) result {
	c.tb.Helper()
	return run(c.tb, "", append([]string{"--db", c.db}, args...)...)
}

// ok runs a command that must succeed and returns its stdout.
func (c *cli) ok(args ...string) string {
	c.tb.Helper()
	r := c.run(args...)
	wantCode(c.tb, r, 0)
	if r.stderr != "" {
		c.tb.Errorf("%v: stderr %q", args, r.stderr)
	}
	return r.stdout
}

func (c *cli) turn(cid, urid, content string, extra ...string) result {
	c.tb.Helper()
	return c.run(append([]string{"turn", "--conversation", cid, "--request-id", urid, "--content", content}, extra...)...)
}

func (c *cli) delta(cid, urid string, attempt, index, content string) result {
	c.tb.Helper()
	args := []string{"delta", "--conversation", cid, "--user-request-id", urid, "--index", index, "--content", content}
	if attempt != "" {
		args = append(args, "--attempt", attempt)
	}
	return c.run(args...)
}

func (c *cli) finish(cid, urid, attempt string, extra ...string) result {
	c.tb.Helper()
	args := []string{"finish", "--conversation", cid, "--user-request-id", urid}
	if attempt != "" {
		args = append(args, "--attempt", attempt)
	}
	return c.run(append(args, extra...)...)
}

// types lists the types of a conversation's events, chunks included.
func (c *cli) types(cid string) []string {
	c.tb.Helper()
	var out []string
	for _, e := range jsonl(c.tb, c.ok("replay", "--conversation", cid, "--with-deltas")) {
		out = append(out, e.Type)
	}
	return out
}

func TestTurn_Flow(t *testing.T) {
	c := newCLI(t)
	r := c.turn("c1", "u1", "What is 2+2?")
	wantCode(t, r, 0)
	st := decodeTurn(t, r.stdout)
	if st.Status != "started" || st.Attempt != 1 || !leaseTime.MatchString(st.LeaseExpiresAt) || st.Reply != nil {
		t.Fatalf("first turn: %s", r.stdout)
	}
	if st.UserEvent == nil || st.UserEvent.Type != "user_message" || st.UserEvent.Content != "What is 2+2?" ||
		st.UserEvent.RequestID != "u1" || st.UserEvent.Seq != 1 {
		t.Fatalf("first turn's user_event: %s", r.stdout)
	}
	expires, err := time.Parse(time.RFC3339Nano, st.LeaseExpiresAt)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(expires); d <= 0 || d > 31*time.Second {
		t.Errorf("lease expires in %s, want about the default 30s", d)
	}

	for i, text := range []string{"2+2 ", "is ", "4."} {
		r := c.delta("c1", "u1", "1", string(rune('0'+i)), text)
		wantCode(t, r, 0)
		e := decodeEvent(t, r.stdout)
		if e.Type != "assistant_delta" || e.Content != text || e.Duplicate == nil || *e.Duplicate ||
			e.Extra["index"] != float64(i) || e.Extra["attempt"] != float64(1) || e.Extra["user_request_id"] != "u1" {
			t.Fatalf("delta %d: %s", i, r.stdout)
		}
	}
	// A re-sent chunk is a duplicate; the same index with other text a
	// conflict.
	r = c.delta("c1", "u1", "1", "1", "is ")
	wantCode(t, r, 0)
	if e := decodeEvent(t, r.stdout); e.Duplicate == nil || !*e.Duplicate || e.Seq != 3 {
		t.Errorf("re-sent chunk: %s", r.stdout)
	}
	r = c.delta("c1", "u1", "1", "1", "was ")
	wantCode(t, r, 3)
	wantOneLine(t, r.stderr, "idempotency conflict")

	out := c.ok("finish", "--conversation", "c1", "--user-request-id", "u1", "--attempt", "1", "--stop-reason", "end_turn", "--model", "m-1")
	msg := decodeMessage(t, out)
	if msg.Content != "2+2 is 4." || msg.StopReason != "end_turn" || msg.Model != "m-1" || msg.RequestID != "assistant:u1" ||
		msg.Duplicate == nil || *msg.Duplicate {
		t.Fatalf("finish: %s", out)
	}

	r = c.turn("c1", "u1", "What is 2+2?")
	wantCode(t, r, 0)
	st = decodeTurn(t, r.stdout)
	if st.Status != "completed" || st.Attempt != 1 || st.Reply == nil || st.Reply.ID != msg.ID ||
		st.Reply.Content != "2+2 is 4." || st.LeaseExpiresAt != "" {
		t.Fatalf("turn after finish: %s", r.stdout)
	}

	// replay shows the chunks only with --with-deltas.
	if got, want := strings.Join(c.types("c1"), ","), "user_message,assistant_delta,assistant_delta,assistant_delta,assistant_message"; got != want {
		t.Errorf("replay --with-deltas: types %s, want %s", got, want)
	}
	var plain []string
	for _, e := range jsonl(t, c.ok("replay", "--conversation", "c1")) {
		plain = append(plain, e.Type)
	}
	if got := strings.Join(plain, ","); got != "user_message,assistant_message" {
		t.Errorf("replay: types %s", got)
	}
}

func TestTurn_InFlight(t *testing.T) {
	c := newCLI(t)
	r := c.turn("c1", "u1", "hello")
	wantCode(t, r, 0)
	first := decodeTurn(t, r.stdout)

	r = c.turn("c1", "u1", "hello")
	wantCode(t, r, 4)
	wantOneLine(t, r.stderr, "in flight", "attempt 1", first.LeaseExpiresAt)
	st := decodeTurn(t, r.stdout)
	if st.Status != "in_flight" || st.Attempt != 1 || st.LeaseExpiresAt != first.LeaseExpiresAt || st.Reply != nil {
		t.Fatalf("second turn: %s", r.stdout)
	}
	if st.UserEvent == nil || st.UserEvent.ID != first.UserEvent.ID {
		t.Errorf("second turn's user_event is not the stored one: %s", r.stdout)
	}
	if got := c.types("c1"); len(got) != 1 {
		t.Errorf("events after two begins: %v, want the user message once", got)
	}
}

func TestTurn_Takeover(t *testing.T) {
	c := newCLI(t)
	wantCode(t, c.turn("c1", "u1", "hello", "--lease", "200ms"), 0)
	wantCode(t, c.delta("c1", "u1", "1", "0", "from attempt 1"), 0)
	time.Sleep(300 * time.Millisecond)

	r := c.turn("c1", "u1", "hello")
	wantCode(t, r, 0)
	if st := decodeTurn(t, r.stdout); st.Status != "started" || st.Attempt != 2 {
		t.Fatalf("turn after the lease lapsed: %s", r.stdout)
	}

	// The old attempt can write no more; nothing it sends is kept.
	r = c.delta("c1", "u1", "1", "1", "late")
	wantCode(t, r, 3)
	wantOneLine(t, r.stderr, "stale attempt", "attempt 2")
	if r.stdout != "" {
		t.Errorf("stdout %q", r.stdout)
	}
	r = c.finish("c1", "u1", "1")
	wantCode(t, r, 3)
	wantOneLine(t, r.stderr, "stale attempt")

	wantCode(t, c.delta("c1", "u1", "2", "0", "from attempt 2"), 0)
	msg := decodeMessage(t, c.ok("finish", "--conversation", "c1", "--user-request-id", "u1", "--attempt", "2"))
	if msg.Content != "from attempt 2" {
		t.Errorf("finish folded %q, want only attempt 2's chunks", msg.Content)
	}
	if got, want := strings.Join(c.types("c1"), ","), "user_message,assistant_delta,assistant_delta,assistant_message"; got != want {
		t.Errorf("types %s, want %s", got, want)
	}
}

func TestDelta_TurnNeedsAttempt(t *testing.T) {
	c := newCLI(t)
	wantCode(t, c.turn("c1", "u1", "hello"), 0)
	r := c.delta("c1", "u1", "", "0", "no attempt")
	wantCode(t, r, 3)
	wantOneLine(t, r.stderr, "stale attempt", `"u1"`, "name its attempt")
	r = c.delta("c1", "u1", "7", "0", "wrong attempt")
	wantCode(t, r, 3)
	wantOneLine(t, r.stderr, "stale attempt")
	r = c.finish("c1", "u1", "")
	wantCode(t, r, 3)
	wantOneLine(t, r.stderr, "stale attempt")
	if got := c.types("c1"); len(got) != 1 {
		t.Errorf("events: %v, want only the user message", got)
	}
}

func TestFinish_Gap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		attempt string
	}{{"Plain", ""}, {"Turn", "1"}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t)
			if tc.attempt != "" {
				wantCode(t, c.turn("c1", "u1", "hello"), 0)
			}
			wantCode(t, c.delta("c1", "u1", tc.attempt, "0", "a"), 0)
			wantCode(t, c.delta("c1", "u1", tc.attempt, "2", "c"), 0)
			before := c.types("c1")
			r := c.finish("c1", "u1", tc.attempt)
			wantCode(t, r, 1)
			wantOneLine(t, r.stderr, "index 1 is missing", `"u1"`)
			if r.stdout != "" {
				t.Errorf("stdout %q", r.stdout)
			}
			if after := c.types("c1"); len(after) != len(before) {
				t.Errorf("finish with a gap wrote events: %v -> %v", before, after)
			}
			// Once the gap is filled the finish goes through.
			wantCode(t, c.delta("c1", "u1", tc.attempt, "1", "b"), 0)
			if msg := decodeMessage(t, c.ok(append([]string{"finish", "--conversation", "c1", "--user-request-id", "u1"}, attemptArgs(tc.attempt)...)...)); msg.Content != "abc" {
				t.Errorf("content %q, want abc", msg.Content)
			}
		})
	}
}

func attemptArgs(attempt string) []string {
	if attempt == "" {
		return nil
	}
	return []string{"--attempt", attempt}
}

func TestFinish_Twice(t *testing.T) {
	c := newCLI(t)
	wantCode(t, c.turn("c1", "u1", "hello"), 0)
	wantCode(t, c.delta("c1", "u1", "1", "0", "hi"), 0)
	args := []string{"finish", "--conversation", "c1", "--user-request-id", "u1", "--attempt", "1", "--stop-reason", "end_turn"}
	first := decodeMessage(t, c.ok(args...))
	second := decodeMessage(t, c.ok(args...))
	if first.ID == "" || second.ID != first.ID || second.Seq != first.Seq || second.Content != "hi" {
		t.Errorf("finish twice: %+v then %+v", first, second)
	}
	if first.Duplicate == nil || *first.Duplicate || second.Duplicate == nil || !*second.Duplicate {
		t.Errorf("duplicate: %v then %v, want false then true", first.Duplicate, second.Duplicate)
	}
	if got := c.types("c1"); len(got) != 3 {
		t.Errorf("events: %v", got)
	}
}

func TestCompact(t *testing.T) {
	c := newCLI(t)
	// A plain stream: chunks without a turn, never finished.
	wantCode(t, c.delta("c1", "u1", "", "0", "cut "), 0)
	wantCode(t, c.delta("c1", "u1", "", "1", "short"), 0)

	summary := func(out string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("not a summary: %q: %v", out, err)
		}
		return m
	}
	if m := summary(c.ok("compact", "--idle", "1h")); m["finalised"] != float64(0) || m["failed"] != float64(0) {
		t.Errorf("compact --idle 1h: %v, want nothing finalised", m)
	}
	if m := summary(c.ok("compact", "--idle", "0s")); m["finalised"] != float64(1) || m["skipped"] != float64(0) || m["failed"] != float64(0) {
		t.Errorf("compact --idle 0s: %v, want one finalised", m)
	}
	evs := strings.Split(strings.TrimSpace(c.ok("replay", "--conversation", "c1")), "\n")
	if len(evs) != 1 {
		t.Fatalf("replay after compact: %q", evs)
	}
	msg := decodeMessage(t, evs[0])
	if msg.Content != "cut short" || msg.StopReason != "interrupted" || msg.RequestID != "assistant:u1" {
		t.Errorf("finalised message: %s", evs[0])
	}
	if m := summary(c.ok("compact", "--idle", "0s")); m["finalised"] != float64(0) {
		t.Errorf("second compact: %v, want nothing left", m)
	}
	// The finish after a sweep is the swept message.
	if again := decodeMessage(t, c.ok("finish", "--conversation", "c1", "--user-request-id", "u1")); again.ID != msg.ID {
		t.Errorf("finish after compact: id %s, want %s", again.ID, msg.ID)
	}
}

func TestTurn_KeyReuse(t *testing.T) {
	c := newCLI(t)
	wantCode(t, c.turn("c1", "u1", "first question"), 0)
	r := c.turn("c1", "u1", "another question")
	wantCode(t, r, 3)
	wantOneLine(t, r.stderr, "idempotency conflict", `"u1"`)
	if r.stdout != "" {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestTurns_UsageErrors(t *testing.T) {
	db := tempDB(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"TurnNoConversation", []string{"turn", "--request-id", "u", "--content", "x"}, "--conversation is required"},
		{"TurnNoRequestID", []string{"turn", "--conversation", "c", "--content", "x"}, "--request-id is required"},
		{"TurnNoContent", []string{"turn", "--conversation", "c", "--request-id", "u"}, "--content is required"},
		{"TurnZeroLease", []string{"turn", "--conversation", "c", "--request-id", "u", "--content", "x", "--lease", "0s"}, "--lease must be positive"},
		{"TurnBadLease", []string{"turn", "--conversation", "c", "--request-id", "u", "--content", "x", "--lease", "soon"}, "--lease"},
		{"TurnPositional", []string{"turn", "--conversation", "c", "--request-id", "u", "--content", "x", "y"}, "unexpected argument"},
		{"DeltaNoUserRequest", []string{"delta", "--conversation", "c", "--index", "0", "--content", "x"}, "--user-request-id is required"},
		{"DeltaNoIndex", []string{"delta", "--conversation", "c", "--user-request-id", "u", "--content", "x"}, "--index is required"},
		{"DeltaNoContent", []string{"delta", "--conversation", "c", "--user-request-id", "u", "--index", "0"}, "--content is required"},
		{"DeltaNegativeIndex", []string{"delta", "--conversation", "c", "--user-request-id", "u", "--index", "-1", "--content", "x"}, "non-negative"},
		{"DeltaHugeIndex", []string{"delta", "--conversation", "c", "--user-request-id", "u", "--index", "99999999999", "--content", "x"}, "too large"},
		{"DeltaBadAttempt", []string{"delta", "--conversation", "c", "--user-request-id", "u", "--index", "0", "--content", "x", "--attempt", "one"}, "--attempt"},
		{"FinishNoConversation", []string{"finish", "--user-request-id", "u"}, "--conversation is required"},
		{"FinishNoUserRequest", []string{"finish", "--conversation", "c"}, "--user-request-id is required"},
		{"CompactNegativeIdle", []string{"compact", "--idle", "-1s"}, "--idle must not be negative"},
		{"CompactPositional", []string{"compact", "now"}, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, "", append([]string{"--db", db}, tc.args...)...)
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
