package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatlog/chatlog/repo/sqlite"
	"github.com/chatlog/chatlog/server"
)

// testServer is a Server over a fresh SQLite file, behind httptest.
type testServer struct {
	tb     testing.TB
	srv    *server.Server
	url    string
	client *http.Client
	repo   *sqlite.Repo
	path   string
}

// openRepo opens the SQLite store at path, closed at cleanup.
func openRepo(tb testing.TB, path string) *sqlite.Repo {
	tb.Helper()
	r, err := sqlite.Open(context.Background(), path, &sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// quiet fills in a discarding logger.
func quiet(opts *server.Options) *server.Options {
	if opts == nil {
		opts = &server.Options{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return opts
}

// newTestServer starts a Server over a new database with opts.
func newTestServer(tb testing.TB, opts *server.Options) *testServer {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "x.db")
	r := openRepo(tb, path)
	opts = quiet(opts)
	if opts.StoreStats == nil {
		opts.StoreStats = func() map[string]float64 {
			st := r.Stats()
			return map[string]float64{"appended_total": float64(st.Appended), "commits_total": float64(st.Commits)}
		}
	}
	srv := server.New(r, opts)
	ts := httptest.NewServer(srv)
	tb.Cleanup(ts.Close) // runs before the repo's Close (cleanups run last first)
	return &testServer{tb: tb, srv: srv, url: ts.URL, client: ts.Client(), repo: r, path: path}
}

// serveOn runs s on a loopback listener until the returned stop is
// called; stop waits for Serve to return and reports its error.
func serveOn(tb testing.TB, s *server.Server) (url string, stop func() error) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	var once bool
	var serveErr error
	stop = func() error {
		if !once {
			once = true
			cancel()
			serveErr = <-done
		}
		return serveErr
	}
	tb.Cleanup(func() { stop() })
	return "http://" + ln.Addr().String(), stop
}

// response is what a request got.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a generic value.
func (r response) json(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		tb.Fatalf("body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// errorCode is the error.code of an error body, "" when there is none.
func (r response) errorCode(tb testing.TB) string {
	tb.Helper()
	e, _ := r.json(tb)["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// errorField is the error.field of an error body.
func (r response) errorField(tb testing.TB) string {
	tb.Helper()
	e, _ := r.json(tb)["error"].(map[string]any)
	f, _ := e["field"].(string)
	return f
}

// do sends a request; headers come as name, value pairs.
func (s *testServer) do(method, path, body string, headers ...string) response {
	s.tb.Helper()
	return doRequest(s.tb, s.client, s.url, method, path, body, headers...)
}

func doRequest(tb testing.TB, c *http.Client, base, method, path, body string, headers ...string) response {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// want checks a response's status and, when code is set, its error code.
func want(tb testing.TB, r response, status int, code string) {
	tb.Helper()
	if r.status != status {
		tb.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if code != "" {
		if got := r.errorCode(tb); got != code {
			tb.Fatalf("error code %q, want %q; body %s", got, code, r.body)
		}
	}
	ct := r.header.Get("Content-Type")
	if len(r.body) > 0 && (r.body[0] == '{' || r.body[0] == '[') && !strings.HasPrefix(ct, "application/json") {
		tb.Fatalf("Content-Type %q, want application/json; body %s", ct, r.body)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
