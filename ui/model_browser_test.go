package ui_test

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestBrowser_Model runs the page's pure functions (model.js, render.js,
// api.js) in the browser on hand-made inputs: how chunks fold, which
// request a seq is compared with, usage per turn, the line diff, and the
// event-stream parser on a body cut at awkward places.
func TestBrowser_Model(t *testing.T) {
	s := newStack(t, "")
	p := newPage(t, s, "model", 800, 600)
	p.open("/ui/")
	p.wait("the page", `document.body.dataset.view === 'list'`, step)

	run := func(name, script string, want any) {
		t.Helper()
		raw := eval[json.RawMessage](p, script)
		got := reflect.New(reflect.TypeOf(want)).Interface()
		if err := json.Unmarshal(raw, got); err != nil {
			t.Fatalf("%s: %v in %s", name, err, raw)
		}
		if g := reflect.ValueOf(got).Elem().Interface(); !reflect.DeepEqual(g, want) {
			t.Errorf("%s:\n got %v\nwant %v", name, g, want)
		}
	}
	// fold: chunks of an answered request go under its message (even
	// chunks logged after it), those of an unanswered one form an open
	// stream where its first chunk is, and nothing is lost or doubled.
	run("fold", `import('./model.js').then(m => m.fold([
		{seq: 1, type: 'user_message', request_id: 'u1'},
		{seq: 2, type: 'assistant_delta', extra: {user_request_id: 'u1', index: 0, attempt: 1}},
		{seq: 3, type: 'assistant_delta', extra: {user_request_id: 'u1', index: 0, attempt: 2}},
		{seq: 4, type: 'assistant_message', request_id: 'assistant:u1', extra: {attempt: 2}},
		{seq: 5, type: 'assistant_delta', extra: {user_request_id: 'u1', index: 1, attempt: 2}},
		{seq: 6, type: 'user_message', request_id: 'u2'},
		{seq: 7, type: 'assistant_delta', extra: {user_request_id: 'u2', index: 0}},
		{seq: 8, type: 'assistant_message', request_id: 'assistant:u9'},
	]).map(i => [i.kind, i.ev ? i.ev.seq : i.key, i.chunks.map(c => c.seq), m.replayChunks(i).map(c => c.seq)]))`,
		[][]any{
			{"event", 1.0, []any{}, []any{}},
			{"event", 4.0, []any{2.0, 3.0, 5.0}, []any{3.0, 5.0}},
			{"event", 6.0, []any{}, []any{}},
			{"stream", "u2", []any{7.0}, []any{7.0}},
			{"event", 8.0, []any{}, []any{}},
		})

	// previousCall: the request as of seq is compared with the one the
	// model was sent at the call point before it.
	run("previousCall", `import('./model.js').then(m => [1, 3, 4, 5, 6, 9].map(s => m.previousCall([3, 5, 7], s)))`,
		[]any{nil, nil, 3.0, 3.0, 5.0, 7.0})

	// turns: usage summed per user turn; setup without usage is no turn.
	run("turns", `import('./model.js').then(m => m.turns([
		{seq: 1, type: 'conversation_started'},
		{seq: 2, type: 'user_message', content: 'hi'},
		{seq: 3, type: 'assistant_message', usage: {input: 10, output: 2, cost: 0.5}},
		{seq: 4, type: 'assistant_message', usage: {input: 12, output: 3, cache_read: 4}},
		{seq: 5, type: 'user_message', content: [{type: 'text', text: 'again'}]},
		{seq: 6, type: 'usage_recorded', usage: {output: 7, reasoning: 1}},
	]).map(t => [t.n, t.seq, t.label, t.usage.input, t.usage.output, t.usage.cache_read, t.usage.reasoning, t.usage.cost]))`,
		[][]any{{1.0, 2.0, "hi", 22.0, 5.0, 4.0, 0.0, 0.5}, {2.0, 5.0, "again", 0.0, 7.0, 0.0, 1.0, 0.0}})

	// diffLines: a line changed in the middle, one added at the end.
	run("diffLines", `import('./render.js').then(r => r.diffLines('a\nb\nc\nd', 'a\nB\nc\nd\ne').map(d => d.op + d.text))`,
		[]string{" a", "-b", "+B", " c", " d", "+e"})

	// sseMessages: ids and data across chunk boundaries, CRLF split
	// between reads, multi-line data, comments skipped.
	run("sseMessages", `import('./api.js').then(async a => {
		const parts = [': hello\n\nid: 1\nda', 'ta: {"seq":1}\r', '\n\r\nid: 2\ndata: x\ndata: y\n\n', ': keep-alive\n\n'];
		const body = new ReadableStream({ start(c) { for (const p of parts) c.enqueue(new TextEncoder().encode(p)); c.close(); } });
		const out = [];
		for await (const m of a.sseMessages(body)) out.push([m.id, m.data]);
		return out;
	})`, [][]string{{"1", `{"seq":1}`}, {"2", "x\ny"}})
}
