package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatlog/chatlog/logfile"
)

// demoFile is the bundled demo log, relative to this package.
const demoFile = "../../testdata/demo.jsonl"

// result is what one run of the program produced.
type result struct {
	code           int
	stdout, stderr string
}

// run runs chatlog in process with the given stdin and arguments; the
// environment is empty, so $CHATLOG_DB of the machine running the tests
// plays no part.
func run(tb testing.TB, stdin string, args ...string) result {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	m := &Main{
		Stdin:  strings.NewReader(stdin),
		Stdout: &stdout,
		Stderr: &stderr,
		Getenv: func(string) string { return "" },
	}
	code := m.Run(context.Background(), args)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// tempDB returns a database path in a fresh temporary directory.
func tempDB(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(tb.TempDir(), "chatlog.db")
}

// writeFile writes a file in a temporary directory and returns its path.
func writeFile(tb testing.TB, name, content string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

func wantCode(tb testing.TB, r result, code int) {
	tb.Helper()
	if r.code != code {
		tb.Fatalf("exit code %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
}

// wantOneLine checks that stderr is a single line containing each of subs.
func wantOneLine(tb testing.TB, stderr string, subs ...string) {
	tb.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		tb.Errorf("stderr is not one line: %q", stderr)
	}
	for _, s := range subs {
		if !strings.Contains(stderr, s) {
			tb.Errorf("stderr %q does not mention %q", stderr, s)
		}
	}
}

// event is the JSON shape the tests inspect.
type event struct {
	ID             string         `json:"id"`
	ConversationID string         `json:"conversation_id"`
	Seq            int64          `json:"seq"`
	Type           string         `json:"type"`
	Content        any            `json:"content"`
	RequestID      string         `json:"request_id"`
	CreatedAt      string         `json:"created_at"`
	Extra          map[string]any `json:"extra"`
	Duplicate      *bool          `json:"duplicate"`
}

func decodeEvent(tb testing.TB, line string) event {
	tb.Helper()
	var e event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		tb.Fatalf("not an event: %q: %v", line, err)
	}
	return e
}

// jsonl decodes a stream of events, one compact object per line.
func jsonl(tb testing.TB, out string) []event {
	tb.Helper()
	var evs []event
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		evs = append(evs, decodeEvent(tb, line))
	}
	return evs
}

func decodeStats(tb testing.TB, line string) logfile.Stats {
	tb.Helper()
	var st logfile.Stats
	d := json.NewDecoder(strings.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(&st); err != nil {
		tb.Fatalf("not ingest stats: %q: %v", line, err)
	}
	for _, key := range []string{`"read":`, `"appended":`, `"duplicates":`, `"conflicts":`, `"invalid":`} {
		if !strings.Contains(line, key) {
			tb.Errorf("stats %q lack %s", line, key)
		}
	}
	return st
}

func TestMain_Help(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := run(t, "", args...)
		wantCode(t, r, 0)
		for _, c := range commands {
			if !strings.Contains(r.stdout, "  "+c.name+" ") {
				t.Errorf("%v: the command list lacks %s", args, c.name)
			}
		}
	}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			for _, args := range [][]string{{c.name, "--help"}, {"help", c.name}} {
				r := run(t, "", args...)
				wantCode(t, r, 0)
				for _, want := range []string{"Usage:", "chatlog [--db PATH|URL] " + c.name, "Example:\n  " + c.example[:10]} {
					if !strings.Contains(r.stdout, want) {
						t.Errorf("%v: help lacks %q:\n%s", args, want, r.stdout)
					}
				}
				if r.stderr != "" {
					t.Errorf("%v: stderr %q", args, r.stderr)
				}
			}
		})
	}
}

