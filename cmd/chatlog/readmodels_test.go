package main

import (
	"encoding/json"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/ncruces/go-sqlite3"

	"github.com/chatlog/chatlog/logfile"
)

// ingestedDemo returns a database holding the demo log.
func ingestedDemo(t *testing.T) string {
	t.Helper()
	db := tempDB(t)
	wantCode(t, run(t, "", "--db", db, "ingest", demoFile), 0)
	return db
}

// decodeDoc decodes one JSON document (and nothing after it) into v.
func decodeDoc(tb testing.TB, out string, v any) {
	tb.Helper()
	d := json.NewDecoder(strings.NewReader(out))
	if err := d.Decode(v); err != nil {
		tb.Fatalf("not the expected JSON document: %v\n%s", err, out)
	}
	if _, err := d.Token(); err != io.EOF {
		tb.Fatalf("more than one JSON document:\n%s", out)
	}
}

// sameJSON checks that got is the JSON document want, ignoring layout.
func sameJSON(tb testing.TB, got, want string) {
	tb.Helper()
	var g, w any
	decodeDoc(tb, got, &g)
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		tb.Fatalf("bad expectation: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		tb.Errorf("got  %s\nwant %s", strings.TrimSpace(got), want)
	}
}

// weatherOpenAI is demo-weather as the model sees it, checked by hand
// against testdata/demo.jsonl: the visible system update, the tool call
// followed by its result, no streamed chunks, no lifecycle events.
const weatherOpenAI = `[
 {"role":"system","content":"You are a concise travel assistant. Use tools for live data."},
 {"role":"user","content":"What's the weather in Oslo this weekend?"},
 {"role":"assistant","content":null,"tool_calls":[{"id":"call_oslo_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\",\"days\":[\"Sat\",\"Sun\"]}"}}]},
 {"role":"tool","tool_call_id":"call_oslo_1","content":"{\"Sat\":{\"high_c\":4,\"low_c\":-2,\"sky\":\"snow showers\"},\"Sun\":{\"high_c\":6,\"low_c\":0,\"sky\":\"clear\"}}"},
 {"role":"assistant","content":"Saturday brings snow showers (high 4 °C, low -2 °C); Sunday is clear and a little milder (high 6 °C)."},
 {"role":"user","content":"Then what should I pack?"},
 {"role":"assistant","content":"Pack warm layers: a down jacket, a wool sweater, waterproof boots and gloves. Sunglasses help on the clear Sunday."},
 {"role":"user","content":"Perfect, thanks!"},
 {"role":"assistant","content":"Enjoy Oslo, and have a great weekend!"}
]`

