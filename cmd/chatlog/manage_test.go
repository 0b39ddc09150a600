package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// decode unmarshals one JSON document from a command's output.
func decode[T any](tb testing.TB, out string) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		tb.Fatalf("output %q: %v", out, err)
	}
	return v
}

func TestStartEndReopen(t *testing.T) {
	db := tempDB(t)
	r := run(t, "", "--db", db, "start", "--conversation", "c1", "--source", "cli", "--user", "ann",
		"--model", "m1", "--system", "be brief", "--title", " Trip\u200b plan ", "--model-config", `{"temperature":0.2}`)
	wantCode(t, r, 0)
	first := decodeEvent(t, r.stdout)
	if first.Type != "conversation_started" || *first.Duplicate || first.Extra["title"] != "Trip plan" || first.Extra["project"] == "" {
		t.Errorf("start printed %+v", first)
	}
	r = run(t, "", "--db", db, "start", "--conversation", "c1", "--user", "someone else")
	wantCode(t, r, 0)
	if again := decodeEvent(t, r.stdout); again.ID != first.ID || !*again.Duplicate {
		t.Errorf("second start = %+v, want the first as a duplicate", again)
	}
	wantCode(t, run(t, "", "--db", db, "end", "--conversation", "c1", "--reason", "done"), 0)
	show := decode[map[string]any](t, run(t, "", "--db", db, "show", "--conversation", "c1").stdout)
	if show["ended"] != true || show["ended_reason"] != "done" || show["user"] != "ann" || show["title"] != "Trip plan" {
		t.Errorf("show after end = %v", show)
	}
	wantCode(t, run(t, "", "--db", db, "reopen", "--conversation", "c1"), 0)
	show = decode[map[string]any](t, run(t, "", "--db", db, "show", "--conversation", "c1").stdout)
	if show["ended"] != false {
		t.Errorf("show after reopen = %v", show)
	}
	r = run(t, "", "--db", db, "start", "--conversation", "c2", "--title", "trip plan", "--model-config", "[1]")
	wantCode(t, r, 2)
}

func TestTitleResolve(t *testing.T) {
	db := tempDB(t)
	r := run(t, "", "--db", db, "title", "--conversation", "a")
	wantCode(t, r, 0)
	if r.stdout != "null\n" {
		t.Errorf("title of an untitled conversation = %q, want null", r.stdout)
	}
	r = run(t, "", "--db", db, "title", "--conversation", "a", "  My\tchat ")
	wantCode(t, r, 0)
	if r.stdout != "\"My chat\"\n" {
		t.Errorf("set title printed %q", r.stdout)
	}
	r = run(t, "", "--db", db, "title", "--conversation", "b", "My chat")
	wantCode(t, r, 1)
	wantOneLine(t, r.stderr, "My chat", `"a"`)
	r = run(t, "", "--db", db, "title", "--conversation", "b", "--next", "My chat")
	wantCode(t, r, 0)
	if r.stdout != "\"My chat #2\"\n" {
		t.Errorf("--next printed %q", r.stdout)
	}
	r = run(t, "", "--db", db, "resolve", "My chat")
	wantCode(t, r, 0)
	if r.stdout != "\"b\"\n" {
		t.Errorf("resolve by title = %q, want the latest of the lineage, b", r.stdout)
	}
	for _, id := range []string{"0193-aaa", "0193-aab"} {
		wantCode(t, run(t, "", "--db", db, "append", "--conversation", id, "--type", "user_message", "--content", "x"), 0)
	}
	r = run(t, "", "--db", db, "resolve", "0193-aaa")
	wantCode(t, r, 0)
	if r.stdout != "\"0193-aaa\"\n" {
		t.Errorf("resolve by id = %q", r.stdout)
	}
	r = run(t, "", "--db", db, "resolve", "0193")
	wantCode(t, r, 1)
	wantOneLine(t, r.stderr, "ambiguous", "0193-aaa", "0193-aab")
	r = run(t, "", "--db", db, "resolve", "nothing")
	wantCode(t, r, 1)
	wantCode(t, run(t, "", "--db", db, "title", "--conversation", "a", "x", "y"), 2)
	wantCode(t, run(t, "", "--db", db, "title", "--conversation", "a", "--next"), 2)
}

