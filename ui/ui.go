// Package ui is the replay debugger that chatlog serve offers at /ui/: a
// browser view of the conversation list, each conversation's events in seq
// order, what the model was sent as of any seq, streamed replies played
// back at their recorded pace, live updates and forks.
//
// The page is plain HTML, CSS and JavaScript modules embedded in the
// binary: no build step, nothing fetched from elsewhere at run time. It
// talks only to the public HTTP API (package server), so whatever it shows
// a script can read too. The assets hold no data and are served without
// the API's bearer token; the page asks for the token when the API
// answers 401 and sends it with every request.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is the path the handler is mounted at.
const Prefix = "/ui/"

// contentSecurityPolicy keeps the page to its own origin: scripts, styles
// and API calls come from the server that served it, so a conversation
// holding markup can never load or run anything.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	etag        string
	contentType string
}

// Handler serves the debugger's assets under Prefix: Prefix itself is the
// page (index.html); any other path under it that is not an asset is 404.
// Responses carry an ETag (a hash of the content) and Cache-Control:
// no-cache, so a browser revalidates and never runs assets of an older
// binary.
func Handler() http.Handler {
	assets := load()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, Prefix)
		if name == "" {
			name = "index.html"
		}
		a, ok := assets[name]
		if !ok {
			http.Error(w, "no such file in the replay debugger: "+name, http.StatusNotFound)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	})
}

// load reads every embedded asset once.
func load() map[string]asset {
	root, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the folder
	}
	assets := map[string]asset{}
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		assets[p] = asset{body: b, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, contentType: ct}
		return nil
	})
	if err != nil {
		panic(err) // embedded files always read
	}
	return assets
}
