package ui_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// BenchmarkBrowser_OpenTimeline opens a conversation of 10,000 events
// (user turns, replies streamed in 8 chunks each) in the page: every
// page of events read through the API, folded and drawn. One op is one
// open, from navigation until the timeline shows every event.
//
//	go test -run=^$ -bench=OpenTimeline -benchtime=3x ./ui/
func BenchmarkBrowser_OpenTimeline(b *testing.B) {
	s := newStack(b, "")
	const turns = 1000 // 10 events each: user, 8 chunks, the final message
	ctx := context.Background()
	var batch []events.Event
	for i := range turns {
		u := fmt.Sprintf("u-%d", i)
		batch = append(batch, events.Event{ConversationID: "big", Type: events.TypeUserMessage, RequestID: u,
			Content: events.NewText(fmt.Sprintf("question %d: what about the weather on day %d?", i, i))})
		reply := ""
		for k := range 8 {
			chunk := fmt.Sprintf("chunk %d of reply %d. ", k, i)
			reply += chunk
			batch = append(batch, events.Event{ConversationID: "big", Type: events.TypeAssistantDelta, Role: events.RoleAssistant,
				RequestID: fmt.Sprintf("delta:%s:%d", u, k), Content: events.NewText(chunk),
				Extra: map[string]any{"user_request_id": u, "index": k}})
		}
		batch = append(batch, events.Event{ConversationID: "big", Type: events.TypeAssistantMessage, RequestID: "assistant:" + u,
			Content: events.NewText(reply), Model: "gpt-4o-mini", Usage: &events.Usage{Input: int64(100 + i), Output: 40}})
		if len(batch) >= 1000 {
			if _, err := s.repo.AppendBatch(ctx, batch, repo.AppendOptions{}); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	p := newPage(b, s, "bench", 1280, 800)
	b.ResetTimer()
	for range b.N {
		p.open("/ui/")
		p.wait("the list", `document.body.dataset.view === 'list'`, 30*time.Second)
		p.do(chromedp.Evaluate[chromedp.Void](`window.t0 = performance.now(); location.hash = '#/c/big'`))
		p.wait("10,000 events", `document.querySelector('#timeline')?.dataset.count === '10000'`, 60*time.Second)
		b.Logf("in the page: hash change to a drawn timeline %.0f ms", eval[float64](p, `performance.now() - window.t0`))
	}
	b.StopTimer()
	p.shot("big")
	fetchMS := eval[float64](p, `import('./api.js').then(async a => { const t = performance.now(); await a.allEvents('big'); return performance.now() - t; })`)
	foldMS := eval[float64](p, `Promise.all([import('./api.js'), import('./model.js')]).then(async ([a, m]) => { const evs = await a.allEvents('big'); const t = performance.now(); m.fold(evs); return performance.now() - t; })`)
	b.Logf("in the page: reading 10,000 events through the API %.0f ms, folding them %.1f ms", fetchMS, foldMS)
}