func TestForkPopClearSystem(t *testing.T) {
	db := tempDB(t)
	for _, text := range []string{"one", "two", "three"} {
		wantCode(t, run(t, "", "--db", db, "append", "--conversation", "p", "--type", "user_message", "--content", text), 0)
	}
	r := run(t, "", "--db", db, "fork", "--conversation", "p", "--at-seq", "2", "--new-id", "b")
	wantCode(t, r, 0)
	f := decode[forked](t, r.stdout)
	if f != (forked{ConversationID: "b", ParentID: "p", ParentSeq: 2}) {
		t.Errorf("fork printed %+v", f)
	}
	r = run(t, "", "--db", db, "fork", "--conversation", "p", "--at-seq", "2", "--new-id", "b")
	wantCode(t, r, 0)
	if f := decode[forked](t, r.stdout); !f.Duplicate {
		t.Errorf("fork again printed %+v, want a duplicate", f)
	}
	wantCode(t, run(t, "", "--db", db, "fork", "--conversation", "p", "--at-seq", "1", "--new-id", "b"), 1)
	wantCode(t, run(t, "", "--db", db, "fork", "--conversation", "nobody"), 1)
	r = run(t, "", "--db", db, "fork", "--conversation", "p", "--at-seq", "9")
	wantCode(t, r, 1)
	wantOneLine(t, r.stderr, `chatlog fork: --at-seq: is 9, beyond the head of "p" (3)`)
	wantCode(t, run(t, "", "--db", db, "system", "--conversation", "b", "talk like a pirate"), 0)
	r = run(t, "", "--db", db, "messages", "--conversation", "b")
	wantCode(t, r, 0)
	if want := `[{"role":"system","content":"talk like a pirate"},{"role":"user","content":"one"},{"role":"user","content":"two"}]`; strings.TrimSpace(r.stdout) != want {
		t.Errorf("messages of the branch = %s, want %s", r.stdout, want)
	}
	r = run(t, "", "--db", db, "pop", "--conversation", "b")
	wantCode(t, r, 0)
	if e := decodeEvent(t, r.stdout); e.Content != "two" || e.ConversationID != "p" || e.Seq != 2 {
		t.Errorf("pop printed %+v, want p's 'two' at seq 2", e)
	}
	wantCode(t, run(t, "", "--db", db, "clear", "--conversation", "b"), 0)
	r = run(t, "", "--db", db, "pop", "--conversation", "b")
	wantCode(t, r, 0)
	if r.stdout != "null\n" {
		t.Errorf("pop after clear printed %q, want null", r.stdout)
	}
	// The parent is untouched.
	r = run(t, "", "--db", db, "messages", "--conversation", "p")
	if strings.Count(r.stdout, `"role":"user"`) != 3 {
		t.Errorf("parent messages = %s", r.stdout)
	}
}

func TestDeletePrune(t *testing.T) {
	db := tempDB(t)
	for _, c := range []string{"p", "q"} {
		wantCode(t, run(t, "", "--db", db, "append", "--conversation", c, "--type", "user_message", "--content", "hello"), 0)
	}
	wantCode(t, run(t, "", "--db", db, "fork", "--conversation", "p", "--new-id", "b"), 0)
	r := run(t, "", "--db", db, "delete", "--conversation", "p")
	wantCode(t, r, 1)
	wantOneLine(t, r.stderr, "branches", "b", "--cascade")
	r = run(t, "", "--db", db, "delete", "--conversation", "p", "--cascade")
	wantCode(t, r, 0)
	if e := decode[erased](t, r.stdout); e.Deleted != 2 || strings.Join(e.Conversations, ",") != "b,p" {
		t.Errorf("delete printed %+v", e)
	}
	wantCode(t, run(t, "", "--db", db, "show", "--conversation", "p"), 1)
	wantCode(t, run(t, "", "--db", db, "end", "--conversation", "q"), 0)
	r = run(t, "", "--db", db, "prune", "--older-than", "1d")
	wantCode(t, r, 0)
	if e := decode[erased](t, r.stdout); e.Deleted != 0 {
		t.Errorf("prune --older-than 1d erased %+v, want nothing (q is fresh)", e)
	}
	r = run(t, "", "--db", db, "prune", "--older-than", "0s")
	wantCode(t, r, 0)
	if e := decode[erased](t, r.stdout); e.Deleted != 1 || e.Conversations[0] != "q" {
		t.Errorf("prune --older-than 0s printed %+v, want q", e)
	}
	for _, bad := range []string{"", "ten days", "-5h", "1.5d"} {
		wantCode(t, run(t, "", "--db", db, "prune", "--older-than", bad), 2)
	}
	r = run(t, "", "--db", db, "verify")
	wantCode(t, r, 0)
}

