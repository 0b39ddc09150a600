package logfile_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/logfile"
	"github.com/chatlog/chatlog/repo"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// openRepo opens a SQLite store in a file under t.TempDir().
func openRepo(tb testing.TB) *sqlite.Repo {
	tb.Helper()
	r, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "chatlog.db"), nil)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() {
		if err := r.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return r
}

// ingest runs logfile.Ingest and collects the reported line errors.
func ingest(tb testing.TB, r repo.Repo, log string) (logfile.Stats, []*logfile.LineError) {
	tb.Helper()
	var errs []*logfile.LineError
	st, err := logfile.Ingest(context.Background(), r, strings.NewReader(log), logfile.IngestOptions{
		OnError: func(le *logfile.LineError) { errs = append(errs, le) },
	})
	if err != nil {
		tb.Fatalf("ingest: %v", err)
	}
	return st, errs
}

// all returns every stored event in pos order.
func all(tb testing.TB, r repo.Repo) []events.Event {
	tb.Helper()
	var out []events.Event
	for e, err := range r.All(context.Background(), 0) {
		if err != nil {
			tb.Fatalf("all: %v", err)
		}
		out = append(out, e)
	}
	return out
}

// conversation returns a conversation's events in seq order.
func conversation(tb testing.TB, r repo.Repo, cid string) []events.Event {
	tb.Helper()
	var out []events.Event
	for e, err := range r.Events(context.Background(), cid, repo.Range{}) {
		if err != nil {
			tb.Fatalf("events: %v", err)
		}
		out = append(out, e)
	}
	return out
}

func wantStats(tb testing.TB, got, want logfile.Stats) {
	tb.Helper()
	if got != want {
		tb.Errorf("stats = %+v, want %+v", got, want)
	}
}

const mixedLog = `{"conversation_id":"c1","type":"conversation_started","request_id":"start","extra":{"source":"test"}}
{"conversation_id":"c1","type":"user_message","content":"hello","request_id":"u1"}
{"conversation_id":"c1","type":"assistant_message","content":"hi there","request_id":"assistant:u1","usage":{"input":3,"output":2}}

{"conversation_id":"c2","type":"user_message","content":"with an id","id":"01J00000000000000000000001"}
{"conversation_id":"c2","type":"user_message","content":"no key at all"}
{"conversation_id":"c2","type":"assistant_message","content":[{"type":"text","text":"parts"}],"extra":{"request_id":"legacy-key"}}
`

func TestIngest_Twice(t *testing.T) {
	r := openRepo(t)
	st, errs := ingest(t, r, mixedLog)
	if len(errs) > 0 {
		t.Fatalf("unexpected line errors: %v", errs)
	}
	wantStats(t, st, logfile.Stats{Read: 6, Appended: 6})
	first := all(t, r)

	st, errs = ingest(t, r, mixedLog)
	if len(errs) > 0 {
		t.Fatalf("unexpected line errors on re-ingest: %v", errs)
	}
	wantStats(t, st, logfile.Stats{Read: 6, Duplicates: 6})
	if second := all(t, r); len(second) != len(first) {
		t.Fatalf("re-ingest changed the log: %d events, then %d", len(first), len(second))
	}

	c1 := conversation(t, r, "c1")
	for i, e := range c1 {
		if e.Seq != int64(i+1) {
			t.Errorf("c1 event %d has seq %d", i, e.Seq)
		}
	}
	if got := conversation(t, r, "c2")[2].RequestID; got != "legacy-key" {
		t.Errorf("extra.request_id was not taken as the key: %q", got)
	}
}

