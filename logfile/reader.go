package logfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// MaxLineBytes is the longest line a Reader accepts: twice the largest
// event payload, which leaves room for the JSON around it and for escaping.
const MaxLineBytes = 2 * events.MaxPayloadBytes

// readBufferSize is the Reader's buffer; longer lines are assembled from
// several reads, up to MaxLineBytes.
const readBufferSize = 64 << 10

// LineError reports a line of a log that was rejected: it does not decode,
// the event is invalid, or the store refused it. Err is the cause, often an
// *events.FieldError or *events.ValidationError (match them with errors.As
// or errors.Is(err, events.ErrInvalid)) or a *repo.ConflictError.
type LineError struct {
	// Line is the 1-based line number in the input.
	Line int
	// Err is why the line was rejected.
	Err error
}

// Error returns "line N: field: reason".
func (e *LineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason()) }

// Unwrap returns the cause.
func (e *LineError) Unwrap() error { return e.Err }

// Reason is the error without its line number, naming the field at fault
// where one is known: "seq: must be an integer",
// "content: is required for a user_message; role: ...",
// "request_id: idempotency conflict: ...".
func (e *LineError) Reason() string {
	var (
		ve  *events.ValidationError
		fe  *events.FieldError
		ce  *repo.ConflictError
		sce *repo.SeqConflictError
	)
	switch {
	case errors.As(e.Err, &ve) && len(ve.Fields) > 0:
		parts := make([]string, len(ve.Fields))
		for i, f := range ve.Fields {
			parts[i] = f.Error()
		}
		return strings.Join(parts, "; ")
	case errors.As(e.Err, &fe):
		return fe.Error()
	case errors.As(e.Err, &ce):
		if strings.HasPrefix(ce.Key, "id:") {
			return "id: " + ce.Error()
		}
		return "request_id: " + ce.Error()
	case errors.As(e.Err, &sce):
		return "seq: " + sce.Error()
	case e.Err == nil:
		return "unknown error"
	}
	return e.Err.Error()
}

// Reader reads events from a JSONL log one line at a time, in constant
// memory: a line's buffer is reused for the next. It is not safe for
// concurrent use.
type Reader struct {
	br   *bufio.Reader
	buf  []byte
	line int
	n    int64
	err  error // sticky read error
}

// NewReader returns a Reader reading from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, readBufferSize)}
}

// Read returns the next event, decoded with events.Decode (upcast, not
// validated). Blank lines are skipped.
//
// A line that does not decode, or is longer than MaxLineBytes, yields a
// *LineError and the reader moves on: the next Read returns the next line.
// At the end of the input Read returns io.EOF. Any other error is from the
// underlying reader, wrapped with the line it stopped at; it is returned
// again by every later Read.
func (r *Reader) Read() (events.Event, error) {
	for {
		line, err := r.next()
		if err != nil {
			return events.Event{}, err
		}
		if line == nil {
			continue // blank
		}
		e, err := events.Decode(line)
		if err != nil {
			return events.Event{}, &LineError{Line: r.line, Err: err}
		}
		return e, nil
	}
}

// Line is the number of the line the last Read returned or stopped at.
func (r *Reader) Line() int { return r.line }

// Offset is how many bytes of the input the Reader has consumed so far,
// including what it holds in its buffer.
func (r *Reader) Offset() int64 { return r.n }

// next reads one physical line. It returns nil for a blank line, a
// *LineError for a line over the limit (consumed in full), io.EOF at the
// end, or the sticky read error.
func (r *Reader) next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	r.buf = r.buf[:0]
	tooLong := false
	size := 0 // bytes of the line, its newline excluded
	for {
		chunk, err := r.br.ReadSlice('\n')
		r.n += int64(len(chunk))
		size += len(chunk)
		if !tooLong {
			if len(r.buf)+len(chunk) > MaxLineBytes+2 { // room for "\r\n"
				tooLong = true
				r.buf = r.buf[:0]
			} else {
				r.buf = append(r.buf, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == nil {
			size-- // the newline
		}
		if err == io.EOF {
			if size == 0 {
				r.err = io.EOF
				return nil, io.EOF
			}
			// The last line has no newline; report it now and EOF next.
			r.err = io.EOF
		} else if err != nil {
			r.line++
			r.err = fmt.Errorf("read line %d: %w", r.line, err)
			return nil, r.err
		}
		break
	}
	r.line++
	if tooLong {
		return nil, &LineError{Line: r.line, Err: &events.FieldError{
			Field:  "event",
			Reason: fmt.Sprintf("line is %d bytes, over the limit of %d", size, MaxLineBytes),
		}}
	}
	line := r.buf
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if r.line == 1 {
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
	}
	if len(bytes.TrimSpace(line)) == 0 {
		return nil, nil
	}
	if len(line) > MaxLineBytes {
		return nil, &LineError{Line: r.line, Err: &events.FieldError{
			Field:  "event",
			Reason: fmt.Sprintf("line is %d bytes, over the limit of %d", len(line), MaxLineBytes),
		}}
	}
	return line, nil
}
