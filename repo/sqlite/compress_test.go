package sqlite_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ncruces/go-sqlite3"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// plainFiller returns n bytes of chat text with nothing JSON escapes, so
// that n more bytes of it make an encoded body exactly n bytes longer.
func plainFiller(g *synthChat, n int) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || strings.ContainsRune(`"\<>&`, r) {
			return ' '
		}
		return r
	}, g.text(n))
	return s + strings.Repeat(".", n-len(s))
}

// payloadKinds build an event whose measured column (content for text,
// parts_text for parts, body for tool calls and raw) is exactly n bytes.
var payloadKinds = []struct {
	name string
	make func(g *synthChat, n int) events.Event
}{
	{"Text", func(g *synthChat, n int) events.Event {
		return events.Event{Type: events.TypeUserMessage, Content: events.NewText(plainFiller(g, n))}
	}},
	{"Parts", func(g *synthChat, n int) events.Event {
		img := events.Part{Type: "image_url", Fields: map[string]json.RawMessage{"image_url": json.RawMessage(`{"url":"https://example.com/x.png"}`)}}
		return events.Event{Type: events.TypeUserMessage, Content: events.NewParts(events.TextPart(plainFiller(g, n)), img)}
	}},
	{"ToolCalls", func(g *synthChat, n int) events.Event {
		e := func(k int) events.Event {
			return events.Event{Type: events.TypeAssistantMessage, Model: "m",
				ToolCalls: []events.ToolCall{{ID: "call_1", Name: "search", Arguments: `{"q":"` + plainFiller(g, k) + `"}`}}}
		}
		return sizedBody(e, n)
	}},
	{"Raw", func(g *synthChat, n int) events.Event {
		e := func(k int) events.Event {
			return events.Event{Type: events.TypeAssistantMessage, Content: events.NewText("ok"),
				Raw: json.RawMessage(`{"id":"msg_1","text":"` + plainFiller(g, k) + `"}`)}
		}
		return sizedBody(e, n)
	}},
}

// sizedBody returns make(k) for the k that makes the encoded body n bytes.
func sizedBody(make func(k int) events.Event, n int) events.Event {
	base := len(mustEncode(make(0)).Body)
	return make(n - base)
}

func mustEncode(e events.Event) events.Stored {
	s, err := e.EncodeStored()
	if err != nil {
		panic(err)
	}
	return s
}

// measured is the length of the column a payload kind sizes.
func measured(s events.Stored, kind string) int {
	switch kind {
	case "Text":
		return len(s.Text)
	case "Parts":
		return len(s.PartsText)
	}
	return len(s.Body)
}

