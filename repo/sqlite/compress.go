package sqlite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/ncruces/go-sqlite3"
)

// CompressThreshold is the size in bytes above which a message payload
// (the content, body and parts_text columns) is stored compressed. Below
// it a short message has few repeats to find and the frame overhead eats
// much of the gain; chat text above it typically halves.
const CompressThreshold = 512

// ErrCorrupt is returned when a stored payload cannot be decoded: a
// compressed value whose header, stream or checksum is damaged. The event
// that holds it cannot be read.
var ErrCorrupt = errors.New("corrupt stored payload")

// A compressed value is a BLOB:
//
//	0x00             marker: no JSON text starts with NUL
//	codec            0x01 = a Zstandard frame (RFC 8878) with its checksum
//	uvarint          the uncompressed length in bytes
//	frame            the compressed bytes
//
// content and parts_text hold TEXT when plain, so there the storage type
// alone tells a compressed value; body holds JSON as a BLOB, which starts
// with '{', so there the marker does. A value is stored compressed only
// when that is smaller than storing it plain.
//
// Zstandard at its default level, not compress/flate: on chat messages
// of 0.5-4 KiB it stores as much as DEFLATE at its fastest level (49% of
// the bytes to 48%), compresses in 60% of its CPU time and decompresses
// in a quarter (reads outnumber writes: every turn re-reads the
// conversation for the model's context). Zstandard's fastest level is
// cheaper still but leaves one message in ten under 1 KiB uncompressed.
// The frame's checksum makes damage an error, never wrong text.
const (
	packMarker = 0x00
	codecZstd  = 0x01
)

// maxPackedLength bounds the uncompressed length a header may claim: far
// above any payload events.Validate lets through (1 MiB, however JSON
// escapes it), so a damaged header cannot make a read allocate without
// bound.
const maxPackedLength = 64 << 20

// The encoder and decoder are safe for concurrent use (EncodeAll,
// DecodeAll) and keep their own pools of state.
var (
	zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			panic(err) // fixed, valid options
		}
		return e
	})
	zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxPackedLength))
		if err != nil {
			panic(err) // fixed, valid options
		}
		return d
	})
)

// pack returns the stored form of v: v itself when it is at most
// CompressThreshold bytes or does not shrink, else a fresh compressed
// value. packed reports which.
func pack(v []byte) (stored []byte, packed bool) {
	if len(v) <= CompressThreshold {
		return v, false
	}
	out := make([]byte, 0, len(v)+binary.MaxVarintLen64+16)
	out = append(out, packMarker, codecZstd)
	out = binary.AppendUvarint(out, uint64(len(v)))
	out = zstdEncoder().EncodeAll(v, out)
	if len(out) >= len(v) {
		return v, false
	}
	return out, true
}

// isPacked reports whether a stored BLOB is a compressed value (a JSON
// body never starts with the marker).
func isPacked(b []byte) bool { return len(b) > 0 && b[0] == packMarker }

// packedHeader parses a compressed value's header: the uncompressed
// length and the frame.
func packedHeader(b []byte) (int, []byte, error) {
	if len(b) < 3 || b[0] != packMarker {
		return 0, nil, fmt.Errorf("%w: not a compressed value", ErrCorrupt)
	}
	if b[1] != codecZstd {
		return 0, nil, fmt.Errorf("%w: unknown codec %#x", ErrCorrupt, b[1])
	}
	n, k := binary.Uvarint(b[2:])
	if k <= 0 || n > maxPackedLength {
		return 0, nil, fmt.Errorf("%w: bad length", ErrCorrupt)
	}
	return int(n), b[2+k:], nil
}

// unpack decompresses a compressed value into a new slice. Any damage is
// an error wrapping ErrCorrupt: a bad header, a frame that fails to
// decode or to match its checksum, or a length other than the header's.
func unpack(b []byte) ([]byte, error) {
	n, frame, err := packedHeader(b)
	if err != nil {
		return nil, err
	}
	// The header's length is only a hint until the frame agrees with it.
	out, err := zstdDecoder().DecodeAll(frame, make([]byte, 0, min(n, 1<<20)))
	if err != nil {
		return nil, fmt.Errorf("%w: %d-byte value: %w", ErrCorrupt, n, err)
	}
	if len(out) != n {
		return nil, fmt.Errorf("%w: %d bytes where the header says %d", ErrCorrupt, len(out), n)
	}
	return out, nil
}

