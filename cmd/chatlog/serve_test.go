package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatlog/chatlog/internal/storetest"
)

func TestServe_UsageErrors(t *testing.T) {
	wantCode(t, run(t, "", "--db", ":memory:", "serve", "extra"), exitUsage)
	wantCode(t, run(t, "", "--db", ":memory:", "serve", "--max-body", "0"), exitUsage)
	r := run(t, "", "--db", ":memory:", "serve", "--addr", "127.0.0.1:notaport")
	wantCode(t, r, exitFailure)
	wantOneLine(t, r.stderr, "listen on 127.0.0.1:notaport")
}

// listenAddr waits for the "listening" log line of chatlog serve in the
// JSON lines read from next and returns its address.
func listenAddr(tb testing.TB, lines <-chan string) string {
	tb.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				tb.Fatal("chatlog serve stopped before listening")
			}
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				return "http://" + rec.Addr
			}
		case <-timeout:
			tb.Fatal("chatlog serve did not log its address within 30s")
		}
	}
}

// TestServe_InProcess runs serve in process with the token from
// $CHATLOG_TOKEN, then stops it as SIGINT would (its context ends): it
// returns 0, and what it acknowledged is in the database.
func TestServe_InProcess(t *testing.T) {
	const token = "s3cret-token-xyz"
	db := tempDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var logs syncBuffer
	getenv := func(k string) string {
		if k == "CHATLOG_TOKEN" {
			return token
		}
		return ""
	}
	m := &Main{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.MultiWriter(pw, &logs), Getenv: getenv}
	done := make(chan int, 1)
	go func() {
		done <- m.Run(ctx, []string{"--db", db, "serve", "--addr", "127.0.0.1:0"})
		pw.Close()
	}()
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody waits for lines any more
			}
		}
	}()
	base := listenAddr(t, lines)

	get := func(path, auth string) int {
		req, _ := http.NewRequest("GET", base+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/healthz", ""); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	if code := get("/v1/conversations", ""); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d, want 401", code)
	}
	req, _ := http.NewRequest("POST", base+"/v1/conversations/c/events", strings.NewReader(`{"type":"user_message","content":"kept"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("append with the token: %d", resp.StatusCode)
	}

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("serve exited %d: %s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop within 20s of its context ending")
	}
	if strings.Contains(logs.String(), token) {
		t.Error("the token appears in the logs")
	}
	r := run(t, "", "--db", db, "replay", "--conversation", "c")
	wantCode(t, r, exitOK)
	if !strings.Contains(r.stdout, `"content":"kept"`) {
		t.Fatalf("the acknowledged event is missing: %s", r.stdout)
	}
}

// servedProcess is chatlog serve running as a child process.
type servedProcess struct {
	cmd  *exec.Cmd
	base string
	logs *syncBuffer
}

// startServe runs the binary's serve on a free loopback port.
func startServe(tb testing.TB, bin, db string) *servedProcess {
	tb.Helper()
	cmd := exec.Command(bin, "--db", db, "serve", "--addr", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &servedProcess{cmd: cmd, logs: &syncBuffer{}}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string, 16)
	go func() {
		// Drain stderr for the life of the process, so logging never
		// blocks it; the first lines go to listenAddr.
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.logs.Write([]byte(sc.Text() + "\n"))
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	p.base = listenAddr(tb, lines)
	return p
}

// TestServe_KillUnderLoad builds the binary, serves, kills it with
// SIGKILL while clients append with keys, and restarts it on the same
// store: every acknowledged event is there exactly once, and retrying
// every key sent, acknowledged or not, is answered 2xx and leaves each
// key once in the log.
func TestServe_KillUnderLoad(t *testing.T) { storetest.Run(t, testServe_KillUnderLoad) }

func testServe_KillUnderLoad(t *testing.T, b storetest.Backend) {
	bin := chatlogBinary(t)
	db := b.New(t)
	srv := startServe(t, bin, db)

	const writers = 4
	body := func(key string) string {
		return fmt.Sprintf(`{"type":"user_message","content":"payload of %s","request_id":%q}`, key, key)
	}
	post := func(c *http.Client, base, key string) (int, error) {
		resp, err := c.Post(base+"/v1/conversations/load/events", "application/json", strings.NewReader(body(key)))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}

	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		sent  []string
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	client := &http.Client{Timeout: 10 * time.Second}
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				mu.Lock()
				sent = append(sent, key)
				mu.Unlock()
				code, err := post(client, srv.base, key)
				if err != nil {
					return // the server is gone
				}
				if code/100 != 2 {
					t.Errorf("append %s: status %d", key, code)
					return
				}
				mu.Lock()
				acked[key] = true
				mu.Unlock()
			}
		})
	}
	waitAcked := func(n int) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			got := len(acked)
			mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d appends acknowledged within 30s", got)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitAcked(500)
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Wait()
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}

	srv = startServe(t, bin, db)
	count := func() map[string]int {
		seen := map[string]int{}
		var after int64
		for {
			resp, err := client.Get(fmt.Sprintf("%s/v1/conversations/load/events?after_seq=%d&limit=1000", srv.base, after))
			if err != nil {
				t.Fatal(err)
			}
			var page struct {
				Events []struct {
					Seq       int64  `json:"seq"`
					RequestID string `json:"request_id"`
					Content   string `json:"content"`
				} `json:"events"`
				Next int64 `json:"next_after_seq"`
			}
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Events) == 0 {
				return seen
			}
			for _, e := range page.Events {
				if e.Seq != after+1 {
					t.Fatalf("seq %d after %d: a gap", e.Seq, after)
				}
				if e.Content != "payload of "+e.RequestID {
					t.Fatalf("event %s holds %q", e.RequestID, e.Content)
				}
				seen[e.RequestID]++
				after = e.Seq
			}
		}
	}
	seen := count()
	for key := range acked {
		if seen[key] != 1 {
			t.Fatalf("acknowledged key %s is in the log %d times", key, seen[key])
		}
	}
	for key, n := range seen {
		if n != 1 {
			t.Fatalf("key %s is in the log %d times", key, n)
		}
	}
	t.Logf("%d keys sent, %d acknowledged before SIGKILL, %d in the log after restart", len(sent), len(acked), len(seen))

	for _, key := range sent {
		code, err := post(client, srv.base, key)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case code == http.StatusOK && seen[key] == 1, code == http.StatusCreated && seen[key] == 0:
		default:
			t.Fatalf("retry of %s (in the log %d times): status %d", key, seen[key], code)
		}
	}
	seen = count()
	if len(seen) != len(sent) {
		t.Fatalf("after the retries the log holds %d keys, want %d", len(seen), len(sent))
	}
	for key, n := range seen {
		if n != 1 {
			t.Fatalf("after the retries key %s is in the log %d times", key, n)
		}
	}
	if err := srv.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGINT: %v\n%s", err, srv.logs.String())
	}
}
