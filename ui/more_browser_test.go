package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestBrowser_Token: with --token the page loads without it, asks for it
// once when the API answers 401, and then reads the log.
func TestBrowser_Token(t *testing.T) {
	s := newStack(t, "s3cret")
	if code, _ := (&stack{tb: t, ts: s.ts, url: s.url}).do("GET", "/v1/conversations", nil); code != http.StatusUnauthorized {
		t.Fatalf("the API without the token answers %d, want 401", code)
	}
	p := newPage(t, s, "token", 1280, 800)
	p.open("/ui/")
	p.wait("the token dialog", `document.querySelector('#token-dialog').open`, step)
	p.shot("token-dialog")
	p.set(`#token-input`, "wrong")
	p.click(`#token-form button[type=submit]`)
	p.wait("the dialog again, saying the token was refused", `document.querySelector('#token-dialog').open && document.querySelector('#token-reason').textContent.includes('refused')`, step)
	p.set(`#token-input`, "s3cret")
	p.click(`#token-form button[type=submit]`)
	p.wait("the list read with the token", `document.querySelectorAll('#conv-list .conv').length === 3`, step)
	// The event stream carries the token too: an append shows live.
	p.open("/ui/#/c/demo-recipe")
	p.wait("the timeline", `document.querySelector('#live').dataset.state === 'live' && document.querySelector('#timeline').dataset.lastSeq === '9'`, step)
	if open := eval[bool](p, `document.querySelector('#token-dialog').open`); open {
		t.Error("the token was asked for again after a reload of the same tab")
	}
	s.post("/v1/conversations/demo-recipe/events", map[string]any{"type": "user_message", "content": "One more question", "request_id": "u-recipe-4"}, http.StatusCreated)
	p.wait("the appended event", `document.querySelector('#ev-10')?.dataset.type === 'user_message'`, time.Second)
	p.shot("with-token")
}

// TestBrowser_Viewports: a desktop and a phone-sized window show the
// list, a timeline and the inspector without scrolling sideways, and the
// keyboard works on both.
func TestBrowser_Viewports(t *testing.T) {
	s := newStack(t, "")
	for _, vp := range []struct {
		name string
		w, h int64
		dark bool // the phone also checks the dark scheme
	}{{"desktop", 1280, 800, false}, {"phone", 390, 844, true}} {
		t.Run(vp.name, func(t *testing.T) {
			p := newPage(t, s, "viewport-"+vp.name, vp.w, vp.h)
			if vp.dark {
				p.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
					_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
						Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
					return err
				}))
			}
			p.open("/ui/")
			p.wait("the list", `document.querySelectorAll('#conv-list .conv').length === 3`, step)
			if w := eval[float64](p, `document.documentElement.clientWidth`); w != float64(vp.w) {
				t.Fatalf("viewport is %v wide, want %d", w, vp.w)
			}
			if dark := eval[bool](p, `matchMedia('(prefers-color-scheme: dark)').matches`); dark != vp.dark {
				t.Errorf("dark scheme %v, want %v", dark, vp.dark)
			}
			p.noHorizontalOverflow("list")
			p.shot("list")

			p.open("/ui/#/c/demo-code")
			p.wait("the timeline", `document.querySelector('#timeline')?.dataset.count === '11'`, step)
			p.key("x") // every stream unfolded
			p.wait("unfolded", `[...document.querySelectorAll('#timeline .ev[data-seq]')].every(e => e.offsetParent !== null)`, step)
			p.noHorizontalOverflow("timeline")
			p.key("g")
			p.shot("timeline")

			// k at the top stays there; j walks down the rows as shown:
			// the folded reply (seq 9), then its chunks under it.
			p.key("k")
			var walked []string
			for range 4 {
				p.key("j")
				walked = append(walked, eval[string](p, `document.activeElement.dataset.seq ?? ''`))
			}
			if fmt.Sprint(walked) != "[2 9 3 4]" {
				t.Errorf("j walks through seqs %v, want [2 9 3 4]", walked)
			}
			p.key(kb.Enter)
			p.wait("the event opened", `document.querySelector('#inspector').dataset.open === 'true' && document.querySelector('#inspector').dataset.tab === 'event'`, step)
			var ev map[string]any
			if err := json.Unmarshal([]byte(eval[string](p, `document.querySelector('#event-json').textContent`)), &ev); err != nil || ev["seq"] != 4.0 || ev["type"] != "assistant_delta" {
				t.Errorf("Enter on seq 4 (a chunk) shows %v (%v)", ev["seq"], err)
			}
			// On a phone the inspector slides up over the timeline.
			p.wait("the event's JSON on screen", `(() => { const r = document.querySelector('#event-json').getBoundingClientRect(); return r.width > 0 && r.top >= 0 && r.top < innerHeight && r.left >= 0 && r.right <= innerWidth; })()`, step)
			p.noHorizontalOverflow("event")
			p.shot("event")
			p.key("r")
			p.wait("the request", `document.querySelector('#panel-request').dataset.loadedSeq === '4'`, step)
			p.noHorizontalOverflow("request")
			p.shot("request")
			p.key("p")
			p.wait("playback", `document.querySelector('#playback').dataset.state !== 'idle'`, step)
			p.set(`#speed`, "100")
			p.wait("played", `document.querySelector('#playback').dataset.state === 'done'`, step)
			p.noHorizontalOverflow("playback")
			p.shot("playback")
			if vp.name == "phone" {
				p.key(kb.Escape) // the sheet closes first
				p.wait("the sheet closed", `document.querySelector('#inspector').dataset.open === 'false'`, step)
			}
			p.key(kb.Escape)
			p.wait("back to the list", `document.body.dataset.view === 'list'`, step)
		})
	}
}

