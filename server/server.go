package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chatlog/chatlog/ledger"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/ui"
)

// Defaults of Options.
const (
	DefaultMaxBody           = 1 << 20 // 1 MiB, as INTERFACE.md fixes it
	DefaultMaxPage           = 1000
	DefaultKeepAlive         = 15 * time.Second
	DefaultStreamBuffer      = 256
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultLease             = 30 * time.Second
)

// Options configures a Server. A nil *Options means all defaults; each
// zero field takes its default.
type Options struct {
	// Token, when set, is the bearer token every request but /healthz
	// and the replay debugger's assets (/ui/) must carry
	// (Authorization: Bearer <Token>); others get 401.
	// Default: no authentication.
	Token string
	// MaxBody caps a request body in bytes; a larger one gets 413.
	// Default DefaultMaxBody (1 MiB).
	MaxBody int64
	// MaxPage caps the limit of a page of events. Default 1000.
	MaxPage int
	// KeepAlive is how long an event stream may stay silent before a
	// keep-alive comment is sent. Default 15s.
	KeepAlive time.Duration
	// StreamBuffer is how many events an event stream may fall behind the
	// conversation's shared feed before it is cut off from it and reads
	// the store by itself until it has caught up. Default 256.
	StreamBuffer int
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// http.Server timeouts Serve uses (defaults 10s, 30s, 30s, 2m). Event
	// streams lift the read deadline and extend the write deadline by
	// WriteTimeout before each write, so they stay open as long as the
	// client reads.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ShutdownTimeout bounds how long Serve waits for requests in flight
	// once its context is done. Default 10s.
	ShutdownTimeout time.Duration
	// Owner names this server in the leases of the turns it begins, for
	// operators. Default "chatlog-serve:<hostname>:<pid>".
	Owner string
	// StoreStats, when set, is read at every scrape of /metrics: each
	// entry becomes the metric chatlog_store_<name> (for *sqlite.Repo,
	// its group-commit totals).
	StoreStats func() map[string]float64
	// Logger receives one line per request (method, path, status,
	// duration, bytes) and operational messages. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock for Retry-After. Default time.Now.
	Now func() time.Time
	// Ledger adjusts the ledger endpoints (how long a post keeps retrying
	// against other writers). Default: ledger.New's defaults.
	Ledger *ledger.Options
}

func (o *Options) withDefaults() Options {
	var v Options
	if o != nil {
		v = *o
	}
	setDefault(&v.MaxBody, DefaultMaxBody)
	setDefault(&v.MaxPage, DefaultMaxPage)
	setDefault(&v.KeepAlive, DefaultKeepAlive)
	setDefault(&v.StreamBuffer, DefaultStreamBuffer)
	setDefault(&v.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&v.ReadTimeout, DefaultReadTimeout)
	setDefault(&v.WriteTimeout, DefaultWriteTimeout)
	setDefault(&v.IdleTimeout, DefaultIdleTimeout)
	setDefault(&v.ShutdownTimeout, DefaultShutdownTimeout)
	if v.Owner == "" {
		host, _ := os.Hostname()
		v.Owner = "chatlog-serve:" + host + ":" + strconv.Itoa(os.Getpid())
	}
	if v.Logger == nil {
		v.Logger = slog.Default()
	}
	if v.Now == nil {
		v.Now = time.Now
	}
	return v
}

func setDefault[T int | int64 | time.Duration](p *T, def T) {
	if *p <= 0 {
		*p = def
	}
}

// Server is the HTTP API over one repo.Repo. It is an http.Handler; Serve
// and Run also run the HTTP server with its timeouts and a graceful
// shutdown. It does not own the store: close it after Serve returns.
type Server struct {
	repo    repo.Repo
	ledger  *ledger.Ledger
	opts    Options
	mux     *http.ServeMux
	metrics *metrics
	log     *slog.Logger
	token   [sha256.Size]byte // sha256 of Options.Token, when set

	// closing is done when shutdown begins: event streams end.
	closing context.Context
	close   context.CancelFunc
	// hub shares one store follower per conversation among its streams.
	hub *hub
	// inFlight counts handlers running, so shutdown can wait for them.
	inFlight sync.WaitGroup
}