func eventJSON(t testing.TB, e events.Event) string {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// storedForm reads how a row keeps its payload columns: whether content,
// body and parts_text are compressed, and the bytes each takes.
type storedForm struct {
	contentPacked, bodyPacked, partsPacked bool
	bytes                                  int64
}

func readStoredForm(t testing.TB, raw *sqlite3.Conn, pos int64) storedForm {
	t.Helper()
	s, _, err := raw.Prepare(`SELECT typeof(content) = 'blob', coalesce(substr(body, 1, 1) = x'00', 0), typeof(parts_text) = 'blob',
		coalesce(octet_length(content), 0) + coalesce(octet_length(body), 0) + coalesce(octet_length(parts_text), 0)
		FROM events WHERE pos = ?`)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.BindInt64(1, pos)
	if !s.Step() {
		t.Fatalf("no row at pos %d: %v", pos, s.Err())
	}
	return storedForm{s.ColumnBool(0), s.ColumnBool(1), s.ColumnBool(2), s.ColumnInt64(3)}
}

// TestCompress_RoundTrip: every payload kind just below, at and above the
// threshold reads back as it was appended, through every read path, and
// is stored compressed exactly when a column is above the threshold.
func TestCompress_RoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	r := openFile(t, path)
	raw := openRaw(t, path)
	defer raw.Close()
	g := newSynthChat(t, 7)
	sizes := []int{sqlite.CompressThreshold - 1, sqlite.CompressThreshold, sqlite.CompressThreshold + 1, 4096, 64 << 10}
	for _, kind := range payloadKinds {
		t.Run(kind.name, func(t *testing.T) {
			for i, n := range sizes {
				e := kind.make(g, n)
				e.ConversationID, e.RequestID = "c-"+kind.name, fmt.Sprintf("k%d", i)
				plain := mustEncode(e)
				if got := measured(plain, kind.name); got != n {
					t.Fatalf("size %d: the event's %s column is %d bytes", n, kind.name, got)
				}
				res, err := r.Append(ctx, e, repo.AppendOptions{})
				if err != nil {
					t.Fatalf("size %d: %v", n, err)
				}
				want := eventJSON(t, res.Event)

				form := readStoredForm(t, raw, res.Event.Pos)
				if wantPacked := len(plain.Text) > sqlite.CompressThreshold; form.contentPacked != wantPacked {
					t.Errorf("size %d: content (%d bytes) compressed %v, want %v", n, len(plain.Text), form.contentPacked, wantPacked)
				}
				if wantPacked := len(plain.Body) > sqlite.CompressThreshold; form.bodyPacked != wantPacked {
					t.Errorf("size %d: body (%d bytes) compressed %v, want %v", n, len(plain.Body), form.bodyPacked, wantPacked)
				}
				if wantPacked := len(plain.PartsText) > sqlite.CompressThreshold; form.partsPacked != wantPacked {
					t.Errorf("size %d: parts_text (%d bytes) compressed %v, want %v", n, len(plain.PartsText), form.partsPacked, wantPacked)
				}
				if plainBytes := int64(len(plain.Text) + len(plain.Body) + len(plain.PartsText)); n > 1000 && form.bytes*10 > plainBytes*7 {
					t.Errorf("size %d: stored in %d bytes, plain %d: less than 30%% saved on chat text", n, form.bytes, plainBytes)
				}

				got, err := r.ByRequestID(ctx, e.ConversationID, e.RequestID)
				if err != nil {
					t.Fatal(err)
				}
				if s := eventJSON(t, got); s != want {
					t.Errorf("size %d: ByRequestID read\n%.300s\nwant\n%.300s", n, s, want)
				}
				last, err := r.Last(ctx, e.ConversationID, 1)
				if err != nil || len(last) != 1 || eventJSON(t, last[0]) != want {
					t.Errorf("size %d: Last read %d events (%v), not the one appended", n, len(last), err)
				}
				for got, err := range r.Events(ctx, e.ConversationID, repo.Range{AfterSeq: res.Event.Seq - 1, UntilSeq: res.Event.Seq}) {
					if err != nil || eventJSON(t, got) != want {
						t.Errorf("size %d: Events read another event (%v)", n, err)
					}
				}
				for got, err := range r.All(ctx, res.Event.Pos-1) {
					if err != nil || eventJSON(t, got) != want {
						t.Errorf("size %d: All read another event (%v)", n, err)
					}
					break
				}
			}
		})
	}
	if p, err := r.VerifyReadModels(ctx, nil); err != nil || len(p) != 0 {
		t.Errorf("verify: %v %q", err, p)
	}
}

