package ui_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestHandler_Assets(t *testing.T) {
	s := newStack(t, "")
	c := s.ts.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	get := func(path string, header ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", s.url+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	if r := get("/ui"); r.StatusCode != http.StatusMovedPermanently || r.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q, want 301 to /ui/", r.StatusCode, r.Header.Get("Location"))
	}
	page := get("/ui/")
	if page.StatusCode != http.StatusOK || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /ui/: %d %s", page.StatusCode, page.Header.Get("Content-Type"))
	}
	csp := page.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	etag := page.Header.Get("ETag")
	if etag == "" || page.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("GET /ui/: ETag %q, Cache-Control %q; want an ETag and no-cache", etag, page.Header.Get("Cache-Control"))
	}
	if r := get("/ui/", "If-None-Match", etag); r.StatusCode != http.StatusNotModified {
		t.Errorf("GET /ui/ with its ETag: %d, want 304", r.StatusCode)
	}
	for file, ct := range map[string]string{"app.js": "javascript", "style.css": "text/css", "index.html": "text/html"} {
		if r := get("/ui/" + file); r.StatusCode != http.StatusOK || !strings.Contains(r.Header.Get("Content-Type"), ct) {
			t.Errorf("GET /ui/%s: %d %q, want 200 %s", file, r.StatusCode, r.Header.Get("Content-Type"), ct)
		}
	}
	if r := get("/ui/nothing.js"); r.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ui/nothing.js: %d, want 404", r.StatusCode)
	}
}

// TestHandler_Token: the assets need no token, the API still does, and a
// path under /ui/ cannot reach the API around it.
func TestHandler_Token(t *testing.T) {
	s := newStack(t, "s3cret")
	c := s.ts.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, tc := range []struct {
		path string
		want int // 0: anything but 200, and no data
	}{
		{"/ui/", http.StatusOK},
		{"/ui/app.js", http.StatusOK},
		{"/ui", http.StatusMovedPermanently},
		{"/v1/conversations", http.StatusUnauthorized},
		{"/v1/conversations/demo-code/events", http.StatusUnauthorized},
		{"/ui/../v1/conversations", 0},
		{"/ui/%2e%2e/v1/conversations", 0},
		{"/ui/..%2fv1/conversations", 0},
	} {
		req, _ := http.NewRequest("GET", s.url+tc.path, nil)
		req.URL.Opaque = tc.path // sent as written, dots and all
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case tc.want != 0 && resp.StatusCode != tc.want:
			t.Errorf("GET %s without a token: %d, want %d", tc.path, resp.StatusCode, tc.want)
		case tc.want == 0 && (resp.StatusCode == http.StatusOK || strings.Contains(string(body), "demo-")):
			t.Errorf("GET %s without a token: %d %s; want no data", tc.path, resp.StatusCode, body)
		}
	}
}

// TestAssets_SelfContained: nothing the page loads comes from another
// origin, and every module and file it names is embedded.
func TestAssets_SelfContained(t *testing.T) {
	dir := filepath.Join("static")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for _, e := range entries {
		present[e.Name()] = true
	}
	remote := regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9-]+(?:\.[a-z0-9-]+)+`)
	imports := regexp.MustCompile(`(?m)(?:^(?:import\b[^'\n]*|\}\s*)from\s+|\bimport\(\s*)'([^']+)'`)
	refs := regexp.MustCompile(`(?:src|href)="([^"#][^"]*)"`)
	namespaces := map[string]bool{"http://www.w3.org": true} // an XML namespace name, never fetched
	for name := range present {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		for _, m := range remote.FindAllString(src, -1) {
			if !namespaces[m] {
				t.Errorf("%s names another origin: %s", name, m)
			}
		}
		for _, m := range imports.FindAllStringSubmatch(src, -1) {
			if !strings.HasPrefix(m[1], "./") || !present[strings.TrimPrefix(m[1], "./")] {
				t.Errorf("%s imports %q, which is not an embedded file", name, m[1])
			}
		}
		for _, m := range refs.FindAllStringSubmatch(src, -1) {
			if !strings.HasPrefix(m[1], "data:") && !present[m[1]] {
				t.Errorf("%s refers to %q, which is not an embedded file", name, m[1])
			}
		}
	}
	if !present["index.html"] || !present["app.js"] {
		t.Fatalf("static/ lacks index.html or app.js: %v", present)
	}
}
