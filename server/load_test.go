package server_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatlog/chatlog/repo/sqlite"
	"github.com/chatlog/chatlog/server"
)

// The load tests run only with CHATLOG_LOAD=1 (they take seconds and want
// a quiet machine):
//
//	CHATLOG_LOAD=1 go test -run Load -v ./server/
//
// CHATLOG_LOAD_DURATION (default 10s) is how long TestLoad_Appends runs;
// CHATLOG_LOAD_FOLLOWERS (default 500) and CHATLOG_LOAD_EVENTS (default
// 200) size TestLoad_Fanout; CHATLOG_LOAD_SYNC=NORMAL runs the store at
// synchronous=NORMAL instead of the default FULL.

func loadEnabled(t *testing.T) {
	if os.Getenv("CHATLOG_LOAD") != "1" {
		t.Skip("set CHATLOG_LOAD=1 to run the load tests")
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// loadServer serves a fresh database file on loopback, logging each
// request as chatlog serve does (JSON), to nowhere.
func loadServer(t *testing.T, opts *server.Options) (string, *sqlite.Repo) {
	r, err := sqlite.Open(context.Background(), t.TempDir()+"/load.db", &sqlite.Options{
		Sync:   sqlite.Sync(os.Getenv("CHATLOG_LOAD_SYNC")), // "" is the default, FULL
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if opts == nil {
		opts = &server.Options{}
	}
	opts.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	url, _ := serveOn(t, server.New(r, opts))
	return url, r
}

// percentile returns the p-th percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// TestLoad_Appends runs 32 keep-alive clients posting events with unique
// keys (one conversation each) and reports requests/s and latencies.
func TestLoad_Appends(t *testing.T) {
	loadEnabled(t)
	const clients = 32
	d, err := time.ParseDuration(os.Getenv("CHATLOG_LOAD_DURATION"))
	if err != nil {
		d = 10 * time.Second
	}
	url, store := loadServer(t, nil)
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	lat := make([][]time.Duration, clients)
	var failures sync.Map
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			endpoint := fmt.Sprintf("%s/v1/conversations/load-%d/events", url, c)
			for i := 0; ctx.Err() == nil; i++ {
				body := fmt.Sprintf(`{"type":"user_message","content":"load message %d of client %d","request_id":"c%d-%d"}`, i, c, c, i)
				t0 := time.Now()
				resp, err := client.Post(endpoint, "application/json", strings.NewReader(body))
				if err != nil {
					failures.Store(c, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					failures.Store(c, fmt.Errorf("status %d", resp.StatusCode))
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	failures.Range(func(k, v any) bool {
		t.Errorf("client %v: %v", k, v)
		return true
	})
	all := slices.Sorted(slices.Values(slices.Concat(lat...)))
	st := store.Stats()
	t.Logf("store: %d commits, %.1f events a commit (max %d)", st.Commits, st.MeanBatch, st.MaxBatch)
	t.Logf("%d clients, %s: %d appends, %.0f requests/s; latency p50 %s, p99 %s, max %s",
		clients, elapsed.Round(time.Millisecond), len(all), float64(len(all))/elapsed.Seconds(),
		percentile(all, 50).Round(time.Microsecond), percentile(all, 99).Round(time.Microsecond), all[len(all)-1].Round(time.Microsecond))
}

// TestLoad_Fanout opens 500 event streams on one conversation, appends
// events at a steady rate, and reports the time from the start of each
// append to its receipt by every follower.
func TestLoad_Fanout(t *testing.T) {
	loadEnabled(t)
	followers := envInt("CHATLOG_LOAD_FOLLOWERS", 500)
	n := envInt("CHATLOG_LOAD_EVENTS", 200)
	interval := 20 * time.Millisecond
	url, _ := loadServer(t, nil)
	tr := &http.Transport{MaxIdleConnsPerHost: followers + 8}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	lat := make([][]time.Duration, followers)
	var ready, done sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for f := range followers {
		ready.Add(1)
		done.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/conversations/fan/events", nil)
			req.Header.Set("Accept", "text/event-stream")
			resp, err := client.Do(req)
			if err != nil {
				ready.Done()
				t.Errorf("follower %d: %v", f, err)
				return
			}
			defer resp.Body.Close()
			br := bufio.NewReaderSize(resp.Body, 4096)
			if _, err := br.ReadString('\n'); err != nil { // the opening comment
				ready.Done()
				t.Errorf("follower %d: %v", f, err)
				return
			}
			ready.Done()
			marker := []byte(`"content":"sent `)
			for len(lat[f]) < n {
				line, err := br.ReadSlice('\n')
				if err != nil {
					t.Errorf("follower %d after %d events: %v", f, len(lat[f]), err)
					return
				}
				i := bytes.Index(line, marker)
				if i < 0 {
					continue
				}
				rest := line[i+len(marker):]
				sent, err := strconv.ParseInt(string(rest[:bytes.IndexByte(rest, '"')]), 10, 64)
				if err != nil {
					t.Errorf("follower %d: %v", f, err)
					return
				}
				lat[f] = append(lat[f], time.Since(time.Unix(0, sent)))
			}
		})
	}
	ready.Wait()
	if t.Failed() {
		return
	}

	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := range n {
		<-tick.C
		body := fmt.Sprintf(`{"type":"user_message","content":"sent %d","request_id":"e%d"}`, time.Now().UnixNano(), i)
		resp, err := client.Post(url+"/v1/conversations/fan/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("append %d: status %d", i, resp.StatusCode)
		}
	}
	waited := make(chan struct{})
	go func() { done.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(60 * time.Second):
		t.Fatal("followers did not receive every event within 60s")
	}
	all := slices.Sorted(slices.Values(slices.Concat(lat...)))
	if len(all) != followers*n {
		t.Fatalf("%d receipts, want %d", len(all), followers*n)
	}
	t.Logf("%d followers, %d events at one per %s: append-to-receipt p50 %s, p99 %s, max %s",
		followers, n, interval, percentile(all, 50).Round(time.Microsecond),
		percentile(all, 99).Round(time.Microsecond), all[len(all)-1].Round(time.Microsecond))
}