func TestIngest_BadLines(t *testing.T) {
	r := openRepo(t)
	log := strings.Join([]string{
		`{"conversation_id":"c","type":"user_message","content":"one","request_id":"k1"}`,
		``,
		`{"conversation_id":"c","type":"user_message","content":"bad seq","seq":"x"}`,
		`not json`,
		`{"conversation_id":"c","type":"user_message","request_id":"k5"}`,
		`   `,
		`{"conversation_id":"c","type":"user_message","content":"two","request_id":"k7"}`,
		`{"conversation_id":"c","type":"no_such_type","content":"x"}`,
		`{"conversation_id":"c","type":"user_message","content":"three","request_id":"k9"}`,
	}, "\n")
	st, errs := ingest(t, r, log)
	wantStats(t, st, logfile.Stats{Read: 7, Appended: 3, Invalid: 4})

	want := []struct {
		line  int
		field string
		msg   string
	}{
		{3, "seq", "line 3: seq: must be an integer"},
		{4, "event", "line 4: event: malformed JSON"},
		{5, "content", "line 5: content: is required for a user_message"},
		{8, "type", `line 8: type: "no_such_type" is not a known event type`},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d line errors, want %d: %v", len(errs), len(want), errs)
	}
	for i, w := range want {
		le := errs[i]
		if le.Line != w.line {
			t.Errorf("error %d: line %d, want %d", i, le.Line, w.line)
		}
		if !strings.HasPrefix(le.Error(), w.msg) {
			t.Errorf("error %d: %q, want prefix %q", i, le.Error(), w.msg)
		}
		var fe *events.FieldError
		if !errors.As(le, &fe) || fe.Field != w.field {
			t.Errorf("error %d: field error %v, want field %q", i, fe, w.field)
		}
		if !errors.Is(le, events.ErrInvalid) {
			t.Errorf("error %d does not match events.ErrInvalid", i)
		}
	}

	var texts []string
	for _, e := range conversation(t, r, "c") {
		texts = append(texts, e.Text())
	}
	if got := strings.Join(texts, ","); got != "one,two,three" {
		t.Errorf("stored %q, want the good lines one,two,three", got)
	}
}

// TestIngest_ManyBatches crosses batch boundaries: errors must still be
// reported in line order and every good line kept in order.
func TestIngest_ManyBatches(t *testing.T) {
	r := openRepo(t)
	const n = 2500
	var b strings.Builder
	var wantBad []int
	for i := 1; i <= n; i++ {
		if i%400 == 0 {
			fmt.Fprintf(&b, "{\"conversation_id\":\"c\",\"type\":\"user_message\",\"seq\":1.5}\n")
			wantBad = append(wantBad, i)
			continue
		}
		fmt.Fprintf(&b, "{\"conversation_id\":\"c\",\"type\":\"user_message\",\"content\":\"m%d\",\"request_id\":\"r%d\"}\n", i, i)
	}
	var progress []int
	var gotBad []int
	st, err := logfile.Ingest(context.Background(), r, strings.NewReader(b.String()), logfile.IngestOptions{
		OnError:    func(le *logfile.LineError) { gotBad = append(gotBad, le.Line) },
		OnProgress: func(read int) { progress = append(progress, read) },
	})
	if err != nil {
		t.Fatal(err)
	}
	wantStats(t, st, logfile.Stats{Read: n, Appended: n - len(wantBad), Invalid: len(wantBad)})
	if fmt.Sprint(gotBad) != fmt.Sprint(wantBad) {
		t.Errorf("bad lines reported %v, want %v", gotBad, wantBad)
	}
	if len(progress) < 3 || progress[len(progress)-1] != n {
		t.Errorf("progress calls %v: want several, ending at %d", progress, n)
	}
	evs := conversation(t, r, "c")
	if len(evs) != n-len(wantBad) {
		t.Fatalf("stored %d events, want %d", len(evs), n-len(wantBad))
	}
	line := 0
	for _, e := range evs {
		line++
		if line%400 == 0 {
			line++
		}
		if want := "m" + strconv.Itoa(line); e.Text() != want {
			t.Fatalf("seq %d holds %q, want %q: order lost", e.Seq, e.Text(), want)
		}
	}
}

