package events

import (
	"time"

	"github.com/godwit/godwit/events/subject"
)

// TunnelOutage records that a VMA's SSH connection to the OMA was lost and
// made again. The connection carries the bus too, so the VMA publishes it
// once it is back: an outage is known on the OMA side only after it ended.
type TunnelOutage struct {
	VMAID string `json:"vma_id"`
	// LostAt is when the VMA found the connection lost (its keepalive went
	// unanswered, or the connection closed); RestoredAt is when its next
	// connection was made. Both are the VMA's clock.
	LostAt     time.Time `json:"lost_at"`
	RestoredAt time.Time `json:"restored_at"`
	// DownSeconds is RestoredAt - LostAt.
	DownSeconds float64 `json:"down_seconds"`
	// Cause is why the connection was lost, as the SSH client saw it.
	Cause string `json:"cause"`
	// Attempts counts the connections tried to restore it, the one that
	// worked included.
	Attempts int `json:"attempts"`
	// Reconnects counts the connections the VMA made after its first one
	// since it started, this one included.
	Reconnects int `json:"reconnects"`
}

// EventType implements Payload.
func (*TunnelOutage) EventType() string { return TypeTunnelOutage }

// NATSSubject implements Payload.
func (o *TunnelOutage) NATSSubject() (string, error) { return subject.Tunnel(o.VMAID) }

// EventSubject implements Payload: the VMA id.
func (o *TunnelOutage) EventSubject() string { return o.VMAID }
