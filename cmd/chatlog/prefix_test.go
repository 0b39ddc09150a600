package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestTablePrefix: --table-prefix (or $CHATLOG_TABLE_PREFIX) keeps
// applications sharing one file apart; the flag wins over the variable;
// a prefix that is not an identifier is a usage error naming the flag.
func TestTablePrefix(t *testing.T) {
	db := tempDB(t)
	for _, c := range []struct{ prefix, text string }{{"", "plain words"}, {"a_", "alpha words"}, {"b_", "beta words"}} {
		args := []string{"--db", db}
		if c.prefix != "" {
			args = append(args, "--table-prefix", c.prefix)
		}
		wantCode(t, run(t, "", append(args, "append", "--conversation", "c", "--type", "user_message", "--content", c.text, "--request-id", "k")...), 0)
	}
	runEnv := func(env map[string]string, args ...string) result {
		t.Helper()
		var stdout, stderr bytes.Buffer
		m := &Main{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }}
		code := m.Run(context.Background(), args)
		return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"none", nil, nil, "plain words"},
		{"flag", nil, []string{"--table-prefix", "a_"}, "alpha words"},
		{"env", map[string]string{"CHATLOG_TABLE_PREFIX": "b_"}, nil, "beta words"},
		{"flag over env", map[string]string{"CHATLOG_TABLE_PREFIX": "b_"}, []string{"--table-prefix", "a_"}, "alpha words"},
	} {
		args := append(append([]string{"--db", db}, c.args...), "replay", "--conversation", "c")
		r := runEnv(c.env, args...)
		wantCode(t, r, 0)
		if strings.Count(r.stdout, "\n") != 1 || !strings.Contains(r.stdout, c.want) || !strings.Contains(r.stdout, `"seq":1,`) {
			t.Errorf("%s: replay printed %q, want the one event with %q", c.name, r.stdout, c.want)
		}
		args = append(append([]string{"--db", db}, c.args...), "search", "words")
		r = runEnv(c.env, args...)
		wantCode(t, r, 0)
		if strings.Count(r.stdout, `"seq"`) != 1 || !strings.Contains(r.stdout, strings.Fields(c.want)[0]+" [words]") {
			t.Errorf("%s: search printed %s, want only its own message", c.name, r.stdout)
		}
	}

	r := run(t, "", "--db", db, "--table-prefix", "1x", "replay", "--conversation", "c")
	wantCode(t, r, 2)
	wantOneLine(t, r.stderr, "--table-prefix", `"1x"`)
	r = runEnv(map[string]string{"CHATLOG_TABLE_PREFIX": "a-b"}, "--db", db, "stats")
	wantCode(t, r, 2)
	wantOneLine(t, r.stderr, "CHATLOG_TABLE_PREFIX", `"a-b"`)
	if r := run(t, "", "--help"); !strings.Contains(r.stdout, "--table-prefix P") {
		t.Errorf("--help does not list --table-prefix:\n%s", r.stdout)
	}
}
