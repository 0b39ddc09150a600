package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestServer_ConcurrentRetries has 16 clients send 250 appends each with
// keys that overlap across clients, some through the body and some through
// the Idempotency-Key header: every answer is 2xx, each key is written
// once (201 exactly once, 200 Idempotent-Replayed for the rest, all with
// the same seq), and the log holds each key once with seqs 1..N.
func TestServer_ConcurrentRetries(t *testing.T) {
	const (
		clients  = 16
		requests = 250
		keys     = 600
	)
	s := newTestServer(t, nil)
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	type answer struct {
		key     int
		status  int
		seq     int64
		flagged bool
	}
	answers := make([][]answer, clients)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 42)) // fixed seeds: a failure replays
			for range requests {
				k := rng.IntN(keys)
				body := fmt.Sprintf(`{"type":"user_message","content":"message %d"`, k)
				req, _ := http.NewRequest("POST", s.url+"/v1/conversations/storm/events", nil)
				if rng.IntN(2) == 0 {
					body += fmt.Sprintf(`,"request_id":"key-%d"}`, k)
				} else {
					body += "}"
					req.Header.Set("Idempotency-Key", fmt.Sprintf("key-%d", k))
				}
				req.Body = io.NopCloser(strings.NewReader(body))
				req.ContentLength = int64(len(body))
				resp, err := client.Do(req)
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", c, err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					errs <- fmt.Errorf("client %d: read: %w", c, err)
					return
				}
				var ev struct {
					Seq       int64  `json:"seq"`
					RequestID string `json:"request_id"`
				}
				if resp.StatusCode/100 == 2 {
					if err := json.Unmarshal(b, &ev); err != nil || ev.RequestID != fmt.Sprintf("key-%d", k) {
						errs <- fmt.Errorf("client %d key %d: answer %s (%v)", c, k, b, err)
						return
					}
				}
				answers[c] = append(answers[c], answer{key: k, status: resp.StatusCode, seq: ev.Seq,
					flagged: resp.Header.Get("Idempotent-Replayed") == "true"})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	created := map[int]int{}
	seqOf := map[int]int64{}
	for _, as := range answers {
		for _, a := range as {
			switch {
			case a.status == http.StatusCreated && !a.flagged:
				created[a.key]++
			case a.status == http.StatusOK && a.flagged:
			default:
				t.Fatalf("key %d: status %d, Idempotent-Replayed %t", a.key, a.status, a.flagged)
			}
			if seq, ok := seqOf[a.key]; ok && seq != a.seq {
				t.Fatalf("key %d answered with seq %d and %d", a.key, seq, a.seq)
			}
			seqOf[a.key] = a.seq
		}
	}
	for k := range seqOf {
		if created[k] != 1 {
			t.Fatalf("key %d was created %d times", k, created[k])
		}
	}

	// The log: each key once, seqs without gaps.
	seen := map[string]bool{}
	var after, n int64
	for {
		r := doRequest(t, client, s.url, "GET", fmt.Sprintf("/v1/conversations/storm/events?after_seq=%d&limit=1000", after), "")
		var page struct {
			Events []struct {
				Seq       int64  `json:"seq"`
				RequestID string `json:"request_id"`
			} `json:"events"`
			Next int64 `json:"next_after_seq"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 0 {
			break
		}
		for _, e := range page.Events {
			n++
			if e.Seq != n || seen[e.RequestID] {
				t.Fatalf("event seq %d key %s: seq gap or key twice", e.Seq, e.RequestID)
			}
			seen[e.RequestID] = true
		}
		after = page.Next
	}
	if int(n) != len(seqOf) {
		t.Fatalf("the log holds %d events for %d keys", n, len(seqOf))
	}
	t.Logf("%d requests, %d distinct keys", clients*requests, len(seqOf))
}
