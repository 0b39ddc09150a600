package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

var appendCommand = &command{
	name:    "append",
	args:    "--conversation C --type T [--role R] [--content TEXT] [--request-id K] [--extra JSON] [--expected-seq N]",
	summary: `append one event; prints the stored event with "duplicate": true/false`,
	example: `chatlog append --conversation c1 --type user_message --content "Hi there" --request-id req-1`,
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			conversation = fs.String("conversation", "", "the conversation `ID` (required)")
			typ          = fs.String("type", "", "the event `TYPE`: user_message, assistant_message, tool_result, ... (required)")
			role         optionalString
			content      optionalString
			requestID    = fs.String("request-id", "", "the idempotency `KEY`: a retry with the same payload is a duplicate, another payload a conflict")
			extra        json.RawMessage
			expected     optionalInt
		)
		fs.Var(&role, "role", "the speaker `ROLE` (default: the one the type implies)")
		fs.Var(&content, "content", "the message `TEXT`")
		fs.Func("extra", "free metadata as a JSON `OBJECT`", func(s string) error {
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
				return errors.New("must be a JSON object")
			}
			extra = json.RawMessage(s)
			return nil
		})
		fs.Var(&expected, "expected-seq", "append only if the conversation's last seq is `N` (0: no events yet); else exit 3")
		return func(ctx context.Context, env *env, args []string) error {
			if *conversation == "" {
				return usageErr("--conversation is required")
			}
			if *typ == "" {
				return usageErr("--type is required")
			}
			// The event goes through the wire decoder, so flags mean what
			// the same fields mean in a log line (extra.request_id, legacy
			// meta deltas).
			w := map[string]any{"conversation_id": *conversation, "type": *typ}
			if role.set {
				w["role"] = role.v
			}
			if content.set {
				w["content"] = content.v
			}
			if *requestID != "" {
				w["request_id"] = *requestID
			}
			if extra != nil {
				w["extra"] = extra
			}
			b, err := json.Marshal(w)
			if err != nil {
				return err
			}
			e, err := events.Decode(b)
			if err != nil {
				return err
			}
			if events.IsAccountStream(e.ConversationID) {
				// Validate lets a ledger_entry into its account stream;
				// only the ledger may write one there, with its guards.
				return &events.FieldError{Field: "conversation_id", Reason: fmt.Sprintf(
					"ids beginning with %q are reserved for per-user account streams; use 'chatlog ledger'", events.AccountStreamPrefix)}
			}
			var opts repo.AppendOptions
			if expected.set {
				opts.Expected = repo.ExpectSeq(expected.v)
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			res, err := r.Append(ctx, e, opts)
			if err != nil {
				return err
			}
			return printStored(env, res)
		}
	},
}

// printStored prints an append's stored event as one JSON line with a
// "duplicate" member added (append, delta and finish print this).
func printStored(env *env, res repo.Result) error {
	b, err := res.Event.MarshalJSON()
	if err != nil {
		return err
	}
	b = append(b[:len(b)-1], fmt.Sprintf(`,"duplicate":%t}`, res.Duplicate())...)
	_, err = env.stdout.Write(append(b, '\n'))
	return err
}

// optionalString is a string flag that knows whether it was given.
type optionalString struct {
	v   string
	set bool
}

func (o *optionalString) String() string { return o.v }

func (o *optionalString) Set(s string) error {
	o.v, o.set = s, true
	return nil
}

// optionalInt is a non-negative integer flag that knows whether it was
// given.
type optionalInt struct {
	v   int64
	set bool
}

func (o *optionalInt) String() string {
	if !o.set {
		return ""
	}
	return strconv.FormatInt(o.v, 10)
}

func (o *optionalInt) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return errors.New("must be a non-negative integer")
	}
	o.v, o.set = n, true
	return nil
}
