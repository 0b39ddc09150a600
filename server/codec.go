package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/chatlog/chatlog/events"
	"github.com/chatlog/chatlog/repo"
)

// readBody reads the request body, at most Options.MaxBody bytes; a
// longer one is an *http.MaxBytesError (413).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := s.opts.MaxBody
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit)); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, err
		}
		return nil, badRequest("", "reading the request body: %v", err)
	}
	return buf.Bytes(), nil
}

// decodeBody decodes a JSON object into v, a pointer to a request struct.
// Members that are not fields of v are refused (400 naming the member),
// so a misspelt option is never silently ignored.
func decodeBody(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return badRequest("", "the request body is empty; send a JSON object")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return jsonError(err)
	}
	if members == nil {
		return badRequest("", "the request body must be a JSON object")
	}
	known := fieldsOf(reflect.TypeOf(v).Elem())
	for name := range members {
		if !slices.Contains(known, name) {
			return badRequest(name, "is not a member of this request (it takes %s)", strings.Join(known, ", "))
		}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return jsonError(err)
	}
	return nil
}

// jsonError turns an encoding/json error into a 400 naming the field.
func jsonError(err error) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntax):
		return badRequest("", "malformed JSON at byte %d: %v", syntax.Offset, err)
	case errors.As(err, &typ) && typ.Field != "":
		return badRequest(typ.Field, "must be a JSON %s, not %s", jsonKind(typ.Type), typ.Value)
	case errors.As(err, &typ):
		return badRequest("", "the request body must be a JSON object, not %s", typ.Value)
	}
	return badRequest("", "%v", err)
}

// jsonKind names the JSON type that decodes into t.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	}
	return "object"
}

var fieldCache sync.Map // reflect.Type -> []string

// fieldsOf lists the JSON member names of a struct type, sorted.
func fieldsOf(t reflect.Type) []string {
	if v, ok := fieldCache.Load(t); ok {
		return v.([]string)
	}
	var names []string
	for f := range t.Fields() {
		if f.Anonymous && f.Tag.Get("json") == "" && f.Type.Kind() == reflect.Struct {
			// An embedded struct's members are the request's own.
			names = append(names, fieldsOf(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	fieldCache.Store(t, names)
	return names
}

// writeJSON writes v as the response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	return writeRaw(w, status, b)
}

// writeRaw writes an encoded JSON document as the response.
func writeRaw(w http.ResponseWriter, status int, b []byte) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, err := w.Write(append(b, '\n'))
	return err
}

// writeResult answers a write endpoint: 201 with the stored event when
// it was written, 200 with Idempotent-Replayed: true when it was a
// retry.
func writeResult(w http.ResponseWriter, res repo.Result) error {
	b, err := res.Event.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	status := http.StatusCreated
	if res.Duplicate() {
		w.Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	return writeRaw(w, status, b)
}

// requestKey settles an idempotency key given in the body, the
// Idempotency-Key header, or both (then they must agree).
func requestKey(r *http.Request, body string) (string, error) {
	header := r.Header.Get("Idempotency-Key")
	switch {
	case header == "":
		return body, nil
	case body == "":
		return header, nil
	case header != body:
		return "", badRequest("request_id", "%q differs from the Idempotency-Key header %q; send one key, or the same in both", body, header)
	}
	return body, nil
}

// count reads a non-negative integer query parameter; absent or empty
// is 0.
func count(q url.Values, name string) (int64, error) {
	s := q.Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest(name, "must be a non-negative integer, got %q", s)
	}
	return n, nil
}

// intCount is count for parameters held in an int.
func intCount(q url.Values, name string) (int, error) {
	n, err := count(q, name)
	if err == nil && n > 1<<31-1 {
		return 0, badRequest(name, "is too large: %d", n)
	}
	return int(n), err
}

// wantsEventStream reports whether the client asks for server-sent
// events (Accept: text/event-stream).
func wantsEventStream(r *http.Request) bool {
	for _, accept := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(accept, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && mt == "text/event-stream" {
				return true
			}
		}
	}
	return false
}

// appendEvents encodes evs as a JSON array after b.
func appendEvents(b []byte, evs []events.Event) ([]byte, error) {
	b = append(b, '[')
	for i, e := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		eb, err := e.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("encode event seq %d: %w", e.Seq, err)
		}
		b = append(b, eb...)
	}
	return append(b, ']'), nil
}