func TestMessages(t *testing.T) {
	db := ingestedDemo(t)
	messages := func(extra ...string) result {
		return run(t, "", append([]string{"--db", db, "messages"}, extra...)...)
	}

	t.Run("OpenAI", func(t *testing.T) {
		r := messages("--conversation", "demo-weather")
		wantCode(t, r, 0)
		sameJSON(t, r.stdout, weatherOpenAI)
		// --format openai is the default.
		r2 := messages("--conversation", "demo-weather", "--format", "openai")
		wantCode(t, r2, 0)
		if r2.stdout != r.stdout {
			t.Errorf("--format openai differs from the default:\n%s\n%s", r2.stdout, r.stdout)
		}
	})

	t.Run("Anthropic", func(t *testing.T) {
		r := messages("--conversation", "demo-weather", "--format", "anthropic")
		wantCode(t, r, 0)
		sameJSON(t, r.stdout, `{
 "system":"You are a concise travel assistant. Use tools for live data.",
 "messages":[
  {"role":"user","content":[{"type":"text","text":"What's the weather in Oslo this weekend?"}]},
  {"role":"assistant","content":[{"type":"tool_use","id":"call_oslo_1","name":"get_weather","input":{"city":"Oslo","days":["Sat","Sun"]}}]},
  {"role":"user","content":[{"type":"tool_result","tool_use_id":"call_oslo_1","content":"{\"Sat\":{\"high_c\":4,\"low_c\":-2,\"sky\":\"snow showers\"},\"Sun\":{\"high_c\":6,\"low_c\":0,\"sky\":\"clear\"}}"}]},
  {"role":"assistant","content":[{"type":"text","text":"Saturday brings snow showers (high 4 °C, low -2 °C); Sunday is clear and a little milder (high 6 °C)."}]},
  {"role":"user","content":[{"type":"text","text":"Then what should I pack?"}]},
  {"role":"assistant","content":[{"type":"text","text":"Pack warm layers: a down jacket, a wool sweater, waterproof boots and gloves. Sunglasses help on the clear Sunday."}]},
  {"role":"user","content":[{"type":"text","text":"Perfect, thanks!"}]},
  {"role":"assistant","content":[{"type":"text","text":"Enjoy Oslo, and have a great weekend!"}]}
 ]}`)
	})

	t.Run("AsOfSeq", func(t *testing.T) {
		// Seq 4 is the tool call; its result (seq 5) is not in the view,
		// so the call is answered as interrupted.
		r := messages("--conversation", "demo-weather", "--as-of-seq", "4")
		wantCode(t, r, 0)
		var msgs []map[string]any
		decodeDoc(t, r.stdout, &msgs)
		if len(msgs) != 4 {
			t.Fatalf("as of seq 4: %d messages, want 4:\n%s", len(msgs), r.stdout)
		}
		last := msgs[3]
		if last["role"] != "tool" || last["tool_call_id"] != "call_oslo_1" || !strings.HasPrefix(last["content"].(string), "interrupted") {
			t.Errorf("as of seq 4, the last message is %v, want a synthetic interrupted result", last)
		}
	})

	t.Run("Windows", func(t *testing.T) {
		r := messages("--conversation", "demo-weather", "--max-turns", "1")
		wantCode(t, r, 0)
		// The system prompt stays first whatever the window.
		const prompt = `{"role":"system","content":"You are a concise travel assistant. Use tools for live data."}`
		sameJSON(t, r.stdout, `[`+prompt+`,{"role":"user","content":"Perfect, thanks!"},{"role":"assistant","content":"Enjoy Oslo, and have a great weekend!"}]`)
		// Four messages hold the last two turns, not the first one
		// whose tool call would be split from its result.
		r = messages("--conversation", "demo-weather", "--max-messages", "4")
		wantCode(t, r, 0)
		var msgs []map[string]any
		decodeDoc(t, r.stdout, &msgs)
		if len(msgs) != 5 || msgs[0]["role"] != "system" || msgs[1]["content"] != "Then what should I pack?" {
			t.Errorf("--max-messages 4: %s", r.stdout)
		}
		r = messages("--conversation", "demo-weather", "--max-tokens", "1")
		wantCode(t, r, 0)
		decodeDoc(t, r.stdout, &msgs)
		if len(msgs) != 3 || msgs[0]["role"] != "system" {
			t.Errorf("--max-tokens 1 keeps the prompt and the newest turn only: %s", r.stdout)
		}
	})

	t.Run("System", func(t *testing.T) {
		r := messages("--conversation", "demo-recipe", "--system", "Answer in French.")
		wantCode(t, r, 0)
		var msgs []map[string]any
		decodeDoc(t, r.stdout, &msgs)
		if len(msgs) != 7 || msgs[0]["role"] != "system" || msgs[0]["content"] != "Answer in French." {
			t.Errorf("--system: %s", r.stdout)
		}
		r = messages("--conversation", "demo-recipe", "--system", "Answer in French.", "--format", "anthropic")
		wantCode(t, r, 0)
		var req struct {
			System   string           `json:"system"`
			Messages []map[string]any `json:"messages"`
		}
		decodeDoc(t, r.stdout, &req)
		if req.System != "Answer in French." || len(req.Messages) != 6 || req.Messages[0]["role"] != "user" {
			t.Errorf("--system, anthropic: %s", r.stdout)
		}
	})

	t.Run("UnknownConversation", func(t *testing.T) {
		r := messages("--conversation", "nobody")
		wantCode(t, r, 0)
		sameJSON(t, r.stdout, `[]`)
		r = messages("--conversation", "nobody", "--format", "anthropic")
		wantCode(t, r, 0)
		sameJSON(t, r.stdout, `{"messages":[]}`)
		if r.stderr != "" {
			t.Errorf("stderr %q", r.stderr)
		}
	})

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"NoConversation", nil, "--conversation is required"},
		{"UnknownFormat", []string{"--conversation", "demo-weather", "--format", "gemini"}, `"gemini"`},
		{"NegativeWindow", []string{"--conversation", "demo-weather", "--max-turns", "-1"}, "negative"},
		{"NegativeSeq", []string{"--conversation", "demo-weather", "--as-of-seq", "-1"}, "negative"},
		{"Positional", []string{"--conversation", "demo-weather", "x"}, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := messages(tc.args...)
			wantCode(t, r, 2)
			wantOneLine(t, r.stderr, tc.want)
			if r.stdout != "" {
				t.Errorf("stdout %q", r.stdout)
			}
		})
	}
}

