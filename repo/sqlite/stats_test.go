package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo/sqlite"
)

// storedSize is what a payload value takes as the store keeps it.
func storedSize(v string) (size int64, packed bool) {
	p, ok := sqlite.Pack([]byte(v))
	return int64(len(p)), ok
}

// TestRepo_StorageStats: counts by type and conversation, payload bytes
// stored and uncompressed, file sizes and the writer's totals.
func TestRepo_StorageStats(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "st.db")
	r := openFile(t, path)
	g := newSynthChat(t, 17)
	evs := []events.Event{
		{ConversationID: "a", Type: events.TypeConversationStarted, Extra: map[string]any{"title": "t"}},
		{ConversationID: "a", Type: events.TypeUserMessage, Content: events.NewText("short")},
		{ConversationID: "a", Type: events.TypeAssistantMessage, Content: events.NewText(g.text(3000)), Model: "m"},
		{ConversationID: "b", Type: events.TypeUserMessage, Content: events.NewParts(events.TextPart(g.text(2000)))},
		{ConversationID: "b", Type: events.TypeAssistantMessage, Model: "m",
			ToolCalls: []events.ToolCall{{ID: "t1", Name: "f", Arguments: `{"x":1}`}}},
		{ConversationID: "c", Type: events.TypeToolResult, ToolCallID: "t1", Content: events.NewText(g.text(600))},
	}
	var want sqlite.PayloadStats
	for _, e := range evs {
		s := mustEncode(e)
		for _, v := range []string{s.Text, string(s.Body), s.PartsText} {
			n, packed := storedSize(v)
			want.StoredBytes += n
			want.RawBytes += int64(len(v))
			if packed {
				want.CompressedValues++
			}
		}
		mustAppend(t, r, e)
	}
	st, err := r.StorageStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := map[string]int64{"conversation_started": 1, "user_message": 2, "assistant_message": 2, "tool_result": 1}
	if st.Events != 6 || st.Conversations != 3 || !reflect.DeepEqual(st.ByType, wantTypes) {
		t.Errorf("counts: %d events, %d conversations, %v; want 6, 3, %v", st.Events, st.Conversations, st.ByType, wantTypes)
	}
	if st.Payload != want {
		t.Errorf("payload %+v, want %+v", st.Payload, want)
	}
	// The text (3000), the parts' text and body (2000 each) and the
	// tool result (600) are compressed.
	if want.CompressedValues != 4 || st.Payload.StoredBytes*10 > st.Payload.RawBytes*7 {
		t.Errorf("payload %+v: want 4 values compressed and at least 30%% saved", st.Payload)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.DBBytes == nil || *st.DBBytes != fi.Size() || st.WALBytes == nil || *st.WALBytes <= 0 {
		t.Errorf("file sizes %v, %v; want %d and a WAL holding the appends", st.DBBytes, st.WALBytes, fi.Size())
	}
	if st.GroupCommit.Appended != 6 || st.GroupCommit.Commits < 1 {
		t.Errorf("group commit %+v, want 6 appended", st.GroupCommit)
	}

	mem, err := sqlite.Open(ctx, ":memory:", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	st, err = mem.StorageStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 0 || st.Conversations != 0 || len(st.ByType) != 0 || st.ByType == nil || st.DBBytes != nil || st.WALBytes != nil || st.Payload != (sqlite.PayloadStats{}) {
		t.Errorf("an empty in-memory store: %+v", st)
	}
}

// TestRepo_StorageStatsOld: rows written before compression count as
// stored plain, beside new compressed ones.
func TestRepo_StorageStatsOld(t *testing.T) {
	ctx := context.Background()
	r := openFile(t, copyFixture(t, "precompression.db"))
	st, err := r.StorageStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 13 || st.Conversations != 2 || st.Payload.CompressedValues != 0 || st.Payload.StoredBytes != st.Payload.RawBytes || st.Payload.RawBytes < 10000 {
		t.Errorf("the old database: %+v", st)
	}
	old := st.Payload
	g := newSynthChat(t, 19)
	text := g.text(4000)
	mustAppend(t, r, events.Event{ConversationID: "old-1", Type: events.TypeUserMessage, Content: events.NewText(text)})
	if st, err = r.StorageStats(ctx); err != nil {
		t.Fatal(err)
	}
	n, _ := storedSize(text)
	want := sqlite.PayloadStats{StoredBytes: old.StoredBytes + n, RawBytes: old.RawBytes + int64(len(text)), CompressedValues: 1}
	if st.Payload != want || st.ByType["user_message"] != 5 {
		t.Errorf("after one compressed message: %+v, %v; want %+v", st.Payload, st.ByType, want)
	}
}
