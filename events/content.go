package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"strings"
)

// Content is a message body: plain text, or an array of typed parts
// (text, images, files, as the providers define them).
type Content struct {
	// Text is the body when Parts is nil.
	Text string
	// Parts, when non-nil, is the body as an array of parts; Text is then
	// unused.
	Parts []Part
}

// Part is one element of a multi-part content array. Type and Text are
// decoded; every other field is kept verbatim in Fields so parts the
// providers add later round-trip untouched.
type Part struct {
	// Type is the part type: "text", "image_url", "image", "file", ...
	Type string
	// Text is the text of a "text" part.
	Text string
	// Fields holds the part's other members as raw JSON, keyed by name.
	Fields map[string]json.RawMessage
}

// NewText returns text content.
func NewText(s string) *Content { return &Content{Text: s} }

// NewParts returns multi-part content.
func NewParts(parts ...Part) *Content {
	if parts == nil {
		parts = []Part{}
	}
	return &Content{Parts: parts}
}

// TextPart returns a text part.
func TextPart(s string) Part { return Part{Type: "text", Text: s} }

// IsParts reports whether the content is an array of parts.
func (c *Content) IsParts() bool { return c != nil && c.Parts != nil }

// PlainText is the text of the content: the string, or the text of every
// text part joined with newlines. Nil content is "".
func (c *Content) PlainText() string {
	if c == nil {
		return ""
	}
	if c.Parts == nil {
		return c.Text
	}
	var b strings.Builder
	for _, p := range c.Parts {
		if p.Type != "text" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.Text)
	}
	return b.String()
}

func (c Content) clone() Content {
	if c.Parts != nil {
		parts := make([]Part, len(c.Parts))
		for i, p := range c.Parts {
			if p.Fields != nil {
				p.Fields = maps.Clone(p.Fields)
			}
			parts[i] = p
		}
		c.Parts = parts
	}
	return c
}

// MarshalJSON writes a string or an array of parts.
func (c Content) MarshalJSON() ([]byte, error) {
	if c.Parts == nil {
		return json.Marshal(c.Text)
	}
	return json.Marshal(c.Parts)
}

// UnmarshalJSON reads a string or an array of parts.
func (c *Content) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		c.Parts = nil
		return json.Unmarshal(b, &c.Text)
	case len(b) > 0 && b[0] == '[':
		var parts []Part
		if err := json.Unmarshal(b, &parts); err != nil {
			return err
		}
		if parts == nil {
			parts = []Part{}
		}
		c.Text, c.Parts = "", parts
		return nil
	}
	return errors.New("content must be a string or an array of parts")
}

// MarshalJSON writes the part as one object, members in key order (type,
// text and the other fields alike).
func (p Part) MarshalJSON() ([]byte, error) {
	m := make(map[string]json.RawMessage, len(p.Fields)+2)
	maps.Copy(m, p.Fields)
	t, err := json.Marshal(p.Type)
	if err != nil {
		return nil, err
	}
	m["type"] = t
	if p.Text != "" || p.Type == "text" {
		t, err := json.Marshal(p.Text)
		if err != nil {
			return nil, err
		}
		m["text"] = t
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads a part object; it must have a string "type".
func (p *Part) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return errors.New("a content part must be a JSON object")
	}
	*p = Part{}
	t, ok := m["type"]
	if !ok {
		return errors.New(`a content part needs a "type"`)
	}
	if err := json.Unmarshal(t, &p.Type); err != nil {
		return errors.New(`a content part's "type" must be a string`)
	}
	delete(m, "type")
	if t, ok := m["text"]; ok {
		if err := json.Unmarshal(t, &p.Text); err != nil {
			return errors.New(`a content part's "text" must be a string`)
		}
		delete(m, "text")
	}
	for k, v := range m {
		// Kept verbatim up to whitespace and escaping: the form the
		// encoder writes, so parts round-trip byte for byte.
		c, err := canonicalJSON(v)
		if err != nil {
			return err
		}
		m[k] = c
	}
	if len(m) > 0 {
		p.Fields = m
	}
	return nil
}
