package api

import (
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/vma/tunnel"
)

// The bodies the API answers that have no type elsewhere; the OpenAPI
// document (openapi.go) is derived from them.

// healthAnswer is GET /api/v1/health's answer: status, id and version to
// anyone, the rest with the token.
type healthAnswer struct {
	// Status is ok, or degraded while the bus is down.
	Status  string `json:"status"`
	VMAID   string `json:"vma_id"`
	Version string `json:"version"`

	UptimeSeconds *int64        `json:"uptime_seconds,omitempty"`
	PublicKey     string        `json:"public_key,omitempty"`
	Bus           *bus.Health   `json:"bus,omitempty"`
	Tunnel        *tunnelHealth `json:"tunnel,omitempty"`
}

// tunnelHealth is the SSH tunnel to the OMA, in the health answer.
type tunnelHealth struct {
	Connected  bool      `json:"connected"`
	Forwarding bool      `json:"forwarding"`
	Since      time.Time `json:"since"`
	Reconnects int       `json:"reconnects"`
	BytesIn    int64     `json:"bytes_in"`
	BytesOut   int64     `json:"bytes_out"`
	Channels   int       `json:"channels"`
	LastError  string    `json:"last_error"`
	// Connections are the tunnel's SSH connections, the primary first.
	Connections []tunnel.ConnState `json:"connections"`
	// RTTMs, MinRTTMs and KeepaliveRTTMs are round trips in milliseconds
	// (0 while unknown).
	RTTMs                      float64 `json:"rtt_ms"`
	MinRTTMs                   float64 `json:"min_rtt_ms"`
	KeepaliveRTTMs             float64 `json:"keepalive_rtt_ms"`
	BytesOutPerSecond          int64   `json:"bytes_out_per_second"`
	BytesInPerSecond           int64   `json:"bytes_in_per_second"`
	DeliveryRateBytesPerSecond int64   `json:"delivery_rate_bytes_per_second"`
	SndCwnd                    int     `json:"snd_cwnd"`
	// SndbufLimited and RwndLimited are the shares (0-1) of time TCP was
	// limited by the send buffer or the receiver's window.
	SndbufLimited float64 `json:"sndbuf_limited"`
	RwndLimited   float64 `json:"rwnd_limited"`
	NoDelay       string  `json:"no_delay"`
}

// discoverAnswer is POST /api/v1/discover's answer.
type discoverAnswer struct {
	VCenter events.VCenterRef `json:"vcenter"`
	VMs     []events.VM       `json:"vms"`
}

// replicateAnswer is POST /api/v1/replicate's answer.
type replicateAnswer struct {
	JobID string `json:"job_id"`
	// Status is accepted; State is where the job is: queued in the OMA's
	// queue, or the state it had when the request was repeated.
	Status string `json:"status"`
	State  string `json:"state"`
}