func TestMain_UsageErrors(t *testing.T) {
	db := tempDB(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"NoCommand", nil, "no command"},
		{"UnknownCommand", []string{"--db", db, "frobnicate"}, `unknown command "frobnicate"`},
		{"UnknownGlobalFlag", []string{"--nope", "append"}, "-nope"},
		{"UnknownFlag", []string{"--db", db, "append", "--bogus"}, "-bogus"},
		{"TwoFiles", []string{"--db", db, "ingest", "a.jsonl", "b.jsonl"}, "one input file"},
		{"MissingConversation", []string{"--db", db, "append", "--type", "user_message"}, "--conversation is required"},
		{"MissingType", []string{"--db", db, "append", "--conversation", "c"}, "--type is required"},
		{"ExtraNotObject", []string{"--db", db, "append", "--conversation", "c", "--type", "user_message", "--extra", "[1]"}, "must be a JSON object"},
		{"BadExpectedSeq", []string{"--db", db, "append", "--conversation", "c", "--type", "user_message", "--expected-seq", "-1"}, "non-negative"},
		{"AppendPositional", []string{"--db", db, "append", "--conversation", "c", "--type", "user_message", "extra"}, "unexpected argument"},
		{"ReplayNoConversation", []string{"--db", db, "replay"}, "--conversation is required"},
		{"ReplayBadSeq", []string{"--db", db, "replay", "--conversation", "c", "--after-seq", "x"}, "after-seq"},
		{"ExportPositional", []string{"--db", db, "export", "x"}, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, "", tc.args...)
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

func TestAppend(t *testing.T) {
	db := tempDB(t)
	appendArgs := func(extra ...string) []string {
		return append([]string{"--db", db, "append", "--conversation", "c1", "--type", "user_message"}, extra...)
	}

	t.Run("OK", func(t *testing.T) {
		r := run(t, "", appendArgs("--content", "hello", "--request-id", "r1", "--extra", `{"client":"cli","n":1}`)...)
		wantCode(t, r, 0)
		if strings.Count(r.stdout, "\n") != 1 {
			t.Fatalf("want one line of output, got %q", r.stdout)
		}
		e := decodeEvent(t, r.stdout)
		if e.Seq != 1 || e.ID == "" || e.RequestID != "r1" || e.Content != "hello" || e.CreatedAt == "" {
			t.Errorf("stored event %+v", e)
		}
		if e.Duplicate == nil || *e.Duplicate {
			t.Errorf("duplicate = %v, want false", e.Duplicate)
		}
		if e.Extra["client"] != "cli" || e.Extra["n"] != 1.0 {
			t.Errorf("extra %v", e.Extra)
		}

		retry := run(t, "", appendArgs("--content", "hello", "--request-id", "r1", "--extra", `{"n":1,"client":"cli"}`)...)
		wantCode(t, retry, 0)
		d := decodeEvent(t, retry.stdout)
		if d.Duplicate == nil || !*d.Duplicate || d.ID != e.ID || d.Seq != 1 {
			t.Errorf("retry: %+v, want the stored event flagged duplicate", d)
		}
	})

	t.Run("ErrConflict", func(t *testing.T) {
		r := run(t, "", appendArgs("--content", "something else", "--request-id", "r1")...)
		wantCode(t, r, 3)
		wantOneLine(t, r.stderr, `"r1"`, "stored seq 1")
		if r.stdout != "" {
			t.Errorf("stdout %q", r.stdout)
		}
	})

	t.Run("ExpectedSeq", func(t *testing.T) {
		r := run(t, "", appendArgs("--content", "second", "--expected-seq", "1")...)
		wantCode(t, r, 0)
		if e := decodeEvent(t, r.stdout); e.Seq != 2 {
			t.Errorf("seq %d, want 2", e.Seq)
		}
	})

	t.Run("ErrSeqConflict", func(t *testing.T) {
		r := run(t, "", appendArgs("--content", "late", "--expected-seq", "1")...)
		wantCode(t, r, 3)
		wantOneLine(t, r.stderr, "expected head seq 1", "found 2")
		replay := run(t, "", "--db", db, "replay", "--conversation", "c1")
		if n := len(jsonl(t, replay.stdout)); n != 2 {
			t.Errorf("a rejected append was written: %d events", n)
		}
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		r := run(t, "", appendArgs()...) // a user_message without content
		wantCode(t, r, 1)
		wantOneLine(t, r.stderr, "content: is required")
		r = run(t, "", appendArgs("--content", "x", "--role", "assistant")...)
		wantCode(t, r, 1)
		wantOneLine(t, r.stderr, "role:")
	})

	t.Run("LegacyDelta", func(t *testing.T) {
		r := run(t, "", "--db", db, "append", "--conversation", "c1", "--type", "meta", "--content", "chunk",
			"--extra", `{"kind":"assistant_delta","user_request_id":"u1","index":0,"request_id":"delta:u1:0"}`)
		wantCode(t, r, 0)
		e := decodeEvent(t, r.stdout)
		if e.Type != "assistant_delta" || e.RequestID != "delta:u1:0" {
			t.Errorf("legacy delta stored as %+v", e)
		}
	})
}

func TestAppend_MemoryAndEnv(t *testing.T) {
	r := run(t, "", "--db", ":memory:", "append", "--conversation", "c", "--type", "user_message", "--content", "x")
	wantCode(t, r, 0)

	path := tempDB(t)
	var stdout, stderr bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string {
		if k == "CHATLOG_DB" {
			return path
		}
		return ""
	}}
	if code := m.Run(context.Background(), []string{"append", "--conversation", "c", "--type", "user_message", "--content", "x"}); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("$CHATLOG_DB was not used: %v", err)
	}
}

