package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatlog/chatlog/server"
)

// frame is one server-sent message: an event (id and data) or a comment.
type frame struct {
	id, data, comment string
}

// stream is an open event stream read by a goroutine.
type stream struct {
	tb     testing.TB
	resp   *http.Response
	frames chan frame
	cancel context.CancelFunc
	err    error // why reading stopped; read after frames is closed
}

// openStream GETs path with Accept: text/event-stream; headers come as
// name, value pairs. The stream is closed at cleanup.
func openStream(tb testing.TB, c *http.Client, base, path string, headers ...string) *stream {
	tb.Helper()
	return openStreamCap(tb, c, base, path, 1024, headers...)
}

// openStreamCap is openStream reading ahead at most capacity messages:
// with 0, the client reads from the connection only as the test takes
// frames.
func openStreamCap(tb testing.TB, c *http.Client, base, path string, capacity int, headers ...string) *stream {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", base+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		cancel()
		tb.Fatalf("open stream %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		tb.Fatalf("open stream %s: status %d, Content-Type %q: %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	s := &stream{tb: tb, resp: resp, frames: make(chan frame, capacity), cancel: cancel}
	go s.read()
	tb.Cleanup(s.close)
	return s
}

func (s *stream) read() {
	defer close(s.frames)
	br := bufio.NewReader(s.resp.Body)
	var f frame
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			s.err = err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if f != (frame{}) {
				s.frames <- f
			}
			f = frame{}
		case strings.HasPrefix(line, ":"):
			f.comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "id: "):
			f.id = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			f.data += line[len("data: "):]
		default:
			s.err = fmt.Errorf("unexpected line %q", line)
			return
		}
	}
}

func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next event (skipping comments) and its seq.
func (s *stream) next() (int64, map[string]any) {
	s.tb.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				s.tb.Fatalf("stream ended: %v", s.err)
			}
			if f.comment != "" && f.id == "" {
				continue
			}
			var ev map[string]any
			if err := json.Unmarshal([]byte(f.data), &ev); err != nil {
				s.tb.Fatalf("data is not an event: %q: %v", f.data, err)
			}
			seq, err := strconv.ParseInt(f.id, 10, 64)
			if err != nil || float64(seq) != ev["seq"] {
				s.tb.Fatalf("id %q does not match the event's seq: %s", f.id, f.data)
			}
			return seq, ev
		case <-timeout:
			s.tb.Fatal("no event within 10s")
		}
	}
}

// wantSeqs reads events and checks their seqs.
func (s *stream) wantSeqs(seqs ...int64) {
	s.tb.Helper()
	for _, want := range seqs {
		if got, _ := s.next(); got != want {
			s.tb.Fatalf("event seq %d, want %d", got, want)
		}
	}
}

// wantQuiet checks that no event arrives for a while.
func (s *stream) wantQuiet(d time.Duration) {
	s.tb.Helper()
	timeout := time.After(d)
	for {
		select {
		case f, ok := <-s.frames:
			if ok && f.id != "" {
				s.tb.Fatalf("unexpected event id %s", f.id)
			}
			if !ok {
				return
			}
		case <-timeout:
			return
		}
	}
}

// wantEnd waits for the server to end the stream.
func (s *stream) wantEnd() {
	s.tb.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				return
			}
			if f.id != "" {
				s.tb.Fatalf("unexpected event id %s", f.id)
			}
		case <-timeout:
			s.tb.Fatal("the stream did not end within 10s")
		}
	}
}

func appendN(tb testing.TB, c *http.Client, base, cid string, from, to int) {
	tb.Helper()
	for i := from; i <= to; i++ {
		r := doRequest(tb, c, base, "POST", "/v1/conversations/"+cid+"/events",
			fmt.Sprintf(`{"type":"user_message","content":"message %d","request_id":"m%d"}`, i, i))
		if r.status != http.StatusCreated {
			tb.Fatalf("append %d: %d %s", i, r.status, r.body)
		}
	}
}

