// Package prepare completes an event for appending, the same way in every
// backend: it validates it, fills in what the store assigns (id,
// created_at, schema version, implied role), encodes its storage form and
// computes its payload fingerprint. Backends run it on the caller's
// goroutine, so their writers only write.
package prepare

import (
	"fmt"
	"time"

	"github.com/chatlog/chatlog/dedupe"
	"github.com/chatlog/chatlog/events"
)

// Event is an event ready to be written.
type Event struct {
	// Event is the event as it will be stored (Seq and Pos zero unless
	// kept, see Complete).
	Event events.Event
	// CallerID is set when the caller supplied the id: the store
	// deduplicates on it too.
	CallerID bool
	// Stored is the event's storage form.
	Stored events.Stored
	// Fingerprint decides duplicate against conflict for a reused key.
	Fingerprint dedupe.Fingerprint
}

// Complete validates and completes e. With keepSeq (an import keeping
// ids, seqs and timestamps), the id, a positive seq and created_at are
// required; otherwise the caller's seq is dropped for the store to
// assign. now stamps created_at when missing and mints the id.
func Complete(e events.Event, keepSeq bool, now time.Time) (Event, error) {
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	if keepSeq {
		var errs []*events.FieldError
		if e.ID == "" {
			errs = append(errs, &events.FieldError{Field: "id", Reason: "is required when importing with kept seqs"})
		}
		if e.Seq <= 0 {
			errs = append(errs, &events.FieldError{Field: "seq", Reason: "must be positive when importing with kept seqs"})
		}
		if e.CreatedAt.IsZero() {
			errs = append(errs, &events.FieldError{Field: "created_at", Reason: "is required when importing with kept seqs"})
		}
		if errs != nil {
			return Event{}, &events.ValidationError{Fields: errs}
		}
	} else {
		e.Seq = 0
	}
	e.Pos = 0
	if e.CreatedAt.IsZero() {
		e.CreatedAt = now
	}
	e.CreatedAt = e.CreatedAt.UTC()
	p := Event{Event: e, CallerID: e.ID != ""}
	if !p.CallerID {
		p.Event.ID = events.NewID(now)
	}
	p.Event.SchemaVersion = events.CurrentSchemaVersion
	if p.Event.Role == "" {
		p.Event.Role = p.Event.Type.ImpliedRole()
	}
	var err error
	if p.Stored, err = p.Event.EncodeStored(); err != nil {
		return Event{}, err
	}
	if p.Fingerprint, err = dedupe.OfEncoded(&p.Event, p.Stored.ExtraJSON); err != nil {
		return Event{}, fmt.Errorf("fingerprint: %w", err)
	}
	return p, nil
}