const goodLog = `{"conversation_id":"c","type":"user_message","content":"q","request_id":"u1"}
{"conversation_id":"c","type":"meta","content":"A","extra":{"kind":"assistant_delta","user_request_id":"u1"}}
{"conversation_id":"c","type":"meta","content":"B","extra":{"kind":"assistant_delta","user_request_id":"u1"}}
{"conversation_id":"c","type":"assistant_message","content":"AB","request_id":"assistant:u1"}
{"conversation_id":"d","type":"user_message","content":"no key"}
`

func TestIngest(t *testing.T) {
	db := tempDB(t)
	file := writeFile(t, "log.jsonl", goodLog)

	r := run(t, "", "--db", db, "ingest", file)
	wantCode(t, r, 0)
	if st := decodeStats(t, r.stdout); st != (logfile.Stats{Read: 5, Appended: 5}) {
		t.Errorf("first ingest: %+v", st)
	}
	if r.stderr != "" {
		t.Errorf("stderr %q (no progress bar off a terminal)", r.stderr)
	}

	r = run(t, "", "--db", db, "ingest", file)
	wantCode(t, r, 0)
	if st := decodeStats(t, r.stdout); st != (logfile.Stats{Read: 5, Duplicates: 5}) {
		t.Errorf("second ingest added something: %+v", st)
	}

	// From stdin, named "-" or not at all.
	for _, args := range [][]string{{"ingest", "-"}, {"ingest"}} {
		r = run(t, goodLog, append([]string{"--db", db}, args...)...)
		wantCode(t, r, 0)
		if st := decodeStats(t, r.stdout); st != (logfile.Stats{Read: 5, Duplicates: 5}) {
			t.Errorf("%v: %+v", args, st)
		}
	}

	r = run(t, "", "--db", db, "ingest", filepath.Join(t.TempDir(), "missing.jsonl"))
	wantCode(t, r, 1)
	wantOneLine(t, r.stderr, "missing.jsonl")
}

