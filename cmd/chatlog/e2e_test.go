package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestEndToEnd builds the binary and drives it as a user would: ingest a
// file twice, reuse a key with another payload, stream a turn.
func TestEndToEnd(t *testing.T) {
	bin := chatlogBinary(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "log.jsonl")
	if err := os.WriteFile(log, []byte(goodLog), 0o644); err != nil {
		t.Fatal(err)
	}

	chatlog := func(args ...string) (code int, stdout, stderr string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CHATLOG_DB=") // the default chatlog.db in dir
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatalf("run %v: %v", args, err)
		}
		return code, out.String(), errOut.String()
	}

	code, out, errOut := chatlog("ingest", "log.jsonl")
	if code != 0 || strings.TrimSpace(out) != `{"read":5,"appended":5,"duplicates":0,"conflicts":0,"invalid":0}` {
		t.Fatalf("first ingest: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "chatlog.db")); err != nil {
		t.Errorf("the default database chatlog.db was not created: %v", err)
	}
	code, out, errOut = chatlog("ingest", "log.jsonl")
	if code != 0 || strings.TrimSpace(out) != `{"read":5,"appended":0,"duplicates":5,"conflicts":0,"invalid":0}` {
		t.Fatalf("second ingest: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = chatlog("append", "--conversation", "c", "--type", "user_message", "--content", "another question", "--request-id", "u1")
	if code != 3 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "stored seq 1") {
		t.Fatalf("key reuse: exit %d, stdout %q, stderr %q; want exit 3 and one line naming the stored seq", code, out, errOut)
	}

	// A streamed turn: begin, two chunks, finish; a retry of the turn
	// gets the reply, a second begin while it ran was told to wait.
	code, out, errOut = chatlog("turn", "--conversation", "s", "--request-id", "q1", "--content", "Say hello")
	if code != 0 || !strings.HasPrefix(out, `{"status":"started","attempt":1,"lease_expires_at":"`) {
		t.Fatalf("turn: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = chatlog("turn", "--conversation", "s", "--request-id", "q1", "--content", "Say hello")
	if code != 4 || !strings.HasPrefix(out, `{"status":"in_flight","attempt":1,`) || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("turn in flight: exit %d, stdout %q, stderr %q; want exit 4", code, out, errOut)
	}
	for i, text := range []string{"Hello, ", "world."} {
		code, out, errOut = chatlog("delta", "--conversation", "s", "--user-request-id", "q1", "--attempt", "1", "--index", strconv.Itoa(i), "--content", text)
		if code != 0 || !strings.HasSuffix(out, `"duplicate":false}`+"\n") {
			t.Fatalf("delta %d: exit %d, stdout %q, stderr %q", i, code, out, errOut)
		}
	}
	code, out, errOut = chatlog("finish", "--conversation", "s", "--user-request-id", "q1", "--attempt", "1", "--stop-reason", "end_turn")
	if code != 0 || !strings.Contains(out, `"type":"assistant_message"`) || !strings.Contains(out, `"content":"Hello, world."`) {
		t.Fatalf("finish: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = chatlog("turn", "--conversation", "s", "--request-id", "q1", "--content", "Say hello")
	if code != 0 || !strings.HasPrefix(out, `{"status":"completed","attempt":1,`) || !strings.Contains(out, `"content":"Hello, world."`) {
		t.Fatalf("turn after finish: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