// TestCompress_Search: words in compressed messages, plain or multi-part,
// are found, shown in snippets and as neighbours, and stay found after a
// rebuild; verify (which checks the index against the text) passes.
func TestCompress_Search(t *testing.T) {
	ctx := context.Background()
	r := openFile(t, filepath.Join(t.TempDir(), "s.db"))
	g := newSynthChat(t, 3)
	long := g.text(3000)
	mustAppend(t, r, events.Event{ConversationID: "c", Type: events.TypeUserMessage,
		Content: events.NewText(long[:1500] + " axolotl " + long[1500:])})
	mustAppend(t, r, events.Event{ConversationID: "c", Type: events.TypeAssistantMessage,
		Content: events.NewParts(events.TextPart(g.text(2000)), events.TextPart("the capybara"))})
	mustAppend(t, r, events.Event{ConversationID: "c", Type: events.TypeUserMessage, Content: events.NewText("short pangolin")})
	check := func(when string) {
		t.Helper()
		for _, c := range []struct {
			word string
			seq  int64
		}{{"axolotl", 1}, {"capybara", 2}, {"pangolin", 3}} {
			hits, err := r.Search(ctx, repo.SearchQuery{Query: c.word})
			if err != nil {
				t.Fatalf("%s: search %s: %v", when, c.word, err)
			}
			if len(hits) != 1 || hits[0].Seq != c.seq || !strings.Contains(hits[0].Snippet, "["+c.word+"]") {
				t.Errorf("%s: search %s: %+v, want seq %d with the word marked", when, c.word, hits, c.seq)
			}
		}
		hits, _ := r.Search(ctx, repo.SearchQuery{Query: "pangolin"})
		if len(hits) == 1 && (hits[0].Before == nil || hits[0].Before.Seq != 2 || hits[0].Before.Text == "") {
			t.Errorf("%s: the compressed neighbour: %+v", when, hits[0].Before)
		}
		if p, err := r.VerifyReadModels(ctx, nil); err != nil || len(p) != 0 {
			t.Errorf("%s: verify: %v %q", when, err, p)
		}
	}
	check("live")
	if err := r.RebuildReadModels(ctx, nil); err != nil {
		t.Fatal(err)
	}
	check("after rebuild")
	if err := r.RebuildReadModels(ctx, nil, repo.ReadModelSearch); err != nil {
		t.Fatal(err)
	}
	check("after rebuilding search alone")
}