func TestUsageCommand(t *testing.T) {
	db := tempDB(t)
	wantCode(t, run(t, "", "--db", db, "start", "--conversation", "c", "--user", "ann"), 0)
	for range 2 {
		r := run(t, "", "--db", db, "usage", "--conversation", "c", "--input", "10", "--output", "2", "--cost", "0.5",
			"--currency", "USD", "--request-id", "turn-1")
		wantCode(t, r, 0)
		if got := decode[usageTotals](t, r.stdout); got.Usage.Input != 10 || got.Usage.Cost != 0.5 || got.Usage.Currency != "USD" {
			t.Errorf("usage printed %+v (a retry must add nothing)", got)
		}
	}
	r := run(t, "", "--db", db, "usage", "--conversation", "c", "--input", "99", "--request-id", "turn-1")
	wantCode(t, r, 3)
	r = run(t, "", "--db", db, "usage", "--conversation", "c", "--set", "--input", "100", "--actual-cost", "2")
	wantCode(t, r, 0)
	if got := decode[usageTotals](t, r.stdout); got.Usage.Input != 100 || got.Usage.Output != 0 || got.Usage.ActualCost != 2 {
		t.Errorf("usage --set printed %+v", got)
	}
	r = run(t, "", "--db", db, "usage", "--conversation", "c")
	if got := decode[usageTotals](t, r.stdout); got.Usage.Input != 100 {
		t.Errorf("usage (print only) = %+v", got)
	}
	r = run(t, "", "--db", db, "usage", "--user", "ann")
	wantCode(t, r, 0)
	if got := decode[usageTotals](t, r.stdout); got.User != "ann" || got.Usage.Input != 100 {
		t.Errorf("usage --user = %+v", got)
	}
	wantCode(t, run(t, "", "--db", db, "usage"), 2)
	wantCode(t, run(t, "", "--db", db, "usage", "--user", "ann", "--input", "1"), 2)
	wantCode(t, run(t, "", "--db", db, "usage", "--conversation", "c", "--input", "-1"), 1)
}

func TestReplayPaging(t *testing.T) {
	db := tempDB(t)
	for _, text := range []string{"1", "2", "3", "4", "5"} {
		wantCode(t, run(t, "", "--db", db, "append", "--conversation", "c", "--type", "user_message", "--content", text), 0)
	}
	seqs := func(out string) (s []int64) {
		for _, e := range jsonl(t, out) {
			s = append(s, e.Seq)
		}
		return s
	}
	for _, tc := range []struct {
		args []string
		want []int64
	}{
		{[]string{"--last", "2"}, []int64{4, 5}},
		{[]string{"--reverse"}, []int64{5, 4, 3, 2, 1}},
		{[]string{"--before-seq", "4", "--reverse", "--limit", "2"}, []int64{3, 2}},
		{[]string{"--after-seq", "1", "--limit", "2"}, []int64{2, 3}},
		{[]string{"--before-seq", "1"}, nil},
	} {
		r := run(t, "", append([]string{"--db", db, "replay", "--conversation", "c"}, tc.args...)...)
		wantCode(t, r, 0)
		if got := seqs(r.stdout); !slices.Equal(got, tc.want) {
			t.Errorf("replay %v = %v, want %v", tc.args, got, tc.want)
		}
	}
	wantCode(t, run(t, "", "--db", db, "replay", "--conversation", "c", "--last", "2", "--reverse"), 2)
	wantCode(t, run(t, "", "--db", db, "replay", "--conversation", "c", "--until-seq", "2", "--before-seq", "2"), 2)
}

