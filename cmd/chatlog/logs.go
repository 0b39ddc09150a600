package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/logfile"
	"github.com/chatlog/chatlog/projection"
	"github.com/chatlog/chatlog/repo"
)

var ingestCommand = &command{
	positional: true,
	name:       "ingest",
	args:       "[FILE|-]",
	summary:    "append a JSONL log of events (export or legacy format) idempotently; prints counts, reports bad lines",
	example:    "chatlog --db chat.db ingest conversations.jsonl",
	setup: func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, env *env, args []string) error {
			return runLoad(ctx, env, args, "ingesting", logfile.Ingest)
		}
	},
}

var importCommand = &command{
	positional: true,
	name:       "import",
	args:       "[FILE|-]",
	summary:    "load an export, keeping ids, seqs and timestamps; idempotent",
	example:    "chatlog --db copy.db import backup.jsonl",
	setup: func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, env *env, args []string) error {
			return runLoad(ctx, env, args, "importing", logfile.Import)
		}
	},
}

var exportCommand = &command{
	name:    "export",
	args:    "[--conversation C]",
	summary: "print every event as JSONL (one conversation with --conversation), round-trippable by import",
	example: "chatlog export > backup.jsonl",
	setup: func(fs *flag.FlagSet) runFunc {
		conversation := fs.String("conversation", "", "export only this conversation `ID` (default: all, in global order)")
		return func(ctx context.Context, env *env, args []string) error {
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			seq := r.All(ctx, 0)
			if *conversation != "" {
				seq = r.Events(ctx, *conversation, repo.Range{})
			}
			_, err = withEventProgress(env, "exporting", func(progress func(int64)) error {
				var n int64
				counted := func(yield func(events.Event, error) bool) {
					for e, err := range seq {
						if n++; n%1000 == 0 {
							progress(n)
						}
						if !yield(e, err) {
							return
						}
					}
					progress(n)
				}
				_, err := logfile.Export(ctx, env.stdout, counted)
				return err
			})
			return err
		}
	},
}

// defaultDemoFile is the demo log, relative to the repository root.
const defaultDemoFile = "testdata/demo.jsonl"

var demoCommand = &command{
	name:    "demo",
	args:    "[--file FILE] [--conversation ID] [--with-deltas]",
	summary: "ingest the bundled demo log, print the counts, replay one of its conversations, then print what the model sees of it (OpenAI shape)",
	example: "go run ./cmd/chatlog demo   # from the repository root; running it again adds nothing",
	setup: func(fs *flag.FlagSet) runFunc {
		var (
			file         = fs.String("file", defaultDemoFile, "the demo log `FILE`")
			conversation = fs.String("conversation", "", "the conversation `ID` to replay (default: the first in the file)")
			withDeltas   = fs.Bool("with-deltas", false, "include the streamed chunks in the replay")
		)
		return func(ctx context.Context, env *env, args []string) error {
			cid := *conversation
			if cid == "" {
				var err error
				if cid, err = firstConversation(*file); err != nil {
					return err
				}
			}
			if err := runLoad(ctx, env, []string{*file}, "ingesting", logfile.Ingest); err != nil {
				return err
			}
			r, err := env.repo(ctx)
			if err != nil {
				return err
			}
			if err := replay(ctx, env.stdout, r, replayQuery{conv: cid, withDeltas: *withDeltas}); err != nil {
				return err
			}
			// The main job end to end: what the model is sent next.
			return printMessages(ctx, env, r, cid, formatOpenAI, projection.Options{})
		}
	},
}

// firstConversation returns the conversation of the first valid line of
// a demo log, with a hint when the file is missing.
func firstConversation(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s not found: run the demo from the repository root or pass --file PATH", path)
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	rd := logfile.NewReader(f)
	for {
		e, err := rd.Read()
		var le *logfile.LineError
		switch {
		case err == io.EOF:
			return "", fmt.Errorf("%s: no events", path)
		case errors.As(err, &le):
			continue
		case err != nil:
			return "", fmt.Errorf("%s: %w", path, err)
		case e.ConversationID != "":
			return e.ConversationID, nil
		}
	}
}

// loader is logfile.Ingest or logfile.Import.
type loader func(context.Context, repo.Repo, io.Reader, logfile.IngestOptions) (logfile.Stats, error)

// runLoad loads one JSONL file (or stdin for "-" or none) with load,
// reports rejected lines on stderr as FILE:LINE: field: reason, prints
// the counts, and fails with exit code 1 when any line was rejected.
func runLoad(ctx context.Context, env *env, args []string, verb string, load loader) error {
	if len(args) > 1 {
		return usageErr("one input file at most, got %d", len(args))
	}
	name, src := "stdin", env.stdin
	var size int64 = -1
	if len(args) == 1 && args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		name, src = args[0], f
	}
	r, err := env.repo(ctx)
	if err != nil {
		return err
	}

	bar := newProgress(env.stderr, size, verb)
	src = bar.wrap(src)
	st, err := load(ctx, r, src, logfile.IngestOptions{
		OnError: func(le *logfile.LineError) {
			bar.clear()
			fmt.Fprintf(env.stderr, "%s:%d: %s\n", name, le.Line, le.Reason())
		},
		OnProgress: bar.update,
	})
	bar.finish()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	out, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := env.stdout.Write(append(out, '\n')); err != nil {
		return err
	}
	if st.Invalid > 0 || st.Conflicts > 0 {
		return fmt.Errorf("%s: rejected %d of %d lines (%d invalid, %d conflicting)",
			name, st.Invalid+st.Conflicts, st.Read, st.Invalid, st.Conflicts)
	}
	return nil
}

// progress shows a progress bar on a terminal and does nothing elsewhere.
// It measures bytes read when the input's size is known, lines otherwise.
type progress struct {
	bar   *progressbar.ProgressBar // nil: not a terminal
	size  int64
	bytes atomic.Int64 // read from src so far; written by the reading goroutine
}

func newProgress(w io.Writer, size int64, verb string) *progress {
	p := &progress{size: size}
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return p
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(verb),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	}
	if size >= 0 {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionSetItsString("events"), progressbar.OptionShowIts())
	}
	p.bar = progressbar.NewOptions64(size, opts...)
	return p
}

// wrap counts the bytes read from r when the bar measures bytes.
func (p *progress) wrap(r io.Reader) io.Reader {
	if p.bar == nil || p.size < 0 {
		return r
	}
	return &countingReader{r: r, n: &p.bytes}
}

func (p *progress) update(read int) {
	switch {
	case p.bar == nil:
	case p.size >= 0:
		p.bar.Set64(p.bytes.Load())
	default:
		p.bar.Set(read)
	}
}

func (p *progress) clear() {
	if p.bar != nil {
		p.bar.Clear()
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}
