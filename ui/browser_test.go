package ui_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The browser tests drive Debian's headless Chromium through the real
// server over a SQLite file holding testdata/demo.jsonl. Conditions are
// polled with a deadline; nothing sleeps. Each step saves a screenshot
// (see artifacts).

const step = 5 * time.Second // deadline of an ordinary step

// TestBrowser_Replay walks through a debugging session: the list, a
// conversation with tool calls and streamed replies, its timeline, the
// request as of a seq, stream playback, and live updates.
func TestBrowser_Replay(t *testing.T) {
	s := newStack(t, "")
	p := newPage(t, s, "replay", 1280, 800)

	// The list: every conversation, most recently active first, as the
	// API lists them.
	p.open("/ui/")
	list := s.get("/v1/conversations").(map[string]any)["conversations"].([]any)
	var want []string
	for _, c := range list {
		want = append(want, c.(map[string]any)["conversation_id"].(string))
	}
	p.wait("the conversation list", fmt.Sprintf(`document.querySelectorAll('#conv-list .conv').length === %d`, len(want)), step)
	got := eval[[]string](p, `[...document.querySelectorAll('#conv-list .conv')].map(e => e.dataset.cid)`)
	if !slices.Equal(got, want) {
		t.Fatalf("list shows %v, the API lists %v", got, want)
	}
	title := eval[string](p, `document.querySelector('#conv-list .conv[data-cid="demo-weather"] .c-title').textContent`)
	if !strings.Contains(title, "Weekend in Oslo: weather and packing") {
		t.Errorf("demo-weather is listed as %q, want its latest title", title)
	}
	p.shot("list")

	// Filters and search go through the API's own filters.
	p.set(`#filter-user`, "alice")
	p.click(`#filters button[type=submit]`)
	p.wait("the user filter", `[...document.querySelectorAll('#conv-list .conv')].map(e => e.dataset.cid).join() === 'demo-weather'`, step)
	p.set(`#filter-user`, "")
	p.set(`#filter-source`, "mobile")
	p.click(`#filters button[type=submit]`)
	p.wait("the source filter", `[...document.querySelectorAll('#conv-list .conv')].map(e => e.dataset.cid).join() === 'demo-recipe'`, step)
	p.set(`#filter-source`, "")
	p.set(`#search`, "snow showers")
	p.click(`#filters button[type=submit]`)
	p.wait("search results", `document.querySelectorAll('#search-results .hit').length > 0`, step)
	hits := s.get("/v1/search?q=snow+showers").(map[string]any)["results"].([]any)
	gotHits := eval[[]string](p, `[...document.querySelectorAll('#search-results .hit')].map(e => e.dataset.cid + '@' + e.dataset.seq)`)
	var wantHits []string
	for _, h := range hits {
		m := h.(map[string]any)
		wantHits = append(wantHits, fmt.Sprintf("%s@%v", m["conversation_id"], m["seq"]))
	}
	if !slices.Equal(gotHits, wantHits) {
		t.Errorf("search shows %v, the API finds %v", gotHits, wantHits)
	}
	if n := eval[int](p, `document.querySelectorAll('#search-results mark').length`); n == 0 {
		t.Error("search results mark no matching words")
	}
	p.shot("search")

	// Keyboard: back to the list, j moves down it, Enter opens.
	p.set(`#search`, "")
	p.click(`#filters button[type=submit]`)
	p.wait("the whole list again", fmt.Sprintf(`document.querySelectorAll('#conv-list .conv').length === %d`, len(want)), step)
	idx := slices.Index(want, "demo-weather")
	for range idx + 1 {
		p.key("j")
	}
	if f := eval[string](p, `document.activeElement.closest('.conv')?.dataset.cid ?? ''`); f != "demo-weather" {
		t.Fatalf("after %d× j the focus is on %q, want demo-weather", idx+1, f)
	}
	p.key(kb.Enter)

	// The timeline shows every event, chunks folded under their message.
	evs := s.events("demo-weather")
	p.wait("the timeline", fmt.Sprintf(`document.querySelector('#timeline')?.dataset.count === '%d'`, len(evs)), step)
	if loc := eval[string](p, `location.hash`); !strings.HasPrefix(loc, "#/c/demo-weather") {
		t.Fatalf("Enter opened %q, want #/c/demo-weather", loc)
	}
	p.key("g") // from the top
	p.shot("timeline")
	var chunks, finals []float64
	for _, e := range evs {
		seq := e["seq"].(float64)
		if e["type"] == "assistant_delta" {
			chunks = append(chunks, seq)
		}
		if e["type"] == "assistant_message" && e["request_id"] == "assistant:u-weather-2" {
			finals = append(finals, seq)
		}
	}
	if len(chunks) != 7 || len(finals) != 1 {
		t.Fatalf("demo-weather has %d chunks and %d folded messages, the test expects 7 and 1", len(chunks), len(finals))
	}
	var unfolded []float64
	for _, e := range evs {
		if e["type"] != "assistant_delta" {
			unfolded = append(unfolded, e["seq"].(float64))
		}
	}
	shownSeqs := eval[[]float64](p, `[...document.querySelectorAll('#timeline .ev[data-seq]')].filter(e => e.offsetParent !== null).map(e => +e.dataset.seq).sort((a, b) => a - b)`)
	if !slices.Equal(shownSeqs, unfolded) {
		t.Errorf("rows shown while folded are %v, want every event but the chunks: %v", shownSeqs, unfolded)
	}
	p.click(fmt.Sprintf(`#ev-%d .fold-toggle`, int(finals[0])))
	p.wait("the chunks unfolded", `[...document.querySelectorAll('#timeline .ev[data-seq]')].every(e => e.offsetParent !== null)`, step)
	type row struct {
		Seq  float64 `json:"seq"`
		Type string  `json:"type"`
	}
	rows := eval[[]row](p, `[...document.querySelectorAll('#timeline .ev[data-seq]')].map(e => ({seq: +e.dataset.seq, type: e.dataset.type}))`)
	if len(rows) != len(evs) {
		t.Fatalf("the timeline has %d event rows, the log %d", len(rows), len(evs))
	}
	// Chunks sit under their final message, so compare in seq order.
	slices.SortFunc(rows, func(a, b row) int { return int(a.Seq - b.Seq) })
	for i, e := range evs {
		if rows[i].Seq != e["seq"].(float64) || rows[i].Type != e["type"].(string) {
			t.Errorf("row %d shows seq %v %s, the log has seq %v %s", i, rows[i].Seq, rows[i].Type, e["seq"], e["type"])
		}
	}
	// Each family of types has its own colour.
	colours := eval[map[string]string](p, `Object.fromEntries(['user_message','assistant_message','assistant_delta','tool_result','system_prompt_set','conversation_started'].map(t => [t, getComputedStyle(document.querySelector('#timeline .ev[data-type="'+t+'"] .badge')).color]))`)
	seen := map[string]string{}
	for typ, c := range colours {
		if other, ok := seen[c]; ok {
			t.Errorf("%s and %s badges share the colour %s", typ, other, c)
		}
		seen[c] = typ
	}
	p.do(chromedp.ScrollIntoView(fmt.Sprintf(`#ev-%d`, int(finals[0]))))
	p.shot("chunks-unfolded")

	// Keyboard in the timeline: g to the first event, j twice, Enter
	// opens the event's JSON.
	p.key("g")
	p.key("j")
	p.key("j")
	if sel := eval[string](p, `document.querySelector('#timeline .ev[aria-selected="true"]')?.dataset.seq ?? ''`); sel != "3" {
		t.Fatalf("g j j selects seq %q, want 3", sel)
	}
	p.key(kb.Enter)
	p.wait("the event tab", `document.querySelector('#inspector').dataset.tab === 'event'`, step)
	var shown map[string]any
	if err := json.Unmarshal([]byte(eval[string](p, `document.querySelector('#event-json').textContent`)), &shown); err != nil {
		t.Fatalf("the event panel is not JSON: %v", err)
	}
	if !reflect.DeepEqual(shown, evs[2]) {
		t.Errorf("the event panel shows %v, the API has %v", shown, evs[2])
	}
	p.shot("event-json")

	// Time travel: the request as of a seq is the messages endpoint's.
	for _, c := range []struct {
		seq    int
		format string
		window string // max_messages
	}{{6, "openai", ""}, {5, "anthropic", ""}, {15, "openai", "2"}} {
		p.click(fmt.Sprintf(`#ev-%d .seq`, c.seq))
		p.key("r")
		p.set(`#request-max-messages`, c.window)
		p.set(`#request-format`, c.format)
		p.wait(fmt.Sprintf("the request as of seq %d", c.seq),
			fmt.Sprintf(`document.querySelector('#panel-request').dataset.loadedSeq === '%d' && document.querySelector('#request-url').textContent.includes('format=%s')`, c.seq, c.format), step)
		path := fmt.Sprintf("/v1/conversations/demo-weather/messages?format=%s&as_of_seq=%d", c.format, c.seq)
		if c.window != "" {
			path += "&max_messages=" + c.window
		}
		var ui any
		if err := json.Unmarshal([]byte(eval[string](p, `document.querySelector('#request-json').textContent`)), &ui); err != nil {
			t.Fatalf("seq %d: the request panel is not JSON: %v", c.seq, err)
		}
		if api := s.get(path); !reflect.DeepEqual(ui, api) {
			t.Errorf("seq %d %s: the page shows\n%v\nGET %s answers\n%v", c.seq, c.format, ui, path, api)
		}
		if c.seq == 6 {
			// The previous model call was after the tool result (seq 5):
			// the diff adds the assistant's answer.
			added := eval[string](p, `[...document.querySelectorAll('#request-diff .d-add')].map(e => e.textContent).join('')`)
			if !strings.Contains(added, "Saturday brings snow showers") || eval[int](p, `document.querySelectorAll('#request-diff .d-del').length`) != 0 {
				t.Errorf("diff from seq 5 to 6 adds %q, want only the assistant's answer", added)
			}
			future := eval[[]float64](p, `[...document.querySelectorAll('#timeline .ev.future')].map(e => +e.dataset.seq)`)
			if len(future) != len(evs)-6 || future[0] != 7 {
				t.Errorf("rows marked as after seq 6: %v", future)
			}
			p.shot("request-as-of-6")
		}
	}
	p.set(`#request-max-messages`, "")
	p.set(`#request-format`, "openai")

	// Playback: the reply of u-weather-2 streams back chunk by chunk.
	final := evs[int(finals[0])-1]
	p.click(fmt.Sprintf(`#ev-%d .seq`, int(finals[0])))
	p.click(`#tab-playback`)
	p.wait("the player loaded", `document.querySelector('#playback').dataset.state === 'idle' && document.querySelector('#playback-ticks').children.length === 7`, step)
	p.key("n") // one chunk
	p.wait("one chunk stepped", `document.querySelector('#playback').dataset.shown === '1'`, step)
	if txt := eval[string](p, `document.querySelector('#playback-text').textContent`); txt != "Pack " {
		t.Errorf("after one step the player shows %q, want the first chunk %q", txt, "Pack ")
	}
	p.set(`#speed`, "0.25")
	p.click(`#play`)
	p.wait("playing", `Number(document.querySelector('#playback').dataset.shown) >= 2`, step)
	p.click(`#play`) // pause
	p.wait("paused", `document.querySelector('#playback').dataset.state === 'paused'`, step)
	paused := eval[string](p, `document.querySelector('#playback').dataset.shown`)
	if n, _ := strconv.Atoi(paused); n < 2 || n >= 7 {
		t.Errorf("paused with %s chunks shown, want some but not all", paused)
	}
	p.shot("playback-paused")
	p.set(`#speed`, "100")
	p.click(`#play`)
	p.wait("played to the end", `document.querySelector('#playback').dataset.state === 'done'`, step)
	if txt := eval[string](p, `document.querySelector('#playback-text').textContent`); txt != final["content"] {
		t.Errorf("played back %q, the final message is %q", txt, final["content"])
	}
	if n := eval[int](p, `document.querySelectorAll('#playback-text .chunk').length`); n != 7 {
		t.Errorf("played %d chunks, want 7", n)
	}
	if info := eval[string](p, `document.querySelector('#playback-info').textContent`); !strings.Contains(info, "matches the final message") {
		t.Errorf("player info %q does not say the chunks match the final message", info)
	}
	p.shot("playback-done")

	// Usage per turn: one bar per user turn, with its tokens.
	p.do(chromedp.ScrollIntoView(`#conv-head`))
	if n := eval[int](p, `document.querySelectorAll('#usage-chart .bar').length`); n != 3 {
		t.Errorf("the usage chart has %d bars, want 3 (one per user turn)", n)
	}
	tip := eval[string](p, `document.querySelector('#usage-chart .bar[data-turn="1"] title').textContent`)
	if !strings.Contains(tip, "input: 280") || !strings.Contains(tip, "output: 55") {
		t.Errorf("turn 1's bar says %q, want input 280 (112+168) and output 55 (24+31)", tip)
	}

	// Live: events appended through the API appear within a second.
	p.key("G")
	next := len(evs) + 1
	s.post("/v1/conversations/demo-weather/events", map[string]any{"type": "user_message", "content": "And on Monday?", "request_id": "u-weather-4"}, http.StatusCreated)
	p.wait("the appended user message", fmt.Sprintf(`document.querySelector('#ev-%d')?.dataset.type === 'user_message'`, next), time.Second)
	// A reply streamed through the turn API shows as an open stream,
	// then folds under its message.
	turn := s.post("/v1/conversations/demo-weather/turns", map[string]any{"request_id": "u-weather-5", "content": "Is Tuesday dry?"}, http.StatusCreated)
	attempt := turn["attempt"]
	for i, c := range []string{"Tuesday ", "looks ", "dry."} {
		s.post("/v1/conversations/demo-weather/deltas", map[string]any{"user_request_id": "u-weather-5", "index": i, "content": c, "attempt": attempt}, http.StatusCreated)
	}
	p.wait("the open stream", `document.querySelector('#timeline .ev.stream[data-stream="u-weather-5"] .content')?.textContent === 'Tuesday looks dry.'`, time.Second)
	p.shot("live-stream-open")
	s.post("/v1/conversations/demo-weather/finish", map[string]any{"user_request_id": "u-weather-5", "attempt": attempt, "stop_reason": "stop", "model": "gpt-4o-mini"}, http.StatusCreated)
	p.wait("the stream folded", `!document.querySelector('#timeline .ev.stream') && [...document.querySelectorAll('#timeline .ev[data-type="assistant_message"]')].some(e => e.textContent.includes('Tuesday looks dry.') && e.querySelector('.fold-toggle'))`, time.Second)

	// A dropped connection resumes after the last seq seen.
	s.ts.CloseClientConnections()
	s.ts.Client().CloseIdleConnections() // the test's own, closed too
	s.post("/v1/conversations/demo-weather/events", map[string]any{"type": "user_message", "content": "Thanks again", "request_id": "u-weather-6"}, http.StatusCreated)
	after := s.events("demo-weather")
	last := int(after[len(after)-1]["seq"].(float64))
	p.wait("the event appended after the drop", fmt.Sprintf(`document.querySelector('#timeline').dataset.lastSeq === '%d'`, last), 10*time.Second)
	p.wait("live again", `document.querySelector('#live').dataset.state === 'live'`, 10*time.Second)
	p.key("x") // every fold open, to count every row
	p.wait("every row built", fmt.Sprintf(`document.querySelectorAll('#timeline .ev[data-seq]').length >= %d`, len(after)), step)
	dups := eval[[]string](p, `(() => { const seen = new Set(), d = []; for (const e of document.querySelectorAll('#timeline .ev[data-seq]')) { if (seen.has(e.dataset.seq)) d.push(e.dataset.seq); seen.add(e.dataset.seq); } return d; })()`)
	if len(dups) > 0 {
		t.Errorf("rows shown twice after resuming: %v", dups)
	}
	if n := eval[int](p, `document.querySelectorAll('#timeline .ev[data-seq]').length`); n != len(after) {
		t.Errorf("after resuming the timeline has %d rows, the log %d events", n, len(after))
	}
	p.wait("the header's counts", fmt.Sprintf(`document.querySelector('#conv-head [data-fact="events"] .v')?.textContent === '%d'`, int(s.get("/v1/conversations/demo-weather").(map[string]any)["events"].(float64))), 5*time.Second)
	p.shot("live-resumed")
}