func TestIngest_BadLines(t *testing.T) {
	db := tempDB(t)
	file := writeFile(t, "bad.jsonl", strings.Join([]string{
		`{"conversation_id":"c","type":"user_message","content":"one","request_id":"k1"}`,
		`{"conversation_id":"c","type":"user_message","content":"x","seq":"7"}`,
		``,
		`{"conversation_id":"c","type":"user_message","request_id":"k4"}`,
		`{"conversation_id":"c","type":"user_message","content":"two","request_id":"k5"}`,
		`{"conversation_id":"c","type":"user_message","content":"changed","request_id":"k1"}`,
	}, "\n"))

	r := run(t, "", "--db", db, "ingest", file)
	wantCode(t, r, 1)
	if st := decodeStats(t, r.stdout); st != (logfile.Stats{Read: 5, Appended: 2, Conflicts: 1, Invalid: 2}) {
		t.Errorf("stats %+v", st)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	want := []string{
		file + ":2: seq: must be an integer",
		file + ":4: content: is required for a user_message",
		file + `:6: request_id: idempotency conflict: key "k1"`,
		"chatlog ingest: " + file + ": rejected 3 of 5 lines",
	}
	if len(lines) != len(want) {
		t.Fatalf("stderr:\n%s\nwant %d lines", r.stderr, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("stderr line %d: %q, want prefix %q", i+1, lines[i], want[i])
		}
	}

	var texts []string
	for _, e := range jsonl(t, run(t, "", "--db", db, "replay", "--conversation", "c").stdout) {
		texts = append(texts, e.Content.(string))
	}
	if got := strings.Join(texts, ","); got != "one,two" {
		t.Errorf("stored %q, want the good lines one,two", got)
	}
}

func TestReplay(t *testing.T) {
	db := tempDB(t)
	wantCode(t, run(t, goodLog, "--db", db, "ingest"), 0)

	r := run(t, "", "--db", db, "replay", "--conversation", "c")
	wantCode(t, r, 0)
	var types []string
	for _, e := range jsonl(t, r.stdout) {
		types = append(types, e.Type)
	}
	if got := strings.Join(types, ","); got != "user_message,assistant_message" {
		t.Errorf("replay shows %s; want deltas hidden", got)
	}

	r = run(t, "", "--db", db, "replay", "--conversation", "c", "--with-deltas")
	evs := jsonl(t, r.stdout)
	if len(evs) != 4 {
		t.Fatalf("--with-deltas: %d events, want 4", len(evs))
	}
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Errorf("event %d has seq %d: not in seq order", i, e.Seq)
		}
	}
	if evs[1].Type != "assistant_delta" || evs[1].Extra["index"] != 0.0 || evs[2].Extra["index"] != 1.0 {
		t.Errorf("deltas: %+v %+v", evs[1], evs[2])
	}

	r = run(t, "", "--db", db, "replay", "--conversation", "c", "--with-deltas", "--after-seq", "1", "--until-seq", "3")
	evs = jsonl(t, r.stdout)
	if len(evs) != 2 || evs[0].Seq != 2 || evs[1].Seq != 3 {
		t.Errorf("--after-seq 1 --until-seq 3: %+v", evs)
	}

	r = run(t, "", "--db", db, "replay", "--conversation", "unknown")
	wantCode(t, r, 0)
	if r.stdout != "" {
		t.Errorf("unknown conversation: %q, want nothing", r.stdout)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestReplay_Follow(t *testing.T) {
	db := tempDB(t)
	wantCode(t, run(t, "", "--db", db, "append", "--conversation", "f", "--type", "user_message", "--content", "first"), 0)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	go func() { done <- m.Run(ctx, []string{"--db", db, "replay", "--conversation", "f", "--follow"}) }()

	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(stdout.String(), "\n") < n {
			if time.Now().After(deadline) {
				t.Fatalf("follow printed %q, want %d events", stdout.String(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(1)
	// Another "process" (another Main, its own connection) appends.
	wantCode(t, run(t, "", "--db", db, "append", "--conversation", "f", "--type", "user_message", "--content", "second"), 0)
	waitFor(2)
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("follow exited %d after interrupt: %s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("follow did not stop when its context was cancelled")
	}
	evs := jsonl(t, stdout.String())
	if len(evs) != 2 || evs[0].Content != "first" || evs[1].Content != "second" || evs[1].Seq != 2 {
		t.Errorf("followed %+v", evs)
	}
}

func TestExportImport(t *testing.T) {
	src := tempDB(t)
	wantCode(t, run(t, "", "--db", src, "ingest", demoFile), 0)
	exp := run(t, "", "--db", src, "export")
	wantCode(t, exp, 0)
	all := jsonl(t, exp.stdout)
	if len(all) != 38 {
		t.Fatalf("export holds %d events, want the demo's 38", len(all))
	}

	dst := tempDB(t)
	r := run(t, exp.stdout, "--db", dst, "import", "-")
	wantCode(t, r, 0)
	if st := decodeStats(t, r.stdout); st != (logfile.Stats{Read: 38, Appended: 38}) {
		t.Errorf("import: %+v", st)
	}
	// Everything but pos round-trips: the store assigns pos, which may
	// have gaps in the source.
	again := run(t, "", "--db", dst, "export")
	if a, b := withoutPos(again.stdout), withoutPos(exp.stdout); a != b {
		t.Errorf("export after import differs from the original export:\n%s\nwant\n%s", a, b)
	}

	file := writeFile(t, "export.jsonl", exp.stdout)
	r = run(t, "", "--db", dst, "import", file)
	wantCode(t, r, 0)
	if st := decodeStats(t, r.stdout); st != (logfile.Stats{Read: 38, Duplicates: 38}) {
		t.Errorf("second import: %+v", st)
	}

	one := run(t, "", "--db", src, "export", "--conversation", "demo-recipe")
	wantCode(t, one, 0)
	evs := jsonl(t, one.stdout)
	if len(evs) == 0 {
		t.Fatal("export --conversation printed nothing")
	}
	for _, e := range evs {
		if e.ConversationID != "demo-recipe" {
			t.Errorf("export --conversation demo-recipe printed %s", e.ConversationID)
		}
	}
}

var posMember = regexp.MustCompile(`"pos":[0-9]+,`)

// withoutPos strips the pos members from JSONL events.
func withoutPos(jsonl string) string { return posMember.ReplaceAllString(jsonl, "") }

func TestDemo(t *testing.T) {
	db := tempDB(t)
	r := run(t, "", "--db", db, "demo", "--file", demoFile)
	wantCode(t, r, 0)
	lines, model := demoOutput(t, r.stdout)
	if st := decodeStats(t, lines[0]); st != (logfile.Stats{Read: 39, Appended: 38, Duplicates: 1}) {
		t.Errorf("demo stats %+v", st)
	}
	// Last, what the model sees: the messages command's output.
	want := run(t, "", "--db", db, "messages", "--conversation", "demo-weather")
	if model != want.stdout || !strings.HasPrefix(model, `[{"role":"system",`) {
		t.Errorf("demo's last line %q, want the messages of demo-weather %q", model, want.stdout)
	}
	evs := jsonl(t, lines[1])
	if len(evs) < 10 {
		t.Fatalf("demo replayed %d events", len(evs))
	}
	for i, e := range evs {
		if e.ConversationID != "demo-weather" || e.Type == "assistant_delta" {
			t.Errorf("replayed event %d: %s %s", i, e.ConversationID, e.Type)
		}
		if i > 0 && e.Seq <= evs[i-1].Seq {
			t.Errorf("replay out of seq order at %d", i)
		}
	}

	r = run(t, "", "--db", db, "demo", "--file", demoFile, "--conversation", "demo-code", "--with-deltas")
	wantCode(t, r, 0)
	lines, model = demoOutput(t, r.stdout)
	if !strings.Contains(model, "Go 1.22") {
		t.Errorf("demo-code's messages: %s", model)
	}
	if st := decodeStats(t, lines[0]); st != (logfile.Stats{Read: 39, Duplicates: 39}) {
		t.Errorf("second demo run added something: %+v", st)
	}
	deltas := 0
	for _, e := range jsonl(t, lines[1]) {
		if e.ConversationID != "demo-code" {
			t.Errorf("replayed %s", e.ConversationID)
		}
		if e.Type == "assistant_delta" {
			if idx, ok := e.Extra["index"].(float64); !ok || int(idx) != deltas {
				t.Errorf("delta %d has index %v", deltas, e.Extra["index"])
			}
			deltas++
		}
	}
	if deltas == 0 {
		t.Error("--with-deltas replayed no deltas")
	}

	r = run(t, "", "--db", db, "demo", "--file", filepath.Join(t.TempDir(), "absent.jsonl"))
	wantCode(t, r, 1)
	wantOneLine(t, r.stderr, "absent.jsonl", "--file")
}

// demoOutput splits demo's output into the counts line, the replayed
// events, and the last line: the conversation's messages.
func demoOutput(tb testing.TB, out string) (lines [2]string, model string) {
	tb.Helper()
	first, rest, _ := strings.Cut(out, "\n")
	rest = strings.TrimSuffix(rest, "\n")
	i := strings.LastIndex(rest, "\n")
	if i < 0 || !strings.HasSuffix(out, "\n") {
		tb.Fatalf("demo printed no counts, events and messages:\n%s", out)
	}
	return [2]string{first, rest[:i+1]}, rest[i+1:] + "\n"
}

// TestDemoFile checks the bundled demo log against what the README
// promises of it.
func TestDemoFile(t *testing.T) {
	f, err := os.Open(demoFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := logfile.NewReader(f)
	convs := map[string]bool{}
	var sawTool, sawResult, sawLegacy, sawStarted bool
	for {
		e, err := rd.Read()
		if err != nil {
			if err == io.EOF {
				break
			}
			t.Fatalf("line %d: %v", rd.Line(), err)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("line %d: %v", rd.Line(), err)
		}
		if e.RequestID == "" && e.ID == "" {
			t.Errorf("line %d has neither request_id nor id", rd.Line())
		}
		convs[e.ConversationID] = true
		sawTool = sawTool || len(e.ToolCalls) > 0
		sawResult = sawResult || e.Type == "tool_result"
		sawStarted = sawStarted || e.Type == "conversation_started"
		if e.Type == "assistant_delta" {
			if _, ok := e.Extra["index"]; ok {
				t.Errorf("line %d: demo deltas are legacy, without index", rd.Line())
			}
			sawLegacy = true
		}
		if e.Type == "assistant_message" && e.Usage == nil {
			t.Errorf("line %d: assistant message without usage", rd.Line())
		}
	}
	if len(convs) != 3 || !sawTool || !sawResult || !sawLegacy || !sawStarted {
		t.Errorf("demo log: %d conversations, tool call %t, tool result %t, legacy deltas %t, started %t",
			len(convs), sawTool, sawResult, sawLegacy, sawStarted)
	}
}

// TestMain runs the program itself when the test binary was started as a
// process of the process-appends bench workload (bench starts copies of
// its own executable, which in a test is this binary).
func TestMain(m *testing.M) {
	if os.Getenv(benchWorkerEnv) != "" {
		os.Exit(NewMain().Run(context.Background(), os.Args[1:]))
	}
	code := m.Run()
	if buildOnce.dir != "" {
		os.RemoveAll(buildOnce.dir)
	}
	os.Exit(code)
}
