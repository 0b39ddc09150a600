package ledger_test

import (
	"context"
	"errors"
	"testing"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/ledger"
	"github.com/chatlog/chatlog/repo"
)

// TestLedger_readModels: a user's ledger is in the log but in no read
// model: not listed, no summary, never a search hit, and verify (which
// rebuilds the read models from the whole log) agrees with the live ones.
func TestLedger_readModels(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, "")
	for _, e := range []events.Event{
		{ConversationID: "c1", Type: events.TypeConversationStarted, Extra: map[string]any{"user": "alice"}},
		{ConversationID: "c1", Type: events.TypeUserMessage, Content: events.NewText("please resend invoice 17")},
	} {
		if _, err := r.Append(ctx, e, repo.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	l := ledger.New(r, nil)
	post(t, l, ledger.Request{User: "alice", Kind: ledger.Credit, Amount: 500, RequestID: "p1", Note: "invoice 17"})
	post(t, l, ledger.Request{User: "alice", Kind: ledger.Debit, Amount: 20, RequestID: "p2", Note: "invoice 17 usage"})
	post(t, l, ledger.Request{User: "zed", Kind: ledger.Credit, Amount: 1, RequestID: "p1", Note: "invoice"})

	check := func(t *testing.T) {
		t.Helper()
		for _, q := range []repo.ListQuery{{}, {User: "alice"}} {
			page, err := r.ListConversations(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Conversations) != 1 || page.Conversations[0].ConversationID != "c1" {
				t.Fatalf("ListConversations(%+v) = %+v, want c1 alone", q, page.Conversations)
			}
		}
		for _, user := range []string{"alice", "zed"} {
			if s, err := r.Summary(ctx, ledger.StreamID(user)); !errors.Is(err, repo.ErrNotFound) {
				t.Fatalf("Summary of %s's ledger = %+v, %v; want ErrNotFound", user, s, err)
			}
		}
		hits, err := r.Search(ctx, repo.SearchQuery{Query: "invoice"})
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != 1 || hits[0].ConversationID != "c1" {
			t.Fatalf("Search(invoice) = %+v, want the message of c1 alone", hits)
		}
		problems, err := r.VerifyReadModels(ctx, nil)
		if err != nil || len(problems) != 0 {
			t.Fatalf("VerifyReadModels = %q, %v", problems, err)
		}
	}
	t.Run("Live", check)
	if err := r.RebuildReadModels(ctx, nil); err != nil {
		t.Fatal(err)
	}
	t.Run("Rebuilt", check)
	wantBalance(t, l, "alice", 480)
}

// TestLedger_reservedIDs: the store refuses ordinary events in a ledger's
// stream and ledger entries anywhere else, naming conversation_id, so an
// entry can only come through the ledger (or a log it wrote).
func TestLedger_reservedIDs(t *testing.T) {
	ctx := context.Background()
	r := openRepo(t, ":memory:")
	entry := map[string]any{"kind": "credit", "amount": int64(5), "balance": int64(5)}
	for name, e := range map[string]events.Event{
		"MessageInLedger":      {ConversationID: ledger.StreamID("alice"), Type: events.TypeUserMessage, Content: events.NewText("hi")},
		"StartInLedger":        {ConversationID: ledger.StreamID("alice"), Type: events.TypeConversationStarted},
		"EntryInConversation":  {ConversationID: "alice", Type: events.TypeLedgerEntry, Extra: entry},
		"EntryInAnotherStream": {ConversationID: "~credits/alice", Type: events.TypeLedgerEntry, Extra: entry},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := r.Append(ctx, e, repo.AppendOptions{})
			var fe *events.FieldError
			if !errors.Is(err, events.ErrInvalid) || !errors.As(err, &fe) || fe.Field != "conversation_id" {
				t.Fatalf("Append = %v, want a field error naming conversation_id", err)
			}
		})
	}
	wantHead(t, r, "alice", 0)
	if head, err := r.Head(ctx, "alice"); err != nil || head != 0 {
		t.Fatalf("conversation alice: head %d, %v", head, err)
	}
}