func TestIngest_Legacy(t *testing.T) {
	r := openRepo(t)
	// Two interleaved legacy streams in one conversation, and one in
	// another conversation reusing a user_request_id: each is indexed on
	// its own.
	log := `{"conversation_id":"c","type":"user_message","content":"q1","extra":{"request_id":"u1"}}
{"conversation_id":"c","type":"meta","content":"Hel","extra":{"kind":"assistant_delta","user_request_id":"u1"}}
{"conversation_id":"c","type":"meta","content":"Other","extra":{"kind":"assistant_delta","user_request_id":"u2"}}
{"conversation_id":"c","type":"meta","content":"lo","extra":{"kind":"assistant_delta","user_request_id":"u1"}}
{"conversation_id":"d","type":"meta","content":"D0","extra":{"kind":"assistant_delta","user_request_id":"u1"}}
{"conversation_id":"c","type":"meta","content":"!","extra":{"kind":"assistant_delta","user_request_id":"u1"}}
{"conversation_id":"c","type":"meta","content":"not a delta","extra":{"kind":"note","request_id":"note1"}}
{"conversation_id":"c","type":"assistant_message","content":"Hello!","request_id":"assistant:u1"}
`
	st, errs := ingest(t, r, log)
	if len(errs) > 0 {
		t.Fatalf("line errors: %v", errs)
	}
	wantStats(t, st, logfile.Stats{Read: 8, Appended: 8})

	type delta struct {
		urid, text, key string
		index           int64
	}
	var got []delta
	for _, cid := range []string{"c", "d"} {
		for _, e := range conversation(t, r, cid) {
			if e.Type == events.TypeMeta {
				if k, _ := e.ExtraString("kind"); k != "note" {
					t.Errorf("meta event lost its kind: %+v", e.Extra)
				}
				continue
			}
			if e.Type != events.TypeAssistantDelta {
				continue
			}
			if e.Role != events.RoleAssistant {
				t.Errorf("delta %q has role %q", e.Text(), e.Role)
			}
			if _, ok := e.Extra["kind"]; ok {
				t.Errorf("delta %q kept the legacy extra.kind", e.Text())
			}
			urid, _ := e.ExtraString("user_request_id")
			index, ok := e.ExtraInt("index")
			if !ok {
				t.Errorf("delta %q has no integer extra.index: %v", e.Text(), e.Extra["index"])
			}
			got = append(got, delta{urid, e.Text(), e.RequestID, index})
		}
	}
	want := []delta{
		{"u1", "Hel", "delta:u1:0", 0},
		{"u2", "Other", "delta:u2:0", 0},
		{"u1", "lo", "delta:u1:1", 1},
		{"u1", "!", "delta:u1:2", 2},
		{"u1", "D0", "delta:u1:0", 0},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("deltas\n got %v\nwant %v", got, want)
	}

	st, errs = ingest(t, r, log)
	if len(errs) > 0 {
		t.Fatalf("line errors on re-ingest: %v", errs)
	}
	wantStats(t, st, logfile.Stats{Read: 8, Duplicates: 8})
}

// TestIngest_DeltaWithIndex keeps an explicit index and keys by it.
func TestIngest_DeltaWithIndex(t *testing.T) {
	r := openRepo(t)
	log := `{"conversation_id":"c","type":"assistant_delta","content":"b","extra":{"user_request_id":"u","index":1}}
{"conversation_id":"c","type":"assistant_delta","content":"a","extra":{"user_request_id":"u","index":0}}
`
	st, errs := ingest(t, r, log)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	wantStats(t, st, logfile.Stats{Read: 2, Appended: 2})
	evs := conversation(t, r, "c")
	if evs[0].RequestID != "delta:u:1" || evs[1].RequestID != "delta:u:0" {
		t.Errorf("keys %q, %q; want delta:u:1, delta:u:0", evs[0].RequestID, evs[1].RequestID)
	}
}