func metricValue(tb testing.TB, c *http.Client, base, name string) string {
	tb.Helper()
	r := doRequest(tb, c, base, "GET", "/metrics", "")
	for line := range strings.SplitSeq(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

func TestStream_Live(t *testing.T) {
	s := newTestServer(t, nil)
	appendN(t, s.client, s.url, "c", 1, 2)
	st := openStream(t, s.client, s.url, "/v1/conversations/c/events")
	st.wantSeqs(1, 2)
	if v := metricValue(t, s.client, s.url, "chatlog_http_sse_streams_open"); v != "1" {
		t.Errorf("open streams %q, want 1", v)
	}
	appendN(t, s.client, s.url, "c", 3, 3)
	appendN(t, s.client, s.url, "other", 1, 1) // not this stream's
	_, ev := st.next()
	if ev["content"] != "message 3" || ev["conversation_id"] != "c" {
		t.Fatalf("live event: %v", ev)
	}
	st.wantQuiet(50 * time.Millisecond)
	st.close()
	waitFor(t, "the stream gauge to drop", func() bool {
		return metricValue(t, s.client, s.url, "chatlog_http_sse_streams_open") == "0"
	})
}

// TestServer_CloseStreams: a Server mounted in another http.Server ends
// its streams when told to, and takes no new ones.
func TestServer_CloseStreams(t *testing.T) {
	s := newTestServer(t, nil)
	appendN(t, s.client, s.url, "c", 1, 1)
	st := openStream(t, s.client, s.url, "/v1/conversations/c/events")
	st.wantSeqs(1)
	s.srv.CloseStreams()
	st.wantEnd()
	r := s.do("GET", "/v1/conversations/c/events", "", "Accept", "text/event-stream")
	want(t, r, http.StatusServiceUnavailable, "unavailable")
	// Plain requests are still answered.
	want(t, s.do("GET", "/v1/conversations/c/events", ""), http.StatusOK, "")
}

func TestStream_Resume(t *testing.T) {
	s := newTestServer(t, nil)
	appendN(t, s.client, s.url, "c", 1, 5)

	st := openStream(t, s.client, s.url, "/v1/conversations/c/events?after_seq=2")
	st.wantSeqs(3, 4, 5)
	appendN(t, s.client, s.url, "c", 6, 7)
	st.wantSeqs(6) // then the client drops, having seen 6
	st.close()
	appendN(t, s.client, s.url, "c", 8, 8)

	t.Run("LastEventID", func(t *testing.T) {
		// Last-Event-ID wins over after_seq.
		st := openStream(t, s.client, s.url, "/v1/conversations/c/events?after_seq=1", "Last-Event-ID", "6")
		st.wantSeqs(7, 8)
		st.wantQuiet(30 * time.Millisecond)
		appendN(t, s.client, s.url, "c", 9, 9)
		st.wantSeqs(9)
		st.close()
	})
	t.Run("AfterSeq", func(t *testing.T) {
		st := openStream(t, s.client, s.url, "/v1/conversations/c/events?after_seq=8")
		st.wantSeqs(9)
		st.wantQuiet(30 * time.Millisecond)
		st.close()
	})
	t.Run("BadLastEventID", func(t *testing.T) {
		r := s.do("GET", "/v1/conversations/c/events", "", "Accept", "text/event-stream", "Last-Event-ID", "x")
		want(t, r, http.StatusBadRequest, "invalid_request")
		if r.errorField(t) != "Last-Event-ID" {
			t.Fatalf("field %q", r.errorField(t))
		}
	})
}

// TestStream_Restart resumes a stream after the server was shut down and
// started again on the same database file.
func TestStream_Restart(t *testing.T) {
	path := t.TempDir() + "/x.db"
	client := &http.Client{}

	repoA := openRepo(t, path)
	urlA, stopA := serveOn(t, server.New(repoA, quiet(nil)))
	appendN(t, client, urlA, "c", 1, 3)
	st := openStream(t, client, urlA, "/v1/conversations/c/events")
	st.wantSeqs(1, 2, 3)

	start := time.Now()
	if err := stopA(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown with an open stream took %s", d)
	}
	st.wantEnd() // shutdown ends open streams
	if err := repoA.Close(); err != nil {
		t.Fatal(err)
	}

	repoB := openRepo(t, path)
	urlB, _ := serveOn(t, server.New(repoB, quiet(nil)))
	if r := doRequest(t, client, urlB, "POST", "/v1/conversations/c/events", `{"type":"user_message","content":"message 3","request_id":"m3"}`); r.status != http.StatusOK {
		t.Fatalf("retry after the restart: %d %s", r.status, r.body)
	}
	appendN(t, client, urlB, "c", 4, 5)
	st = openStream(t, client, urlB, "/v1/conversations/c/events", "Last-Event-ID", "3")
	st.wantSeqs(4, 5)
	st.wantQuiet(30 * time.Millisecond)
	appendN(t, client, urlB, "c", 6, 6)
	st.wantSeqs(6)
}

func TestStream_KeepAlive(t *testing.T) {
	s := newTestServer(t, &server.Options{KeepAlive: 20 * time.Millisecond})
	st := openStream(t, s.client, s.url, "/v1/conversations/quiet/events")
	timeout := time.After(5 * time.Second)
	for n := 0; n < 3; {
		select {
		case f, ok := <-st.frames:
			if !ok {
				t.Fatalf("stream ended: %v", st.err)
			}
			if f.comment == "keep-alive" {
				n++
			}
		case <-timeout:
			t.Fatal("no keep-alive comments within 5s")
		}
	}
}

// TestStream_OutlivesTimeouts: the server's read and write timeouts do
// not cut an event stream that the client keeps reading.
func TestStream_OutlivesTimeouts(t *testing.T) {
	r := openRepo(t, t.TempDir()+"/x.db")
	url, _ := serveOn(t, server.New(r, quiet(&server.Options{
		ReadTimeout:  100 * time.Millisecond,
		WriteTimeout: 100 * time.Millisecond,
		KeepAlive:    40 * time.Millisecond,
	})))
	client := &http.Client{}
	st := openStream(t, client, url, "/v1/conversations/c/events")
	time.Sleep(400 * time.Millisecond)
	appendN(t, client, url, "c", 1, 1)
	st.wantSeqs(1)
	time.Sleep(300 * time.Millisecond)
	appendN(t, client, url, "c", 2, 2)
	st.wantSeqs(2)
}

// TestStream_SlowClient: a client that stops reading holds back neither
// the writers nor the other streams, and is cut off by the write timeout.
func TestStream_SlowClient(t *testing.T) {
	r := openRepo(t, t.TempDir()+"/x.db")
	url, _ := serveOn(t, server.New(r, quiet(&server.Options{WriteTimeout: 300 * time.Millisecond})))
	client := &http.Client{}

	// The stuck client: asks for the stream and never reads.
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /v1/conversations/c/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	waitFor(t, "the stuck stream to open", func() bool {
		return metricValue(t, client, url, "chatlog_http_sse_streams_open") == "1"
	})
	fast := openStream(t, client, url, "/v1/conversations/c/events")

	const n = 200
	big := strings.Repeat("x", 64<<10)
	var (
		wg       sync.WaitGroup
		received []string
	)
	wg.Go(func() { // only the reading: the checks are the test's
		for f := range fast.frames {
			if f.id != "" {
				received = append(received, f.id)
			}
			if len(received) == n {
				return
			}
		}
	})
	start := time.Now()
	for i := 1; i <= n; i++ {
		r := doRequest(t, client, url, "POST", "/v1/conversations/c/events", fmt.Sprintf(`{"type":"user_message","content":"%d %s"}`, i, big))
		if r.status != http.StatusCreated {
			t.Fatalf("append %d: %d", i, r.status)
		}
	}
	wg.Wait()
	for i, id := range received {
		if id != strconv.Itoa(i+1) {
			t.Fatalf("event %d of the reading stream has id %s", i+1, id)
		}
	}
	if len(received) != n {
		t.Fatalf("the reading stream got %d events, want %d (%v)", len(received), n, fast.err)
	}
	t.Logf("%d appends of 64 KiB delivered to the reading stream in %s", n, time.Since(start))
	waitFor(t, "the stuck stream to be cut off", func() bool {
		return metricValue(t, client, url, "chatlog_http_sse_streams_open") == "1"
	})
}

// collect reads n events from st without failing the test from its
// goroutine; it returns their ids and why it stopped early, if it did.
func collect(st *stream, n int, pause time.Duration) ([]int64, error) {
	var ids []int64
	timeout := time.After(30 * time.Second)
	for len(ids) < n {
		select {
		case f, ok := <-st.frames:
			if !ok {
				return ids, fmt.Errorf("stream ended: %v", st.err)
			}
			if f.id == "" {
				continue
			}
			id, err := strconv.ParseInt(f.id, 10, 64)
			if err != nil {
				return ids, err
			}
			ids = append(ids, id)
			time.Sleep(pause)
		case <-timeout:
			return ids, fmt.Errorf("timed out after %d events", len(ids))
		}
	}
	return ids, nil
}

// wantRun checks that ids are from, from+1, ... without gaps or repeats.
func wantRun(tb testing.TB, name string, ids []int64, from int64) {
	tb.Helper()
	for i, id := range ids {
		if id != from+int64(i) {
			tb.Fatalf("%s: event %d has id %d, want %d (ids %v)", name, i, id, from+int64(i), ids)
		}
	}
}

// TestStream_Lagging: a stream that falls behind the shared feed (a
// one-event buffer, a client that reads nothing while 15 MiB of events
// are appended) is cut off, catches up from the store and still gets
// every event once, in order, while a fast stream on the same
// conversation gets them as they come.
func TestStream_Lagging(t *testing.T) {
	s := newTestServer(t, &server.Options{StreamBuffer: 1})
	slow := openStreamCap(t, s.client, s.url, "/v1/conversations/c/events", 0)
	fast := openStream(t, s.client, s.url, "/v1/conversations/c/events")
	const n = 60
	type result struct {
		ids []int64
		err error
	}
	slowDone, fastDone := make(chan result, 1), make(chan result, 1)
	appended := make(chan struct{})
	go func() {
		<-appended // the slow client reads nothing until then
		ids, err := collect(slow, n, 0)
		slowDone <- result{ids, err}
	}()
	go func() { ids, err := collect(fast, n, 0); fastDone <- result{ids, err} }()
	big := strings.Repeat("z", 256<<10)
	for i := 1; i <= n; i++ {
		want(t, s.do("POST", "/v1/conversations/c/events", fmt.Sprintf(`{"type":"user_message","content":"%d %s"}`, i, big)), http.StatusCreated, "")
	}
	close(appended)
	for name, ch := range map[string]chan result{"slow": slowDone, "fast": fastDone} {
		r := <-ch
		if r.err != nil {
			t.Fatalf("%s stream: %v (got %v)", name, r.err, r.ids)
		}
		wantRun(t, name, r.ids, 1)
	}
}

// TestStream_JoinWhileAppending opens streams at different moments and
// positions while events are appended: each gets exactly the events after
// its position, in order.
func TestStream_JoinWhileAppending(t *testing.T) {
	s := newTestServer(t, nil)
	const n, streams = 150, 12
	appended := make(chan int, n)
	go func() {
		defer close(appended)
		for i := 1; i <= n; i++ {
			r := doRequest(t, s.client, s.url, "POST", "/v1/conversations/j/events", fmt.Sprintf(`{"type":"user_message","content":"%d"}`, i))
			if r.status != http.StatusCreated {
				return // the test sees the missing events
			}
			appended <- i
			time.Sleep(time.Millisecond)
		}
	}()
	type opened struct {
		st    *stream
		after int64
	}
	var all []opened
	k := 0
	for i := range appended {
		if k < streams && i%(n/streams) == 0 {
			after := int64(i - k%3) // a little behind the head, or at it
			all = append(all, opened{openStream(t, s.client, s.url, fmt.Sprintf("/v1/conversations/j/events?after_seq=%d", after)), after})
			k++
		}
	}
	for j, o := range all {
		ids, err := collect(o.st, int(n-o.after), 0)
		if err != nil {
			t.Fatalf("stream %d after %d: %v (got %v)", j, o.after, err, ids)
		}
		wantRun(t, fmt.Sprintf("stream %d", j), ids, o.after+1)
		o.st.wantQuiet(10 * time.Millisecond)
	}
}
