package logfile

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"iter"

	"github.com/chatlog/chatlog/events"
)

// Export writes the events of seq to w as JSONL, one compact JSON object
// per line, in the order seq yields them, and returns how many it wrote.
// The output is what Import reads back, with ids, seqs and created_at.
//
// It stops at the first error from seq, from w or from ctx and returns it
// with the count of events written before; the events counted have been
// written to w unless the error came from w itself.
func Export(ctx context.Context, w io.Writer, seq iter.Seq2[events.Event, error]) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	n := 0
	// stop flushes the events written so far, so the output is a whole
	// prefix of the log, and returns err.
	stop := func(err error) (int, error) {
		if ferr := bw.Flush(); ferr != nil {
			return n, fmt.Errorf("export: %w", ferr)
		}
		return n, err
	}
	for e, err := range seq {
		if err != nil {
			return stop(fmt.Errorf("export: read events: %w", err))
		}
		if err := ctx.Err(); err != nil {
			return stop(err)
		}
		b, err := e.MarshalJSON()
		if err != nil {
			return stop(fmt.Errorf("export: encode event %s (conversation %q, seq %d): %w", e.ID, e.ConversationID, e.Seq, err))
		}
		b = append(b, '\n')
		if _, err := bw.Write(b); err != nil {
			return n, fmt.Errorf("export: %w", err)
		}
		n++
	}
	return stop(nil)
}
