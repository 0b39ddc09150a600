package main

import (
	"context"
	"flag"

	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
)

// Output formats of messages.
const (
	formatOpenAI    = "openai"
	formatAnthropic = "anthropic"
)

var messagesCommand = &command{
	name:    "messages",
	args:    "--conversation C [--format openai|anthropic] [--as-of-seq N] [--system TEXT] [--max-messages N] [--max-turns N] [--max-tokens N]",
	summary: `print what the model sees of a conversation as one JSON document: an OpenAI messages array, or Anthropic's {"system","messages"}`,
	example: `chatlog messages --conversation c1 --format anthropic --max-turns 10 --system "You are terse."`,
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			conversation = fs.String("conversation", "", "the conversation `ID` (required); an unknown one has no messages")
			format       = fs.String("format", formatOpenAI, "the request shape `FORMAT`: openai (an array of messages, the system prompt first) or anthropic ({\"system\":...,\"messages\":[...]})")
			asOf         = fs.Int64("as-of-seq", 0, "what the model saw just after the event with seq `N` (0: now)")
			system       = fs.String("system", "", "the system prompt `TEXT`, replacing the conversation's own")
			maxMessages  = fs.Int("max-messages", 0, "keep the most recent whole turns that fit in `N` messages (0: no limit; the newest turn is always kept)")
			maxTurns     = fs.Int("max-turns", 0, "keep the most recent `N` turns (a turn: a user message and what follows it; 0: no limit)")
			maxTokens    = fs.Int("max-tokens", 0, "keep the most recent whole turns that fit in about `N` tokens (about 4 bytes a token; 0: no limit)")
		)
		return func(ctx context.Context, env *env, args []string) error {
			switch {
			case *conversation == "":
				return usageErr("--conversation is required")
			case *format != formatOpenAI && *format != formatAnthropic:
				return usageErr("--format must be openai or anthropic, got %q", *format)
			case *asOf < 0:
				return usageErr("--as-of-seq must not be negative, got %d", *asOf)
			case *maxMessages < 0 || *maxTurns < 0 || *maxTokens < 0:
				return usageErr("--max-messages, --max-turns and --max-tokens must not be negative")
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			return printMessages(ctx, env, r, *conversation, *format, projection.Options{
				AsOfSeq:     *asOf,
				System:      *system,
				MaxMessages: *maxMessages,
				MaxTurns:    *maxTurns,
				MaxTokens:   *maxTokens,
			})
		}
	},
}

// printMessages prints the LLM-visible conversation in format (openai or
// anthropic) as one JSON document.
func printMessages(ctx context.Context, env *env, r repo.Repo, cid, format string, opts projection.Options) error {
	conv, err := projection.Read(ctx, r, cid, opts)
	if err != nil {
		return err
	}
	if format == formatAnthropic {
		return writeJSON(env, conv.Anthropic())
	}
	return writeJSON(env, conv.OpenAI())
}