var _ http.Handler = (*Server)(nil)

// New returns a Server answering the HTTP API from r.
func New(r repo.Repo, opts *Options) *Server {
	o := opts.withDefaults()
	s := &Server{repo: r, ledger: ledger.New(r, o.Ledger), opts: o, mux: http.NewServeMux(), log: o.Logger}
	if o.Token != "" {
		s.token = sha256.Sum256([]byte(o.Token))
	}
	s.closing, s.close = context.WithCancel(context.Background())
	s.hub = newHub(r, o.Logger, s.closing, o.StreamBuffer)
	s.metrics = newMetrics(o.StoreStats)
	s.routes()
	return s
}

// routes registers every endpoint. Each handler returns an error that
// handle turns into the response (errorFor).
func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	s.mux.Handle("GET /metrics", s.metrics.handler())
	s.handle("POST /v1/conversations/{cid}/events", s.appendEvent)
	s.handle("GET /v1/conversations/{cid}/events", s.getEvents)
	s.handle("POST /v1/conversations/{cid}/turns", s.beginTurn)
	s.handle("POST /v1/conversations/{cid}/turns/{uid}/heartbeat", s.heartbeat)
	s.handle("POST /v1/conversations/{cid}/deltas", s.appendDelta)
	s.handle("POST /v1/conversations/{cid}/finish", s.finish)
	s.handle("GET /v1/conversations/{cid}/messages", s.messages)
	s.handle("GET /v1/conversations/{cid}", s.showConversation)
	s.handle("GET /v1/conversations", s.listConversations)
	s.handle("GET /v1/search", s.search)
	s.handle("POST /v1/conversations/{cid}/fork", s.fork)
	s.handle("DELETE /v1/conversations/{cid}", s.deleteConversation)
	s.handle("PUT /v1/conversations/{cid}/title", s.setTitle)
	s.handle("PUT /v1/conversations/{cid}/system", s.setSystem)
	s.handle("POST /v1/conversations/{cid}/start", s.start)
	s.handle("POST /v1/conversations/{cid}/end", s.end)
	s.handle("POST /v1/conversations/{cid}/reopen", s.reopen)
	s.handle("POST /v1/conversations/{cid}/clear", s.clear)
	s.handle("POST /v1/conversations/{cid}/pop", s.pop)
	s.handle("POST /v1/conversations/{cid}/usage", s.usage)
	s.handle("GET /v1/users/{uid}/usage", s.userUsage)
	s.handle("GET /v1/resolve", s.resolve)
	s.handle("GET /v1/users/{uid}/current", s.current)
	s.handle("PUT /v1/users/{uid}/current", s.setCurrent)
	s.mux.Handle("GET "+ui.Prefix, ui.Handler())
	s.mux.Handle("GET /ui", http.RedirectHandler(ui.Prefix, http.StatusMovedPermanently))
	s.handle("POST /v1/users/{uid}/ledger", s.postLedger)
	s.handle("GET /v1/users/{uid}/balance", s.balance)
}

// handlerFunc is an endpoint: it writes a success response itself and
// returns any failure for handle to write.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle registers h for pattern; an error h returns becomes the error
// response (writeError), unless the response had already begun.
func (s *Server) handle(pattern string, h handlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		if rec, ok := w.(*recorder); ok && rec.code != 0 {
			// The response had begun (the client left while it was
			// written): there is nothing left to tell it.
			s.log.LogAttrs(r.Context(), slog.LevelDebug, "response cut short",
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
			return
		}
		s.writeError(w, r, err)
	})
}

