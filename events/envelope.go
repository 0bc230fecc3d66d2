package events

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SpecVersion is the CloudEvents version of every envelope.
const SpecVersion = "1.0"

// ContentType is the datacontenttype of every envelope.
const ContentType = "application/json"

// Payload is implemented by every event payload.
type Payload interface {
	// EventType returns the versioned CloudEvents type.
	EventType() string
	// NATSSubject returns the NATS subject the event is published on. It
	// fails when an id in the payload cannot be a subject token.
	NATSSubject() (string, error)
	// EventSubject returns the CloudEvents subject: the entity the event is
	// about, such as a job id or a discovery request id.
	EventSubject() string
}

// Event is a CloudEvents 1.0 envelope in structured JSON mode.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// ErrTypeMismatch is returned by Decode when the envelope's type is not the
// payload's.
var ErrTypeMismatch = errors.New("event type mismatch")

// New wraps p in an envelope from source (a URI reference such as
// "/godwit/vma/vma-1") stamped with now and a new random id. It fails when
// a payload id cannot be a subject token or p does not encode.
func New(source string, p Payload, now time.Time) (Event, error) {
	if source == "" {
		return Event{}, errors.New("new event: empty source")
	}
	if _, err := p.NATSSubject(); err != nil {
		return Event{}, fmt.Errorf("new %s event: %w", p.EventType(), err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s: %w", p.EventType(), err)
	}
	return Event{
		SpecVersion:     SpecVersion,
		ID:              NewID(),
		Source:          source,
		Type:            p.EventType(),
		Subject:         p.EventSubject(),
		Time:            now.UTC(),
		DataContentType: ContentType,
		Data:            data,
	}, nil
}

// Decode decodes the event's data into p, which must be of the event's type.
func (e Event) Decode(p Payload) error {
	if e.Type != p.EventType() {
		return fmt.Errorf("decode %s into %s: %w", e.Type, p.EventType(), ErrTypeMismatch)
	}
	if err := json.Unmarshal(e.Data, p); err != nil {
		return fmt.Errorf("decode %s data: %w", e.Type, err)
	}
	return nil
}

// NewID returns a random (version 4) UUID.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