// listPage is what ls prints.
type listPage struct {
	Conversations []struct {
		ConversationID string `json:"conversation_id"`
		User           string `json:"user"`
		Source         string `json:"source"`
	} `json:"conversations"`
	NextCursor *string `json:"next_cursor"`
}

func TestLs(t *testing.T) {
	db := ingestedDemo(t)
	ls := func(extra ...string) listPage {
		t.Helper()
		r := run(t, "", append([]string{"--db", db, "ls"}, extra...)...)
		wantCode(t, r, 0)
		var p listPage
		decodeDoc(t, r.stdout, &p)
		if p.NextCursor == nil {
			t.Fatalf("no next_cursor member: %s", r.stdout)
		}
		return p
	}
	ids := func(p listPage) []string {
		var out []string
		for _, c := range p.Conversations {
			out = append(out, c.ConversationID)
		}
		return out
	}
	// Most recently active first.
	all := []string{"demo-code", "demo-recipe", "demo-weather"}
	p := ls()
	if got := ids(p); !reflect.DeepEqual(got, all) || *p.NextCursor != "" {
		t.Errorf("ls: %v, next_cursor %q; want %v and none", got, *p.NextCursor, all)
	}

	t.Run("Paging", func(t *testing.T) {
		var walked []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > len(all) {
				t.Fatalf("paging does not end: %v", walked)
			}
			args := []string{"--limit", "1"}
			if cursor != "" {
				args = append(args, "--cursor", cursor)
			}
			p := ls(args...)
			if len(p.Conversations) != 1 {
				t.Fatalf("page %d holds %d conversations", pages, len(p.Conversations))
			}
			walked = append(walked, ids(p)...)
			if cursor = *p.NextCursor; cursor == "" {
				break
			}
		}
		if !reflect.DeepEqual(walked, all) {
			t.Errorf("walked %v, want each of %v once", walked, all)
		}
	})

	t.Run("Filters", func(t *testing.T) {
		if got := ids(ls("--user", "alice")); !reflect.DeepEqual(got, []string{"demo-weather"}) {
			t.Errorf("--user alice: %v", got)
		}
		if got := ids(ls("--source", "mobile")); !reflect.DeepEqual(got, []string{"demo-recipe"}) {
			t.Errorf("--source mobile: %v", got)
		}
		if got := ids(ls("--user", "nobody")); len(got) != 0 {
			t.Errorf("--user nobody: %v", got)
		}
	})

	t.Run("EmptyDB", func(t *testing.T) {
		r := run(t, "", "--db", tempDB(t), "ls")
		wantCode(t, r, 0)
		sameJSON(t, r.stdout, `{"conversations":[],"next_cursor":""}`)
	})

	t.Run("BadCursor", func(t *testing.T) {
		r := run(t, "", "--db", db, "ls", "--cursor", "not-a-cursor")
		wantCode(t, r, 1)
		wantOneLine(t, r.stderr, "--cursor", "not-a-cursor")
		if r.stdout != "" {
			t.Errorf("stdout %q", r.stdout)
		}
	})

	t.Run("BadLimit", func(t *testing.T) {
		r := run(t, "", "--db", db, "ls", "--limit", "-1")
		wantCode(t, r, 2)
		wantOneLine(t, r.stderr, "--limit")
	})
}

// searchOutput is what search prints.
type searchOutput struct {
	Results []struct {
		ConversationID string `json:"conversation_id"`
		Seq            int64  `json:"seq"`
		Role           string `json:"role"`
		Snippet        string `json:"snippet"`
		Before         *struct {
			Seq  int64  `json:"seq"`
			Text string `json:"text"`
		} `json:"before"`
	} `json:"results"`
}