// unpackText decodes a text column (content, parts_text) of type typ:
// TEXT is plain, a BLOB compressed.
func unpackText(typ sqlite3.Datatype, raw []byte) (string, error) {
	switch typ {
	case sqlite3.TEXT:
		return string(raw), nil
	case sqlite3.BLOB:
		b, err := unpack(raw)
		return string(b), err
	}
	// A TEXT column converts numbers to text, so this is never stored.
	return "", fmt.Errorf("%w: %s in a text column", ErrCorrupt, typ)
}

// unpackBody decodes the body column: JSON, or a compressed value. The
// result may alias raw.
func unpackBody(raw []byte) ([]byte, error) {
	if isPacked(raw) {
		return unpack(raw)
	}
	return raw, nil
}

// rawLength is the uncompressed length of a stored value: its own length
// unless it is a compressed BLOB.
func rawLength(typ sqlite3.Datatype, raw []byte) (int64, error) {
	if typ != sqlite3.BLOB || !isPacked(raw) {
		return int64(len(raw)), nil
	}
	n, _, err := packedHeader(raw)
	return int64(n), err
}

// SQL functions the schema uses, registered on every connection: the
// search index reads message text through chatlog_inflate, so its view
// returns exactly the text that was indexed whichever way it is stored.
const (
	fnInflate   = "chatlog_inflate"
	fnRawLength = "chatlog_raw_length"
)

// RegisterFunctions registers on db the SQL functions chatlog's schema
// uses, for a connection opened on a chatlog database without Open (the
// sqlite3 shell cannot read the search view without them):
//
//   - chatlog_inflate(x): x decompressed (as TEXT) when it is a compressed
//     value, else x unchanged; an error for a damaged value.
//   - chatlog_raw_length(x): the uncompressed length of x in bytes, NULL
//     for NULL.
//
// Both are deterministic and innocuous (safe in views and indexes).
func RegisterFunctions(db *sqlite3.Conn) error {
	const flags = sqlite3.DETERMINISTIC | sqlite3.INNOCUOUS
	if err := db.CreateFunction(fnInflate, 1, flags, inflateFunc); err != nil {
		return err
	}
	return db.CreateFunction(fnRawLength, 1, flags, rawLengthFunc)
}

func inflateFunc(ctx sqlite3.Context, arg ...sqlite3.Value) { inflateCached(nil, ctx, arg...) }

// inflateCached is chatlog_inflate answering from packed (compressed
// value to its text) when it holds the value: the writer indexes for
// search the messages it has just compressed, and already has their text.
func inflateCached(packed map[string]string, ctx sqlite3.Context, arg ...sqlite3.Value) {
	v := arg[0]
	if v.Type() != sqlite3.BLOB {
		ctx.ResultValue(v)
		return
	}
	raw := v.RawBlob()
	if !isPacked(raw) {
		ctx.ResultValue(v)
		return
	}
	if text, ok := packed[string(raw)]; ok {
		ctx.ResultText(text)
		return
	}
	b, err := unpack(raw)
	if err != nil {
		ctx.ResultError(err)
		return
	}
	ctx.ResultRawText(b)
}

func rawLengthFunc(ctx sqlite3.Context, arg ...sqlite3.Value) {
	v := arg[0]
	var raw []byte
	switch v.Type() {
	case sqlite3.NULL:
		ctx.ResultNull()
		return
	case sqlite3.BLOB:
		raw = v.RawBlob()
	default:
		raw = v.RawText()
	}
	n, err := rawLength(v.Type(), raw)
	if err != nil {
		ctx.ResultError(err)
		return
	}
	ctx.ResultInt64(n)
}
