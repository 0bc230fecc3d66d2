package events

import (
	"time"

	"github.com/godwit/godwit/events/subject"
)

// Heartbeat is a VMA's periodic announcement of itself.
type Heartbeat struct {
	VMAID   string `json:"vma_id"`
	Version string `json:"version"`
	// PublicKey is the standard base64 of the VMA's X25519 key, which
	// secrets are sealed to.
	PublicKey     string    `json:"public_key"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds int64     `json:"uptime_seconds"`
}

// EventType implements Payload.
func (*Heartbeat) EventType() string { return TypeHeartbeat }

// NATSSubject implements Payload.
func (h *Heartbeat) NATSSubject() (string, error) { return subject.Heartbeat(h.VMAID) }

// EventSubject implements Payload: the VMA id.
func (h *Heartbeat) EventSubject() string { return h.VMAID }