func TestSearch(t *testing.T) {
	db := ingestedDemo(t)
	search := func(args ...string) searchOutput {
		t.Helper()
		r := run(t, "", append([]string{"--db", db, "search"}, args...)...)
		wantCode(t, r, 0)
		if r.stderr != "" {
			t.Errorf("%q: stderr %q", args, r.stderr)
		}
		var out searchOutput
		decodeDoc(t, r.stdout, &out)
		if out.Results == nil {
			t.Fatalf("%q: no results array: %s", args, r.stdout)
		}
		return out
	}

	out := search("leek")
	if len(out.Results) != 1 {
		t.Fatalf("leek: %+v", out.Results)
	}
	h := out.Results[0]
	if h.ConversationID != "demo-recipe" || h.Seq != 3 || h.Role != "assistant" || !strings.Contains(h.Snippet, "[leek]") {
		t.Errorf("leek: %+v", h)
	}
	if h.Before == nil || h.Before.Seq != 2 || !strings.Contains(h.Before.Text, "leeks") {
		t.Errorf("leek: the message before is %+v", h.Before)
	}

	// Several arguments are the words of one query; all must occur.
	if out := search("potato", "soup"); len(out.Results) != 1 || out.Results[0].ConversationID != "demo-recipe" {
		t.Errorf("potato soup: %+v", out.Results)
	}
	if out := search("thanks"); len(out.Results) != 2 {
		t.Errorf("thanks: %+v", out.Results)
	}
	if out := search("--conversation", "demo-weather", "thanks"); len(out.Results) != 1 || out.Results[0].ConversationID != "demo-weather" {
		t.Errorf("--conversation demo-weather thanks: %+v", out.Results)
	}
	if out := search("--user", "carol", "thanks"); len(out.Results) != 1 || out.Results[0].ConversationID != "demo-code" {
		t.Errorf("--user carol thanks: %+v", out.Results)
	}
	if out := search("--role", "assistant", "thanks"); len(out.Results) != 0 {
		t.Errorf("--role assistant thanks: %+v", out.Results)
	}
	if out := search("--limit", "1", "thanks"); len(out.Results) != 1 {
		t.Errorf("--limit 1 thanks: %+v", out.Results)
	}

	t.Run("Hostile", func(t *testing.T) {
		for _, q := range []string{
			"", " ", `"`, `"leek`, `leek"`, `(`, `)`, `(leek`, `leek OR`, `AND`, `NOT leek`, `OR OR`,
			`*`, `leek*`, `^leek`, `content:leek`, `a:b`, `NEAR(leek soup)`, `NEAR(`, `{leek}`, `-`, `+leek`,
			`'; DROP TABLE events; --`, `\`, "\x00", "leek\nsoup", "é", "🙂", strings.Repeat("leek ", 500),
		} {
			search(q)
		}
		// A query that starts with "-" comes after "--".
		if out := search("--", "-leek"); len(out.Results) != 1 {
			t.Errorf("-- -leek: %+v", out.Results)
		}
	})

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"NoQuery", nil, "QUERY is required"},
		{"BadRole", []string{"--role", "robot", "x"}, `"robot"`},
		{"BadLimit", []string{"--limit", "-1", "x"}, "--limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, "", append([]string{"--db", db, "search"}, tc.args...)...)
			wantCode(t, r, 2)
			wantOneLine(t, r.stderr, tc.want)
		})
	}
}

func TestShow(t *testing.T) {
	db := ingestedDemo(t)
	r := run(t, "", "--db", db, "show", "--conversation", "demo-weather")
	wantCode(t, r, 0)
	var s struct {
		ConversationID string `json:"conversation_id"`
		Title          string `json:"title"`
		Preview        string `json:"preview"`
		Messages       int64  `json:"messages"`
		ToolCalls      int64  `json:"tool_calls"`
		Events         int64  `json:"events"`
		Usage          struct {
			Input  int64 `json:"input"`
			Output int64 `json:"output"`
		} `json:"usage"`
		StartedAt    string `json:"started_at"`
		LastActiveAt string `json:"last_active_at"`
		LastSeq      int64  `json:"last_seq"`
		Source       string `json:"source"`
		User         string `json:"user"`
		Model        string `json:"model"`
		Ended        bool   `json:"ended"`
	}
	decodeDoc(t, r.stdout, &s)
	// From testdata/demo.jsonl: 18 lines of which 7 streamed chunks (not
	// counted), 3 user, 4 assistant and 1 tool message, one tool call, the
	// latest title, usage summed.
	if s.ConversationID != "demo-weather" || s.Title != "Weekend in Oslo: weather and packing" ||
		s.Preview != "What's the weather in Oslo this weekend?" ||
		s.Messages != 8 || s.ToolCalls != 1 || s.Events != 11 || s.LastSeq != 18 ||
		s.Usage.Input != 112+168+215+251 || s.Usage.Output != 24+31+27+9 ||
		s.Source != "web" || s.User != "alice" || s.Model != "gpt-4o-mini" || s.Ended ||
		!strings.HasPrefix(s.StartedAt, "2026-03-02T09:15:02") || !strings.HasPrefix(s.LastActiveAt, "2026-03-02T09:16:41.2") {
		t.Errorf("show demo-weather: %+v\n%s", s, r.stdout)
	}

	r = run(t, "", "--db", db, "show", "--conversation", "demo-recipe")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, `"ended":true`) || !strings.Contains(r.stdout, `"ended_reason":"user_closed"`) {
		t.Errorf("show demo-recipe: %s", r.stdout)
	}

	r = run(t, "", "--db", db, "show", "--conversation", "nobody")
	wantCode(t, r, 1)
	wantOneLine(t, r.stderr, `"nobody"`, "not found")
	if r.stdout != "" {
		t.Errorf("stdout %q", r.stdout)
	}

	r = run(t, "", "--db", db, "show")
	wantCode(t, r, 2)
	wantOneLine(t, r.stderr, "--conversation is required")
}

// verifyOutput is what verify prints.
type verifyOutput struct {
	OK       *bool    `json:"ok"`
	Problems []string `json:"problems"`
}

func verify(t *testing.T, db string, code int) verifyOutput {
	t.Helper()
	r := run(t, "", "--db", db, "verify")
	wantCode(t, r, code)
	var v verifyOutput
	decodeDoc(t, r.stdout, &v)
	if v.OK == nil || v.Problems == nil || *v.OK != (len(v.Problems) == 0) || *v.OK != (code == 0) {
		t.Errorf("verify printed %s", r.stdout)
	}
	if code == 0 && r.stderr != "" {
		t.Errorf("stderr %q", r.stderr)
	}
	if code != 0 {
		wantOneLine(t, r.stderr, "problem")
	}
	return v
}

func TestVerifyRebuild(t *testing.T) {
	db := tempDB(t)
	verify(t, db, 0) // a fresh database
	wantCode(t, run(t, "", "--db", db, "ingest", demoFile), 0)
	verify(t, db, 0)

	// Corrupt one read model behind the store's back.
	raw, err := sqlite3.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Exec(`UPDATE conversations SET summary = json_set(summary, '$.messages', 999) WHERE conversation_id = 'demo-weather'`); err != nil {
		t.Fatal(err)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	v := verify(t, db, 1)
	if len(v.Problems) != 1 || !strings.Contains(v.Problems[0], `"demo-weather"`) || !strings.Contains(v.Problems[0], "messages") {
		t.Errorf("verify after corruption: %q", v.Problems)
	}

	r := run(t, "", "--db", db, "rebuild")
	wantCode(t, r, 0)
	var res struct {
		Rebuilt []string `json:"rebuilt"`
		Events  int64    `json:"events"`
		Seconds *float64 `json:"seconds"`
	}
	decodeDoc(t, r.stdout, &res)
	if !reflect.DeepEqual(res.Rebuilt, []string{"conversations", "search"}) || res.Events != 38 || res.Seconds == nil || *res.Seconds < 0 {
		t.Errorf("rebuild printed %s", r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("rebuild wrote to stderr off a terminal: %q", r.stderr)
	}
	verify(t, db, 0)
	r = run(t, "", "--db", db, "show", "--conversation", "demo-weather")
	if !strings.Contains(r.stdout, `"messages":8,`) {
		t.Errorf("show after rebuild: %s", r.stdout)
	}

	for _, name := range []string{"conversations", "search", "all"} {
		wantCode(t, run(t, "", "--db", db, "rebuild", "--projection", name), 0)
	}
	r = run(t, "", "--db", db, "rebuild", "--projection", "titles")
	wantCode(t, r, 2)
	wantOneLine(t, r.stderr, `"titles"`)

	// An empty log rebuilds to nothing.
	r = run(t, "", "--db", ":memory:", "rebuild")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, `"events":0,`) {
		t.Errorf("rebuild of an empty log: %s", r.stdout)
	}
}

// statsOutput is what stats prints.
type statsOutput struct {
	Events        int64            `json:"events"`
	Conversations int64            `json:"conversations"`
	ByType        map[string]int64 `json:"by_type"`
	DBBytes       *int64           `json:"db_bytes"`
	WALBytes      *int64           `json:"wal_bytes"`
	Payload       *struct {
		StoredBytes      int64 `json:"stored_bytes"`
		RawBytes         int64 `json:"raw_bytes"`
		CompressedValues int64 `json:"compressed_values"`
	} `json:"payload"`
	GroupCommit *struct {
		Appended int64 `json:"appended"`
		Commits  int64 `json:"commits"`
	} `json:"group_commit"`
}

func TestStats(t *testing.T) {
	// The expected counts, from the file: each key stored once.
	f, err := os.Open(demoFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]int64{}
	seen := map[string]bool{}
	convs := map[string]bool{}
	var total int64
	rd := logfile.NewReader(f)
	for {
		e, err := rd.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("line %d: %v", rd.Line(), err)
		}
		key := e.ConversationID + "\x00" + e.RequestID
		if seen[key] {
			continue
		}
		seen[key] = true
		convs[e.ConversationID] = true
		want[string(e.Type)]++
		total++
	}

	db := ingestedDemo(t)
	r := run(t, "", "--db", db, "stats")
	wantCode(t, r, 0)
	var st statsOutput
	decodeDoc(t, r.stdout, &st)
	if st.Events != total || st.Events != 38 || st.Conversations != int64(len(convs)) || !reflect.DeepEqual(st.ByType, want) {
		t.Errorf("stats: %s\nwant %d events, %d conversations, by type %v", r.stdout, total, len(convs), want)
	}
	if want["assistant_delta"] != 13 || want["user_message"] != 8 {
		t.Errorf("the demo's legacy deltas or duplicate are not what this test expects: %v", want)
	}
	if fi, err := os.Stat(db); err != nil || st.DBBytes == nil || *st.DBBytes <= 0 || *st.DBBytes > fi.Size() {
		t.Errorf("db_bytes: %s", r.stdout)
	}
	if st.WALBytes == nil || *st.WALBytes < 0 {
		t.Errorf("wal_bytes: %s", r.stdout)
	}
	if st.GroupCommit == nil || st.GroupCommit.Appended != 0 {
		t.Errorf("group_commit (this process appended nothing): %s", r.stdout)
	}
	// The demo's messages are all short: nothing compressed.
	if st.Payload == nil || st.Payload.RawBytes < 2000 || st.Payload.StoredBytes != st.Payload.RawBytes || st.Payload.CompressedValues != 0 {
		t.Errorf("payload of the demo: %s", r.stdout)
	}
	demo := *st.Payload
	long := strings.Repeat("A long reply that repeats itself, as long replies do. ", 40)
	wantCode(t, run(t, "", "--db", db, "append", "--conversation", "new", "--type", "assistant_message", "--content", long), 0)
	r = run(t, "", "--db", db, "stats")
	wantCode(t, r, 0)
	st = statsOutput{}
	decodeDoc(t, r.stdout, &st)
	if st.Events != 39 || st.Conversations != int64(len(convs))+1 || st.Payload.CompressedValues != 1 ||
		st.Payload.RawBytes != demo.RawBytes+int64(len(long)) || st.Payload.StoredBytes-demo.StoredBytes > int64(len(long))/4 {
		t.Errorf("stats after a long message: %s\nwant it compressed (%d bytes raw)", r.stdout, len(long))
	}

	r = run(t, "", "--db", ":memory:", "stats")
	wantCode(t, r, 0)
	var mem statsOutput
	decodeDoc(t, r.stdout, &mem)
	if mem.Events != 0 || mem.Conversations != 0 {
		t.Errorf("stats of an empty :memory: database: %s", r.stdout)
	}
	if strings.Contains(r.stdout, "db_bytes") || strings.Contains(r.stdout, "wal_bytes") || !strings.Contains(r.stdout, `"by_type":{}`) {
		t.Errorf("stats of :memory:: %s", r.stdout)
	}

	r = run(t, "", "--db", db, "stats", "x")
	wantCode(t, r, 2)
	wantOneLine(t, r.stderr, "unexpected argument")
}