// TestCompress_Idempotency: retries of compressed payloads are duplicates
// and a changed payload under the same key is a conflict, on every append
// path: the fingerprint is of the event, not of its stored bytes.
func TestCompress_Idempotency(t *testing.T) {
	ctx := context.Background()
	r := openFile(t, filepath.Join(t.TempDir(), "d.db"))
	g := newSynthChat(t, 5)
	for _, kind := range payloadKinds {
		t.Run(kind.name, func(t *testing.T) {
			orig := kind.make(g, 3000)
			orig.ConversationID, orig.RequestID = "c-"+kind.name, "k1"
			first, err := r.Append(ctx, orig, repo.AppendOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// The same payload with its last byte changed: compressed,
			// the two differ only near the end of the stream.
			changed := kind.make(g, 3000)
			changed.ConversationID, changed.RequestID = orig.ConversationID, orig.RequestID
			changed.Content, changed.ToolCalls, changed.Raw = orig.Content, orig.ToolCalls, orig.Raw
			switch kind.name {
			case "Text":
				changed.Content = events.NewText(orig.Content.Text[:2999] + "!")
			case "Parts":
				p := orig.Content.Parts[0]
				p.Text = p.Text[:len(p.Text)-1] + "!"
				changed.Content = events.NewParts(p, orig.Content.Parts[1])
			case "ToolCalls":
				tc := orig.ToolCalls[0]
				tc.Arguments = tc.Arguments[:len(tc.Arguments)-3] + `!"}`
				changed.ToolCalls = []events.ToolCall{tc}
			case "Raw":
				changed.Raw = append(bytes.Clone(orig.Raw[:len(orig.Raw)-3]), `!"}`...)
			}
			if eventJSON(t, changed) == eventJSON(t, orig) {
				t.Fatal("the changed payload is not changed")
			}
			paths := []struct {
				name   string
				append func(e events.Event) (repo.Result, error)
			}{
				{"Append", func(e events.Event) (repo.Result, error) { return r.Append(ctx, e, repo.AppendOptions{}) }},
				{"AppendBatch", func(e events.Event) (repo.Result, error) {
					res, err := r.AppendBatch(ctx, []events.Event{e}, repo.AppendOptions{})
					if err != nil {
						return repo.Result{}, err
					}
					return res[0], nil
				}},
				{"AppendEach", func(e events.Event) (repo.Result, error) {
					it := r.AppendEach(ctx, []events.Event{e}, repo.AppendOptions{})[0]
					return it.Result, it.Err
				}},
			}
			for _, p := range paths {
				res, err := p.append(orig)
				if err != nil || !res.Duplicate() || eventJSON(t, res.Event) != eventJSON(t, first.Event) {
					t.Errorf("%s of a retry: %v, duplicate %v; want the stored event", p.name, err, res.Duplicate())
				}
				_, err = p.append(changed)
				var ce *repo.ConflictError
				if !errors.As(err, &ce) || !errors.Is(err, repo.ErrIdempotencyConflict) {
					t.Fatalf("%s of a changed payload: %v, want a conflict", p.name, err)
				}
				if eventJSON(t, ce.Stored) != eventJSON(t, first.Event) {
					t.Errorf("%s: the conflict carries\n%.200s\nwant the stored event\n%.200s", p.name, eventJSON(t, ce.Stored), eventJSON(t, first.Event))
				}
			}
			if head, _ := r.Head(ctx, orig.ConversationID); head != 1 {
				t.Errorf("head %d after retries and conflicts, want 1", head)
			}
		})
	}
}

// TestCompress_Corrupt: a damaged compressed value is an error that says
// so (sqlite.ErrCorrupt), for the Go reader and for the SQL function the
// search view uses, never a panic or a wrong event.
func TestCompress_Corrupt(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	r := openFile(t, path)
	g := newSynthChat(t, 9)
	for i := range 3 {
		mustAppend(t, r, events.Event{ConversationID: fmt.Sprintf("c%d", i), Type: events.TypeAssistantMessage,
			Content: events.NewParts(events.TextPart(g.text(2000))), Model: "m"})
	}
	r.Close()
	raw := openRaw(t, path)
	defer raw.Close()
	good, _ := sqlite.Pack([]byte(g.text(2000)))
	damage := []struct {
		column string
		value  []byte
	}{
		{"content", good[:len(good)/2]},                                                    // truncated stream
		{"body", append([]byte{0, 9}, good[2:]...)},                                        // unknown codec
		{"body", []byte{0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}}, // absurd length
	}
	for i, d := range damage {
		s, _, err := raw.Prepare(`UPDATE events SET ` + d.column + ` = ? WHERE pos = ?`)
		if err != nil {
			t.Fatal(err)
		}
		s.BindBlob(1, d.value)
		s.BindInt64(2, int64(i+1))
		if err := s.Exec(); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if err := raw.Exec(`UPDATE events SET parts_text = x'0001ff' WHERE pos = 1`); err != nil {
		t.Fatal(err)
	}

	r = openFile(t, path)
	for i := range damage {
		conv := fmt.Sprintf("c%d", i)
		n := 0
		for _, err := range r.Events(ctx, conv, repo.Range{}) {
			n++
			if !errors.Is(err, sqlite.ErrCorrupt) {
				t.Errorf("%s (damaged %s): %v, want ErrCorrupt", conv, damage[i].column, err)
			}
		}
		if n != 1 {
			t.Errorf("%s: %d results, want the one error", conv, n)
		}
	}
	for _, q := range []string{
		`SELECT chatlog_inflate(x'0001ff')`,
		`SELECT chatlog_inflate(x'00')`,
		`SELECT chatlog_raw_length(x'0001')`,
		`SELECT count(content) FROM searchable_messages`,
	} {
		s, _, err := raw.Prepare(q)
		if err != nil {
			t.Fatal(err)
		}
		s.Step()
		if err := s.Err(); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("%s: %v, want a corrupt-payload error", q, err)
		}
		s.Close()
	}
}

// TestCompress_Functions: the SQL functions on values of every type.
func TestCompress_Functions(t *testing.T) {
	raw := openRaw(t, ":memory:")
	defer raw.Close()
	text := strings.Repeat("The quick brown fox. ", 40)
	packed, ok := sqlite.Pack([]byte(text))
	if !ok {
		t.Fatal("chat text did not compress")
	}
	s, _, err := raw.Prepare(`SELECT chatlog_inflate(?1), typeof(chatlog_inflate(?1)), chatlog_raw_length(?1), octet_length(?1),
		chatlog_inflate(?2), typeof(chatlog_inflate(?3)), chatlog_raw_length(?3), chatlog_inflate(NULL) IS NULL, chatlog_raw_length(NULL) IS NULL,
		chatlog_raw_length(?2)`)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.BindBlob(1, packed)
	s.BindText(2, "plain é")
	s.BindBlob(3, []byte(`{"json":true}`))
	if !s.Step() {
		t.Fatal(s.Err())
	}
	if s.ColumnText(0) != text || s.ColumnText(1) != "text" || s.ColumnInt(2) != len(text) || s.ColumnInt(3) != len(packed) {
		t.Errorf("compressed value: inflate %.20q (%s), raw length %d of %d stored bytes; want %d", s.ColumnText(0), s.ColumnText(1), s.ColumnInt(2), s.ColumnInt(3), len(text))
	}
	if s.ColumnText(4) != "plain é" || s.ColumnText(5) != "blob" || s.ColumnInt(6) != 13 || !s.ColumnBool(7) || !s.ColumnBool(8) || s.ColumnInt(9) != 8 {
		t.Errorf("plain values changed: %q, %s, %d, %v, %v, %d", s.ColumnText(4), s.ColumnText(5), s.ColumnInt(6), s.ColumnBool(7), s.ColumnBool(8), s.ColumnInt(9))
	}
}

// FuzzUnpack: decoding arbitrary stored bytes never panics; it fails with
// ErrCorrupt or yields a value that compresses back to itself.
func FuzzUnpack(f *testing.F) {
	for _, s := range []string{strings.Repeat("ab", 300), strings.Repeat("chat text and more chat text. ", 60)} {
		p, _ := sqlite.Pack([]byte(s))
		f.Add(p)
		f.Add(p[:len(p)/2])
		f.Add(p[:len(p)-1])
		f.Add(append(bytes.Clone(p), 0))
	}
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte{0, 1})
	f.Add([]byte{0, 1, 0})
	f.Add([]byte{0, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := sqlite.Unpack(b)
		if err != nil {
			if !errors.Is(err, sqlite.ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		p, packed := sqlite.Pack(out)
		if back, err := sqlite.Unpack(p); packed && (err != nil || !bytes.Equal(back, out)) {
			t.Fatalf("a decoded value does not round-trip: %v", err)
		}
	})
}

// FuzzPack: what is compressed decompresses to itself and is smaller;
// what is not is left as it was.
func FuzzPack(f *testing.F) {
	f.Add([]byte("short"))
	f.Add([]byte(strings.Repeat("x", sqlite.CompressThreshold+1)))
	f.Add([]byte(strings.Repeat("chat text and more chat text. ", 60)))
	f.Fuzz(func(t *testing.T, v []byte) {
		p, packed := sqlite.Pack(v)
		if !packed {
			if !bytes.Equal(p, v) {
				t.Fatal("an uncompressed value changed")
			}
			return
		}
		if len(v) <= sqlite.CompressThreshold || len(p) >= len(v) {
			t.Fatalf("compressed %d bytes into %d", len(v), len(p))
		}
		back, err := sqlite.Unpack(p)
		if err != nil || !bytes.Equal(back, v) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// BenchmarkCompress measures the codec alone on chat messages of 513 B to
// 8 KiB: what compressing costs an append and decompressing a read.
func BenchmarkCompress(b *testing.B) {
	g := newSynthChat(b, 1)
	msgs := make([][]byte, 1000)
	var raw, stored int
	var packed [][]byte // the values stored compressed
	for i := range msgs {
		msgs[i] = []byte(g.text(sqlite.CompressThreshold + 1 + g.rng.IntN(8<<10-sqlite.CompressThreshold)))
		p, ok := sqlite.Pack(msgs[i])
		if ok {
			packed = append(packed, p)
		}
		raw += len(msgs[i])
		stored += len(p)
	}
	b.Run("pack", func(b *testing.B) {
		b.SetBytes(int64(raw / len(msgs)))
		i := 0
		for b.Loop() {
			sqlite.Pack(msgs[i%len(msgs)])
			i++
		}
		b.ReportMetric(float64(stored)/float64(raw), "stored/raw")
	})
	b.Run("unpack", func(b *testing.B) {
		b.SetBytes(int64(raw / len(msgs)))
		i := 0
		for b.Loop() {
			if _, err := sqlite.Unpack(packed[i%len(packed)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
