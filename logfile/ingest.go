package logfile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// Batching limits: a batch is handed to the store when it holds this many
// lines or this many bytes of input, whichever comes first.
const (
	batchLines = 1000
	batchBytes = 4 << 20
)

// Stats counts what Ingest or Import did with each event read.
// Read = Appended + Duplicates + Conflicts + Invalid.
type Stats struct {
	// Read is the number of non-blank lines read.
	Read int `json:"read"`
	// Appended is the number of events written.
	Appended int `json:"appended"`
	// Duplicates is the number of events already stored with the same
	// payload: nothing was written for them.
	Duplicates int `json:"duplicates"`
	// Conflicts is the number of events whose key was already used for
	// another payload, or (on import) whose seq does not follow the stored
	// head. Nothing was written for them.
	Conflicts int `json:"conflicts"`
	// Invalid is the number of lines that did not decode or validate.
	Invalid int `json:"invalid"`
}

// IngestOptions adjusts Ingest and Import. The zero value reports nothing.
type IngestOptions struct {
	// OnError, when set, is called for every rejected line, in line order:
	// invalid lines (errors.Is(err, events.ErrInvalid)) and conflicts
	// (errors.Is(err, repo.ErrIdempotencyConflict) or repo.ErrSeqConflict).
	// It is called on the caller's goroutine, never concurrently.
	OnError func(*LineError)
	// OnProgress, when set, is called after each batch with the number of
	// lines read so far. It is called on the caller's goroutine, never
	// concurrently.
	OnProgress func(read int)
}

// Ingest appends the events of a JSONL log to r, in order, with the
// idempotency keys described in the package documentation, so ingesting
// the same log again adds nothing. The store assigns seq and pos; ids and
// created_at given in the log are kept.
//
// Lines that do not decode or validate are counted as invalid, reported to
// opts.OnError and skipped; the others are kept. Events are appended with
// r.AppendEach in batches of about a thousand, so a bad event fails alone,
// while the next batch is decoded.
//
// Ingest returns a non-nil error only when it had to stop early: a read
// error on src, a failure of the store other than a rejected event, or
// ctx being done. The Stats then count what was done before it stopped.
func Ingest(ctx context.Context, r repo.Repo, src io.Reader, opts IngestOptions) (Stats, error) {
	return load(ctx, r, src, opts, repo.AppendOptions{})
}

// Import loads an export into r keeping each event's id, seq and
// created_at (repo.AppendOptions.KeepSeq), into an empty or an existing
// store. It is idempotent: events already stored are duplicates. An event
// whose seq does not follow its conversation's stored head is a conflict.
// Keys, errors and callbacks are as for Ingest.
func Import(ctx context.Context, r repo.Repo, src io.Reader, opts IngestOptions) (Stats, error) {
	return load(ctx, r, src, opts, repo.AppendOptions{KeepSeq: true})
}

// batch is a run of decoded lines on its way to the store.
type batch struct {
	evs   []events.Event
	lines []int        // lines[i] is the line of evs[i]
	bad   []*LineError // lines rejected while decoding, in line order
	err   error        // why reading stopped after this batch, if it did
}

func load(ctx context.Context, r repo.Repo, src io.Reader, opts IngestOptions, aopts repo.AppendOptions) (Stats, error) {
	var st Stats
	if err := ctx.Err(); err != nil {
		return st, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The producer decodes the next batch while this goroutine appends
	// the previous one. It owns src and the key state; it stops at its
	// next send once ctx is cancelled, so returning early never waits for
	// a blocked read of src.
	ch := make(chan *batch)
	go produce(ctx, src, aopts.KeepSeq, ch)

	for {
		var b *batch
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case b = <-ch:
		}
		if b == nil {
			return st, nil
		}
		if err := st.apply(ctx, r, b, opts, aopts); err != nil {
			return st, err
		}
		if opts.OnProgress != nil {
			opts.OnProgress(st.Read)
		}
		if b.err != nil {
			return st, b.err
		}
	}
}

