package events

import (
	"reflect"
	"testing"
)

// FuzzParseFlatObject: whenever the fast parser accepts an input, it
// returns exactly what the full decoder does.
func FuzzParseFlatObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"b"}`, `{"attempt":1,"index":22,"user_request_id":"u"}`, `{"x":-1.5e3,"y":true,"z":null}`,
		`{"a":{"b":1}}`, `{"a":"\\u00e9"}`, `{"a":1,"a":2}`, `{"a":01}`, `{"a" : 1}`, `{"a":tru}`, `{"a":"b",}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := parseFlatObject(b)
		if !ok {
			return
		}
		want, err := decodeObject(b)
		if err != nil {
			t.Fatalf("parseFlatObject(%q) accepted what the decoder refuses: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("parseFlatObject(%q) = %#v, decoder %#v", b, got, want)
		}
	})
}