// TestBrowser_Fork forks from an event through the fork endpoint and
// opens the branch.
func TestBrowser_Fork(t *testing.T) {
	s := newStack(t, "")
	p := newPage(t, s, "fork", 1280, 800)
	p.open("/ui/#/c/demo-weather/6")
	p.wait("the timeline", `document.querySelector('#timeline')?.dataset.count === '18'`, step)
	p.wait("seq 6 selected", `document.querySelector('#timeline .ev[aria-selected="true"]')?.dataset.seq === '6'`, step)
	p.click(`#fork`)
	p.wait("the branch opened", `!location.hash.startsWith('#/c/demo-weather') && document.querySelector('#timeline')?.dataset.count > 0`, step)
	cid := eval[string](p, `decodeURIComponent(location.hash.split('/')[2])`)
	branch := s.events(cid)
	orig := s.events("demo-weather")
	p.wait("the branch's timeline", fmt.Sprintf(`document.querySelector('#timeline').dataset.count === '%d'`, len(branch)), step)
	// The branch holds the history up to seq 6, then says where it
	// came from.
	if len(branch) != 7 {
		t.Fatalf("the branch %s has %d events, want the 6 up to seq 6 and its conversation_forked", cid, len(branch))
	}
	for i, e := range branch[:6] {
		if e["type"] != orig[i]["type"] || fmt.Sprint(e["content"]) != fmt.Sprint(orig[i]["content"]) {
			t.Errorf("branch event %d is %v %v, the original's %v %v", i+1, e["type"], e["content"], orig[i]["type"], orig[i]["content"])
		}
	}
	if x, _ := branch[6]["extra"].(map[string]any); branch[6]["type"] != "conversation_forked" || x["parent_id"] != "demo-weather" || x["parent_seq"] != 6.0 {
		t.Errorf("the branch's last event is %v", branch[6])
	}
	if link := eval[string](p, `document.querySelector('#timeline .ev[data-type="conversation_forked"] a')?.getAttribute('href') ?? ''`); link != "#/c/demo-weather/6" {
		t.Errorf("the conversation_forked row links to %q, want #/c/demo-weather/6", link)
	}
	sum := s.get("/v1/conversations/" + cid).(map[string]any)
	if sum["parent_id"] != "demo-weather" || sum["parent_seq"] != 6.0 {
		t.Errorf("the branch's read model names parent %v @ %v, want demo-weather @ 6", sum["parent_id"], sum["parent_seq"])
	}
	p.wait("the parent link", `document.querySelector('#conv-head .chip.fork')?.getAttribute('href') === '#/c/demo-weather/6'`, step)
	p.shot("forked")
}