// apply appends a batch and accounts for it, reporting rejected lines in
// line order. On a failure of the store it stops and returns the error,
// having counted only the lines before the failing one.
func (st *Stats) apply(ctx context.Context, r repo.Repo, b *batch, opts IngestOptions, aopts repo.AppendOptions) error {
	var items []repo.Item
	if len(b.evs) > 0 {
		items = r.AppendEach(ctx, b.evs, aopts)
		if len(items) != len(b.evs) {
			return fmt.Errorf("line %d: append: store returned %d results for %d events", b.lines[0], len(items), len(b.evs))
		}
	}
	report := func(le *LineError) {
		if opts.OnError != nil {
			opts.OnError(le)
		}
	}
	bad := b.bad
	invalid := func(le *LineError) {
		st.Read++
		st.Invalid++
		report(le)
	}
	for i, it := range items {
		line := b.lines[i]
		for len(bad) > 0 && bad[0].Line < line {
			invalid(bad[0])
			bad = bad[1:]
		}
		switch err := it.Err; {
		case err == nil && it.Outcome == repo.Duplicate:
			st.Read++
			st.Duplicates++
		case err == nil:
			st.Read++
			st.Appended++
		case errors.Is(err, repo.ErrIdempotencyConflict), errors.Is(err, repo.ErrSeqConflict):
			st.Read++
			st.Conflicts++
			report(&LineError{Line: line, Err: err})
		case errors.Is(err, events.ErrInvalid):
			invalid(&LineError{Line: line, Err: err})
		default:
			// The store failed, not the event (closed, I/O, ctx):
			// the rest of the batch failed with it.
			return fmt.Errorf("line %d: append: %w", line, err)
		}
	}
	for _, le := range bad {
		invalid(le)
	}
	return nil
}

// produce reads src into batches and sends them on ch, closing it at the
// end. A read error travels with the last batch.
func produce(ctx context.Context, src io.Reader, keepSeq bool, ch chan<- *batch) {
	rd := NewReader(src)
	var keys keyer
	b := &batch{}
	size := int64(0)
	send := func() bool {
		select {
		case ch <- b:
			b = &batch{}
			size = rd.Offset()
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		e, err := rd.Read()
		if err == io.EOF {
			break
		}
		var le *LineError
		switch {
		case errors.As(err, &le):
			b.bad = append(b.bad, le)
		case err != nil:
			b.err = err
			if send() {
				close(ch)
			}
			return
		default:
			if err := keys.prepare(&e, keepSeq); err != nil {
				b.bad = append(b.bad, &LineError{Line: rd.Line(), Err: err})
				break
			}
			b.evs = append(b.evs, e)
			b.lines = append(b.lines, rd.Line())
		}
		if len(b.evs)+len(b.bad) >= batchLines || rd.Offset()-size >= batchBytes {
			if !send() {
				return
			}
		}
	}
	if len(b.evs)+len(b.bad) > 0 && !send() {
		return
	}
	close(ch)
}

// keyer holds what the key rules need to know about earlier events of the
// input. Its maps grow with the number of distinct streams and keyless
// payloads, not with the number of events.
type keyer struct {
	deltas  map[string]int64               // conversation_id "\x00" user_request_id -> deltas seen
	keyless map[[keylessHashBytes]byte]int // derived-key hash -> keyless events seen
}

// keylessHashBytes is how much of the sha256 a derived key holds.
const keylessHashBytes = 12

// prepare validates a decoded event and gives it the keys of the package
// rules. The store assigns pos always and seq unless keepSeq.
func (k *keyer) prepare(e *events.Event, keepSeq bool) error {
	e.Pos = 0
	if !keepSeq {
		e.Seq = 0
	}
	if err := e.Validate(); err != nil {
		return err
	}
	if e.Type == events.TypeAssistantDelta {
		urid, _ := e.ExtraString("user_request_id") // Validate checked it
		if k.deltas == nil {
			k.deltas = make(map[string]int64)
		}
		sk := e.ConversationID + "\x00" + urid
		n := k.deltas[sk]
		k.deltas[sk] = n + 1
		if _, ok := e.Extra["index"]; !ok {
			e.SetExtra("index", n)
		}
		_, hasAttempt := e.Extra["attempt"]
		if e.RequestID == "" && !hasAttempt {
			index, _ := e.ExtraInt("index") // Validate checked it
			e.RequestID = "delta:" + urid + ":" + strconv.FormatInt(index, 10)
		}
	}
	if e.RequestID == "" && e.ID == "" {
		fp, err := dedupe.Of(e)
		if err != nil {
			return &events.FieldError{Field: "event", Reason: "cannot fingerprint: " + err.Error()}
		}
		h := sha256.New()
		h.Write([]byte(e.ConversationID))
		h.Write([]byte{0})
		h.Write(fp[:])
		var key [keylessHashBytes]byte
		copy(key[:], h.Sum(nil))
		if k.keyless == nil {
			k.keyless = make(map[[keylessHashBytes]byte]int)
		}
		n := k.keyless[key]
		k.keyless[key] = n + 1
		e.RequestID = "ingest:" + hex.EncodeToString(key[:]) + ":" + strconv.Itoa(n)
	}
	return nil
}
