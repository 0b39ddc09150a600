package events_test

import (
	"errors"
	"fmt"

	"github.com/chatlog/chatlog/events"
)

func ExampleDecode() {
	// A streamed chunk in the legacy (schema version 1) format.
	line := `{"conversation_id":"c1","type":"meta","content":"Hel",` +
		`"extra":{"kind":"assistant_delta","user_request_id":"u1","index":0,"request_id":"delta:u1:0"}}`
	e, err := events.Decode([]byte(line))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(e.Type, e.Role, e.SchemaVersion, e.RequestID, e.Text())
	if err := e.Validate(); err == nil {
		fmt.Println("valid")
	}
	out, _ := e.MarshalJSON()
	fmt.Println(string(out))

	// A malformed line names the offending field.
	_, err = events.Decode([]byte(`{"conversation_id":"c1","type":"user_message","seq":"abc"}`))
	var fe *events.FieldError
	if errors.As(err, &fe) {
		fmt.Println(fe.Field, errors.Is(err, events.ErrInvalid))
	}
	// Output:
	// assistant_delta assistant 2 delta:u1:0 Hel
	// valid
	// {"conversation_id":"c1","type":"assistant_delta","schema_version":2,"role":"assistant","content":"Hel","request_id":"delta:u1:0","extra":{"index":0,"request_id":"delta:u1:0","user_request_id":"u1"}}
	// seq true
}