// ServeHTTP authenticates the request, routes it, and logs and counts it:
// one log line per request with method, path (never the query, which may
// hold search words), status, duration_ms, bytes and remote address.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.inFlight.Add(1)
	defer s.inFlight.Done()
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	s.serve(rec, r)
	d := time.Since(start)
	route := r.Pattern
	if route == "" {
		route = "unmatched"
	}
	s.metrics.request(route, rec.status(), d)
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", rec.status()),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.Int64("bytes", rec.bytes),
		slog.String("remote", r.RemoteAddr),
	)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if s.opts.Token != "" && !public(r.URL.Path) && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="chatlog"`)
		s.writeError(w, r, &apiError{status: http.StatusUnauthorized, Code: codeUnauthorized,
			Message: "missing or wrong bearer token (Authorization: Bearer <token>)"})
		return
	}
	if _, pattern := s.mux.Handler(r); pattern == "" {
		s.noRoute(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// public reports whether path is served without the bearer token: the
// health check, and the replay debugger's static assets, which hold no
// data (the page sends the token with its API requests).
func public(path string) bool {
	return path == "/healthz" || path == "/ui" || strings.HasPrefix(path, ui.Prefix)
}

// authorized reports whether r carries the bearer token. Both sides are
// hashed first, so the comparison takes the same time whatever the
// lengths.
func (s *Server) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], s.token[:]) == 1
}

// noRoute answers a request no pattern matches: 405 with Allow when the
// path exists for other methods, else 404, as JSON errors.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	probe := &statusProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", probe.header.Get("Allow"))
		s.writeError(w, r, &apiError{status: http.StatusMethodNotAllowed, Code: codeMethodNotAllowed,
			Message: fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, probe.header.Get("Allow"))})
		return
	}
	s.writeError(w, r, &apiError{status: http.StatusNotFound, Code: codeNotFound,
		Message: fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path)})
}

// statusProbe records what the mux's own 404/405 handler would answer.
type statusProbe struct {
	header http.Header
	code   int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(code int)        { p.code = code }

// recorder notes the status and size of a response for logs and metrics.
// Unwrap lets http.ResponseController reach the connection (Flush,
// deadlines) through it.
type recorder struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// FlushError flushes the response, reporting a broken connection;
// http.ResponseController.Flush calls it.
func (r *recorder) FlushError() error {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return http.NewResponseController(r.ResponseWriter).Flush()
}

// Flush makes the recorder an http.Flusher, for callers that look for one.
func (r *recorder) Flush() { r.FlushError() }

// Unwrap returns the underlying ResponseWriter.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// CloseStreams ends every event stream and stops accepting new ones, for
// a Server mounted in an http.Server of the caller's (register it with
// http.Server.RegisterOnShutdown); Serve and Run do this themselves. It
// waits for the store followers the streams shared to stop.
func (s *Server) CloseStreams() {
	s.close()
	s.hub.wait()
}

// Run listens on addr (host:port; port 0 picks a free one) and serves
// until ctx is done, then shuts down as Serve does.
func (s *Server) Run(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve answers requests on ln until ctx is done or serving fails, then
// shuts down gracefully: it stops accepting, ends event streams, lets
// requests in flight finish for up to Options.ShutdownTimeout (then cuts
// their connections), and returns once every handler has returned. A
// Server serves once: its event streams stay closed afterwards. Serve
// returns nil after a shutdown its context asked for.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(s.close)
	s.log.Info("listening", slog.String("addr", ln.Addr().String()),
		slog.String("replay_debugger", "http://"+ln.Addr().String()+ui.Prefix))

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-served:
		// Serving failed on its own (the listener broke).
	case <-ctx.Done():
	}

	s.log.Info("shutting down", slog.String("timeout", s.opts.ShutdownTimeout.String()))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		s.log.Warn("requests still running at the shutdown deadline; closing their connections", slog.Any("error", serr))
		srv.Close()
	}
	s.close()
	// Handlers whose connection was cut see their context cancelled;
	// wait for them (bounded) so the caller may close the store.
	waited := make(chan struct{})
	go func() { s.inFlight.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(s.opts.ShutdownTimeout):
		s.log.Warn("handlers still running after the shutdown deadline")
	}
	s.hub.wait() // the feeds end with s.closing
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