func TestIngest_Keyless(t *testing.T) {
	r := openRepo(t)
	ok := `{"conversation_id":"c","type":"user_message","content":"ok"}`
	log := ok + "\n" + ok + "\n" +
		`{"conversation_id":"other","type":"user_message","content":"ok"}` + "\n" +
		`{"conversation_id":"c","type":"assistant_message","content":"ok"}` + "\n"
	st, errs := ingest(t, r, log)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	wantStats(t, st, logfile.Stats{Read: 4, Appended: 4})

	// The derived key is the documented formula.
	derived := func(line string, n int) string {
		t.Helper()
		e, err := events.Decode([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		fp, err := dedupe.Of(&e)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(append([]byte(e.ConversationID+"\x00"), fp[:]...))
		return "ingest:" + hex.EncodeToString(sum[:12]) + ":" + strconv.Itoa(n)
	}
	c := conversation(t, r, "c")
	if len(c) != 3 {
		t.Fatalf("conversation c holds %d events, want 3 (both identical messages)", len(c))
	}
	wantKeys := []string{derived(ok, 0), derived(ok, 1), derived(`{"conversation_id":"c","type":"assistant_message","content":"ok"}`, 0)}
	for i, e := range c {
		if e.RequestID != wantKeys[i] {
			t.Errorf("event %d: key %q, want %q", i, e.RequestID, wantKeys[i])
		}
	}
	if o := conversation(t, r, "other"); len(o) != 1 || o[0].RequestID == c[0].RequestID {
		t.Errorf("other conversation: %+v", o)
	}

	st, errs = ingest(t, r, log)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	wantStats(t, st, logfile.Stats{Read: 4, Duplicates: 4})
	if n := len(all(t, r)); n != 4 {
		t.Errorf("store holds %d events after re-ingest, want 4", n)
	}
}

func TestIngest_Conflict(t *testing.T) {
	r := openRepo(t)
	log := `{"conversation_id":"c","type":"user_message","content":"first","request_id":"k"}
{"conversation_id":"c","type":"user_message","request_id":"k-invalid"}
{"conversation_id":"c","type":"user_message","content":"first","request_id":"k"}
{"conversation_id":"c","type":"user_message","content":"second","request_id":"k"}
{"conversation_id":"c","type":"user_message","content":"after","request_id":"k2"}
`
	st, errs := ingest(t, r, log)
	wantStats(t, st, logfile.Stats{Read: 5, Appended: 2, Duplicates: 1, Conflicts: 1, Invalid: 1})
	if len(errs) != 2 {
		t.Fatalf("got %d line errors, want 2: %v", len(errs), errs)
	}
	// Decoding and store rejections are reported together in line order.
	if errs[0].Line != 2 || !errors.Is(errs[0], events.ErrInvalid) {
		t.Errorf("first error %v, want the invalid line 2", errs[0])
	}
	le := errs[1]
	if le.Line != 4 || !errors.Is(le, repo.ErrIdempotencyConflict) {
		t.Errorf("got %v, want an idempotency conflict on line 4", le)
	}
	var ce *repo.ConflictError
	if !errors.As(le, &ce) || ce.Stored.Text() != "first" || ce.Stored.Seq != 1 {
		t.Errorf("conflict does not carry the stored event: %+v", ce)
	}
	if !strings.HasPrefix(le.Error(), "line 4: request_id: ") {
		t.Errorf("message %q does not name line and field", le.Error())
	}
}

func TestExportImport_RoundTrip(t *testing.T) {
	ctx := context.Background()
	src := openRepo(t)
	if _, errs := ingest(t, src, mixedLog); len(errs) > 0 {
		t.Fatal(errs)
	}
	// A second ingest mints nothing new but the log now has a history
	// worth keeping: exact timestamps, ids and seqs.
	var exp bytes.Buffer
	n, err := logfile.Export(ctx, &exp, src.All(ctx, 0))
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 || strings.Count(exp.String(), "\n") != 6 {
		t.Fatalf("exported %d events in %d lines, want 6", n, strings.Count(exp.String(), "\n"))
	}
	for i, line := range strings.Split(strings.TrimSuffix(exp.String(), "\n"), "\n") {
		if strings.Contains(line, "\n") || !strings.HasPrefix(line, "{") || !strings.HasSuffix(line, "}") {
			t.Errorf("line %d is not one compact object: %q", i+1, line)
		}
	}

	dst := openRepo(t)
	st, err := logfile.Import(ctx, dst, bytes.NewReader(exp.Bytes()), logfile.IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantStats(t, st, logfile.Stats{Read: 6, Appended: 6})

	want, got := all(t, src), all(t, dst)
	if len(got) != len(want) {
		t.Fatalf("imported %d events, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.ID != w.ID || g.Seq != w.Seq || !g.CreatedAt.Equal(w.CreatedAt) || g.ConversationID != w.ConversationID {
			t.Errorf("event %d: got id %s seq %d at %s, want id %s seq %d at %s",
				i, g.ID, g.Seq, events.FormatTime(g.CreatedAt), w.ID, w.Seq, events.FormatTime(w.CreatedAt))
		}
		if i > 0 && g.Pos <= got[i-1].Pos {
			t.Errorf("event %d: pos %d after %d: import order lost", i, g.Pos, got[i-1].Pos)
		}
		// pos is the importing store's to assign; the rest round-trips.
		w.Pos, g.Pos = 0, 0
		wj, _ := w.MarshalJSON()
		gj, _ := g.MarshalJSON()
		if !bytes.Equal(wj, gj) {
			t.Errorf("event %d differs:\n got %s\nwant %s", i, gj, wj)
		}
	}

	// Importing again adds nothing.
	st, err = logfile.Import(ctx, dst, bytes.NewReader(exp.Bytes()), logfile.IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantStats(t, st, logfile.Stats{Read: 6, Duplicates: 6})
}

func TestImport_SeqConflict(t *testing.T) {
	ctx := context.Background()
	src := openRepo(t)
	ingest(t, src, `{"conversation_id":"c","type":"user_message","content":"a","request_id":"a"}`)
	var exp bytes.Buffer
	if _, err := logfile.Export(ctx, &exp, src.Events(ctx, "c", repo.Range{})); err != nil {
		t.Fatal(err)
	}
	dst := openRepo(t)
	ingest(t, dst, `{"conversation_id":"c","type":"user_message","content":"b","request_id":"b"}`)
	var errs []*logfile.LineError
	st, err := logfile.Import(ctx, dst, &exp, logfile.IngestOptions{OnError: func(le *logfile.LineError) { errs = append(errs, le) }})
	if err != nil {
		t.Fatal(err)
	}
	wantStats(t, st, logfile.Stats{Read: 1, Conflicts: 1})
	if len(errs) != 1 || errs[0].Line != 1 || !errors.Is(errs[0], repo.ErrSeqConflict) {
		t.Errorf("got %v, want a seq conflict on line 1", errs)
	}
}

func TestReader(t *testing.T) {
	big := strings.Repeat("x", events.MaxPayloadBytes-100) // over bufio's 64 KiB, within the limit
	huge := strings.Repeat("y", logfile.MaxLineBytes+10)
	in := "\xef\xbb\xbf" + `{"conversation_id":"c","type":"user_message","content":"bom"}` + "\r\n" +
		`{"conversation_id":"c","type":"user_message","content":"` + big + `"}` + "\n" +
		`{"conversation_id":"c","type":"user_message","content":"` + huge + `"}` + "\n" +
		"\r\n" +
		`{"conversation_id":"c","type":"user_message","content":"last, no newline"}`
	rd := logfile.NewReader(strings.NewReader(in))

	type result struct {
		line int
		text string
		err  string
	}
	var got []result
	for {
		e, err := rd.Read()
		if err == io.EOF {
			break
		}
		var le *logfile.LineError
		if err != nil && !errors.As(err, &le) {
			t.Fatalf("fatal error: %v", err)
		}
		r := result{line: rd.Line(), text: e.Text()}
		if len(r.text) > 10 {
			r.text = r.text[:10]
		}
		if err != nil {
			r.err = err.Error()
			if le.Line != rd.Line() {
				t.Errorf("LineError.Line %d, Reader.Line %d", le.Line, rd.Line())
			}
		}
		got = append(got, r)
	}
	want := []result{
		{1, "bom", ""},
		{2, "xxxxxxxxxx", ""},
		{3, "", fmt.Sprintf("line 3: event: line is %d bytes, over the limit of %d", len(huge)+len(`{"conversation_id":"c","type":"user_message","content":""}`), logfile.MaxLineBytes)},
		{5, "last, no n", ""},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if _, err := rd.Read(); err != io.EOF {
		t.Errorf("read after EOF: %v", err)
	}
}

// failingReader returns an error after its data.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestIngest_ReadError(t *testing.T) {
	r := openRepo(t)
	boom := errors.New("disk on fire")
	src := &failingReader{r: strings.NewReader(mixedLog), err: boom}
	st, err := logfile.Ingest(context.Background(), r, src, logfile.IngestOptions{})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the read error", err)
	}
	// The complete lines before the error are kept.
	wantStats(t, st, logfile.Stats{Read: 6, Appended: 6})
}

func TestIngest_Cancelled(t *testing.T) {
	r := openRepo(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := logfile.Ingest(ctx, r, strings.NewReader(mixedLog), logfile.IngestOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if n := len(all(t, r)); n != 0 {
		t.Errorf("a cancelled ingest stored %d events", n)
	}
}

func TestExport_ReadError(t *testing.T) {
	boom := errors.New("read failed")
	seq := func(yield func(events.Event, error) bool) {
		if !yield(events.Event{ConversationID: "c", Type: events.TypeUserMessage, Content: events.NewText("a"), Seq: 1}, nil) {
			return
		}
		yield(events.Event{}, boom)
	}
	var out bytes.Buffer
	n, err := logfile.Export(context.Background(), &out, seq)
	if !errors.Is(err, boom) || n != 1 {
		t.Fatalf("got %d, %v; want 1, the read error", n, err)
	}
	if want := `{"conversation_id":"c","seq":1,"type":"user_message","content":"a"}` + "\n"; out.String() != want {
		t.Errorf("output %q, want the event before the error: %q", out.String(), want)
	}
}
