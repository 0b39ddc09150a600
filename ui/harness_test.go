package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chatlog/chatlog/logfile"
	"github.com/chatlog/chatlog/repo/sqlite"
	"github.com/chatlog/chatlog/server"
)

// stack is the real server over a fresh SQLite file holding
// testdata/demo.jsonl.
type stack struct {
	tb   testing.TB
	ts   *httptest.Server
	url  string
	repo *sqlite.Repo
	tok  string
}

func newStack(tb testing.TB, token string) *stack {
	tb.Helper()
	ctx := context.Background()
	r, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "ui.db"), &sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	f, err := os.Open(filepath.Join("..", "testdata", "demo.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := logfile.Ingest(ctx, r, f, logfile.IngestOptions{}); err != nil {
		tb.Fatal(err)
	}
	srv := server.New(r, &server.Options{Token: token, Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv)
	tb.Cleanup(func() {
		srv.CloseStreams()
		ts.Close()
	})
	return &stack{tb: tb, ts: ts, url: ts.URL, repo: r, tok: token}
}

// do sends an API request and returns the status and body.
func (s *stack) do(method, path string, body any) (int, []byte) {
	s.tb.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.tok != "" {
		req.Header.Set("Authorization", "Bearer "+s.tok)
	}
	resp, err := s.ts.Client().Do(req)
	if err != nil {
		s.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.tb.Fatal(err)
	}
	return resp.StatusCode, b
}

// get decodes the JSON answer of a GET that must succeed.
func (s *stack) get(path string) any {
	s.tb.Helper()
	code, b := s.do("GET", path, nil)
	if code != http.StatusOK {
		s.tb.Fatalf("GET %s: %d %s", path, code, b)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		s.tb.Fatalf("GET %s: %v", path, err)
	}
	return v
}

// post sends a write that must answer want.
func (s *stack) post(path string, body any, want int) map[string]any {
	s.tb.Helper()
	code, b := s.do("POST", path, body)
	if code != want {
		s.tb.Fatalf("POST %s: %d %s, want %d", path, code, b, want)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		s.tb.Fatalf("POST %s: %v", path, err)
	}
	return m
}

// events lists a conversation's events through the API.
func (s *stack) events(cid string) []map[string]any {
	s.tb.Helper()
	var out []map[string]any
	after := 0.0
	for {
		page := s.get(fmt.Sprintf("/v1/conversations/%s/events?after_seq=%d&limit=1000", cid, int(after))).(map[string]any)
		evs := page["events"].([]any)
		if len(evs) == 0 {
			return out
		}
		for _, e := range evs {
			out = append(out, e.(map[string]any))
		}
		after = page["next_after_seq"].(float64)
	}
}

// chromium is the browser the tests drive: $CHATLOG_CHROMIUM, else the
// first of Debian's and others' names on PATH.
func chromium() string {
	if p := os.Getenv("CHATLOG_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// The browser is started once for the package; each test opens its own
// tab (its own sessionStorage, so its own token).
var (
	browserOnce   sync.Once
	browserCtx    context.Context
	browserErr    error
	browserCancel = func() {}
)

func TestMain(m *testing.M) {
	code := m.Run()
	browserCancel()
	os.Exit(code)
}

// needBrowser skips the test when Chromium is missing or the run is under
// the race detector (see race_test.go), and returns the shared browser.
func needBrowser(tb testing.TB) context.Context {
	tb.Helper()
	if raceEnabled {
		tb.Skip("browser tests run in the pass without -race (go test -count=1 ./ui/): the browser's pace is the same, the instrumented server only slows them")
	}
	path := chromium()
	if path == "" {
		tb.Skip("no Chromium: install it with `apt-get install -y chromium` (CI's .ci/run does) or set CHATLOG_CHROMIUM")
	}
	browserOnce.Do(func() {
		dir, err := os.MkdirTemp("", "chatlog-ui-chromium-")
		if err != nil {
			browserErr = err
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			// Without these Chromium reaches for the network and
			// hangs on a machine that has none.
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("hide-scrollbars", true),
			chromedp.UserDataDir(dir),
			chromedp.WindowSize(1280, 800),
		)
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancel := chromedp.NewContext(actx)
		start := time.Now()
		// The first Run starts the browser; its context lives as long
		// as the browser, so it has no timeout of its own.
		if err := chromedp.Do(ctx); err != nil {
			browserErr = fmt.Errorf("start %s: %w", path, err)
		}
		browserCtx = ctx
		browserCancel = func() {
			cancel()
			acancel()
			os.RemoveAll(dir)
		}
		if browserErr == nil {
			fmt.Fprintf(os.Stderr, "ui: started %s in %v\n", path, time.Since(start).Round(time.Millisecond))
		}
	})
	if browserErr != nil {
		tb.Fatal(browserErr)
	}
	return browserCtx
}

// page is one browser tab on a stack, saving screenshots as it goes.
type page struct {
	tb    testing.TB
	ctx   context.Context
	s     *stack
	shots string
	name  string
	n     int
}

// artifacts is where screenshots go: $CHATLOG_ARTIFACTS, else a folder
// under the system's temporary directory, logged once.
var (
	artifactsOnce sync.Once
	artifactsDir  string
)

func artifacts(tb testing.TB) string {
	artifactsOnce.Do(func() {
		artifactsDir = os.Getenv("CHATLOG_ARTIFACTS")
		if artifactsDir == "" {
			artifactsDir = filepath.Join(os.TempDir(), "chatlog-ui-artifacts")
		}
		if err := os.MkdirAll(artifactsDir, 0o755); err != nil {
			tb.Fatal(err)
		}
	})
	tb.Logf("screenshots in %s", artifactsDir)
	return artifactsDir
}

func newPage(tb testing.TB, s *stack, name string, width, height int64) *page {
	tb.Helper()
	bctx := needBrowser(tb)
	ctx, cancel := chromedp.NewContext(bctx)
	tb.Cleanup(cancel)
	p := &page{tb: tb, ctx: ctx, s: s, shots: artifacts(tb), name: name}
	// Screenshots of an earlier run of this page would mislead.
	old, _ := filepath.Glob(filepath.Join(p.shots, name+"-[0-9][0-9]-*.png"))
	for _, f := range old {
		os.Remove(f)
	}
	// The first run opens the tab, which lives as long as that run's
	// context: so it gets the tab's own, without a deadline, and nothing
	// else may use the tab before it has.
	if err := chromedp.Do(ctx); err != nil {
		tb.Fatalf("open a tab: %v", err)
	}
	// Uncaught exceptions fail the test.
	var mu sync.Mutex
	var exceptions []string
	done := make(chan struct{})
	consoleCtx, stopConsole := context.WithCancel(ctx)
	go func() {
		defer close(done)
		for m, err := range chromedp.Console(consoleCtx) {
			if err != nil {
				return
			}
			if m.IsException() {
				mu.Lock()
				exceptions = append(exceptions, m.String())
				mu.Unlock()
			}
		}
	}()
	tb.Cleanup(func() {
		stopConsole()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, e := range exceptions {
			tb.Errorf("uncaught exception in the page: %s", e)
		}
	})
	p.do(chromedp.EmulateViewport(width, height))
	return p
}

// do runs actions with a deadline.
func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.tb.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression and decodes its value.
func eval[T any](p *page, expr string) T {
	p.tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.tb.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// wait polls a JavaScript condition until it is truthy or within passes.
func (p *page) wait(what, cond string, within time.Duration) {
	p.tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, within+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`!!(`+cond+`)`,
		chromedp.WithPollingTimeout(within), chromedp.WithPollingInterval(10*time.Millisecond))); err != nil {
		p.shot("FAILED-" + strings.ReplaceAll(what, " ", "-"))
		p.tb.Fatalf("waiting %v for %s (%s): %v", within, what, cond, err)
	}
}

// open navigates to a path of the server.
func (p *page) open(path string) {
	p.tb.Helper()
	p.do(chromedp.Navigate(p.s.url + path))
}

// key types keys into the focused element.
func (p *page) key(keys string) {
	p.tb.Helper()
	p.do(chromedp.KeyEvent(keys))
}

// shot saves a PNG of the viewport as <test>-<n>-<label>.png.
func (p *page) shot(label string) {
	p.tb.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	// Let a frame render what the last action changed.
	chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r())))`, chromedp.EvalAwaitPromise))
	b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.tb.Errorf("screenshot %s: %v", label, err)
		return
	}
	p.n++
	file := filepath.Join(p.shots, fmt.Sprintf("%s-%02d-%s.png", p.name, p.n, label))
	if err := os.WriteFile(file, b, 0o644); err != nil {
		p.tb.Errorf("screenshot %s: %v", label, err)
	}
}

// noHorizontalOverflow fails when the page is wider than the viewport.
func (p *page) noHorizontalOverflow(where string) {
	p.tb.Helper()
	got := eval[[]float64](p, `[document.documentElement.scrollWidth, document.documentElement.clientWidth, document.body.scrollWidth]`)
	if got[0] > got[1] || got[2] > got[1] {
		wide := eval[[]string](p, `[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1 && e.offsetParent !== null).slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)`)
		p.tb.Errorf("%s: the page scrolls sideways: scrollWidth %v > clientWidth %v (widest: %v)", where, max(got[0], got[2]), got[1], wide)
	}
}

// click clicks the first element matching a CSS selector, as a mouse
// does (it must be visible).
func (p *page) click(sel string) {
	p.tb.Helper()
	p.do(chromedp.Click(chromedp.CSS(sel)))
}

// set gives a form control a value and fires input and change, as typing
// or picking would.
func (p *page) set(sel, value string) {
	p.tb.Helper()
	b, _ := json.Marshal([]string{sel, value})
	if !eval[bool](p, `(([sel, v]) => { const el = document.querySelector(sel); if (!el) return false; el.value = v;
		el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); return el.value === v; })(`+string(b)+`)`) {
		p.tb.Fatalf("could not set %s to %q", sel, value)
	}
}