// TestForkExportImport: a branch's lineage survives export and import,
// of the whole log and of the branch alone (its export carries the
// history it inherits).
func TestForkExportImport(t *testing.T) {
	db := tempDB(t)
	for _, text := range []string{"one", "two", "three"} {
		wantCode(t, run(t, "", "--db", db, "append", "--conversation", "p", "--type", "user_message", "--content", text), 0)
	}
	wantCode(t, run(t, "", "--db", db, "fork", "--conversation", "p", "--at-seq", "2", "--new-id", "b"), 0)
	wantCode(t, run(t, "", "--db", db, "append", "--conversation", "b", "--type", "user_message", "--content", "branch"), 0)
	wantCode(t, run(t, "", "--db", db, "fork", "--conversation", "b", "--new-id", "bb"), 0)
	wantCode(t, run(t, "", "--db", db, "append", "--conversation", "bb", "--type", "user_message", "--content", "deeper"), 0)
	// pos is the importing store's own; everything else carries over.
	want := withoutPos(run(t, "", "--db", db, "replay", "--conversation", "bb").stdout)
	wantMessages := run(t, "", "--db", db, "messages", "--conversation", "bb").stdout
	for _, scope := range [][]string{nil, {"--conversation", "bb"}} {
		out := run(t, "", append([]string{"--db", db, "export"}, scope...)...)
		wantCode(t, out, 0)
		other := tempDB(t)
		for range 2 { // importing twice adds nothing
			r := run(t, out.stdout, "--db", other, "import", "-")
			wantCode(t, r, 0)
		}
		if got := withoutPos(run(t, "", "--db", other, "replay", "--conversation", "bb").stdout); got != want {
			t.Errorf("export %v: imported branch replays\n%s\nwant\n%s", scope, got, want)
		}
		if got := run(t, "", "--db", other, "messages", "--conversation", "bb").stdout; got != wantMessages {
			t.Errorf("export %v: imported branch's messages %s, want %s", scope, got, wantMessages)
		}
		wantCode(t, run(t, "", "--db", other, "verify"), 0)
	}
}

func TestCurrentCommand(t *testing.T) {
	db := tempDB(t)
	r := run(t, "", "--db", db, "current", "--user", "ann")
	wantCode(t, r, 0)
	if r.stdout != `{"user":"ann","scope":"default","conversation_id":null}`+"\n" {
		t.Errorf("current of a new user = %s", r.stdout)
	}
	r = run(t, "", "--db", db, "current", "--user", "ann", "--scope", "tg", "--set", "c9")
	wantCode(t, r, 0)
	if r.stdout != `{"user":"ann","scope":"tg","conversation_id":"c9"}`+"\n" {
		t.Errorf("current --set = %s", r.stdout)
	}
	r = run(t, "", "--db", db, "current", "--user", "ann", "--scope", "tg")
	if !strings.Contains(r.stdout, `"c9"`) {
		t.Errorf("current = %s", r.stdout)
	}
	r = run(t, "", "--db", db, "current", "--user", "ann", "--scope", "tg", "--unset")
	if !strings.Contains(r.stdout, `"conversation_id":null`) {
		t.Errorf("current --unset = %s", r.stdout)
	}
	wantCode(t, run(t, "", "--db", db, "current"), 2)
	wantCode(t, run(t, "", "--db", db, "current", "--user", "a", "--set", "x", "--unset"), 2)
	// The pointer stream is not a conversation.
	r = run(t, "", "--db", db, "ls")
	if strings.Contains(r.stdout, "~user") {
		t.Errorf("ls shows the pointer stream: %s", r.stdout)
	}
}
