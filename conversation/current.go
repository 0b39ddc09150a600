package conversation

import (
	"context"
	"errors"
	"maps"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// DefaultScope is the scope of a user's pointer when none is named.
const DefaultScope = "default"

// Current returns the user's current conversation in scope ("" for
// DefaultScope); ok is false when none is set. It reads one event: the
// latest of the user's stream carries every scope's pointer.
func Current(ctx context.Context, r repo.Repo, user, scope string) (conversationID string, ok bool, err error) {
	if err := checkUser(user); err != nil {
		return "", false, err
	}
	ptrs, _, err := pointers(ctx, r, user)
	if err != nil {
		return "", false, err
	}
	id, ok := ptrs[scopeOr(scope)]
	return id, ok, nil
}

// SetCurrent points the user's current conversation in scope ("" for
// DefaultScope) at conversationID ("" clears it), as a
// current_conversation_set event in the user's stream. Setting the
// pointer it already has writes nothing and returns the latest event as
// a duplicate. Concurrent setters never lose each other's scopes: each
// writes under the stream's expected head and retries on a lost race.
func SetCurrent(ctx context.Context, r repo.Repo, user, scope, conversationID string) (repo.Result, error) {
	if err := checkUser(user); err != nil {
		return repo.Result{}, err
	}
	scope = scopeOr(scope)
	for race := 0; ; race++ {
		ptrs, last, err := pointers(ctx, r, user)
		if err != nil {
			return repo.Result{}, err
		}
		if cur, ok := ptrs[scope]; (ok && cur == conversationID) || (!ok && conversationID == "" && last.Seq > 0) {
			return repo.Result{Event: last, Outcome: repo.Duplicate}, nil
		}
		next := maps.Clone(ptrs)
		if next == nil {
			next = map[string]string{}
		}
		if conversationID == "" {
			delete(next, scope)
		} else {
			next[scope] = conversationID
		}
		current := make(map[string]any, len(next))
		for k, v := range next {
			current[k] = v
		}
		res, err := r.Append(ctx, events.Event{
			ConversationID: events.UserStreamPrefix + user,
			Type:           events.TypeCurrentSet,
			Extra:          map[string]any{"scope": scope, "conversation_id": conversationID, "current": current},
		}, repo.AppendOptions{Expected: repo.ExpectSeq(last.Seq)})
		if errors.Is(err, repo.ErrSeqConflict) && race < maxRaces {
			if err := backoff(ctx, race); err != nil {
				return repo.Result{}, err
			}
			continue
		}
		return res, err
	}
}

// pointers reads the user's pointers from the latest event of their
// stream (a zero event when there is none).
func pointers(ctx context.Context, r repo.Repo, user string) (map[string]string, events.Event, error) {
	last, err := r.Last(ctx, events.UserStreamPrefix+user, 1)
	if err != nil || len(last) == 0 {
		return nil, events.Event{}, err
	}
	ptrs := map[string]string{}
	if cur, ok := last[0].Extra["current"].(map[string]any); ok {
		for k, v := range cur {
			if s, ok := v.(string); ok {
				ptrs[k] = s
			}
		}
	}
	return ptrs, last[0], nil
}

func scopeOr(scope string) string {
	if scope == "" {
		return DefaultScope
	}
	return scope
}

func checkUser(user string) error {
	if user == "" {
		return &events.FieldError{Field: "user", Reason: "is required"}
	}
	return nil
}
