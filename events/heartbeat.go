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
	// Load is what the VMA is doing as it sends the heartbeat; absent
	// from VMAs older than it.
	Load *VMALoad `json:"load,omitempty"`
}

// VMALoad is a VMA's capacity and what it holds: the jobs it runs at
// most at once (-max-jobs), runs and queues, and the bytes per second its
// copies write now.
type VMALoad struct {
	MaxJobs        int   `json:"max_jobs"`
	Running        int   `json:"running"`
	Queued         int   `json:"queued"`
	BytesPerSecond int64 `json:"bytes_per_second"`
}

// EventType implements Payload.
func (*Heartbeat) EventType() string { return TypeHeartbeat }

// NATSSubject implements Payload.
func (h *Heartbeat) NATSSubject() (string, error) { return subject.Heartbeat(h.VMAID) }

// EventSubject implements Payload: the VMA id.
func (h *Heartbeat) EventSubject() string { return h.VMAID }
