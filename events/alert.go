package events

import "github.com/godwit/godwit/events/subject"

// Stream alert levels.
const (
	// AlertWarning: the stream passed the alert threshold of a limit.
	AlertWarning = "warning"
	// AlertCleared: the stream is back under the threshold.
	AlertCleared = "cleared"
)

// StreamAlert is the OMA's alert that a JetStream stream nears its limits
// (bytes or messages) or is back under them. A queue stream (COMMANDS,
// DISCOVERY) that reaches a limit refuses new messages, so the operator
// must act before: raise the limit, or find who floods it.
type StreamAlert struct {
	Stream string `json:"stream"`
	Level  string `json:"level"`
	// Bytes and Msgs are what the stream holds; MaxBytes and MaxMsgs its
	// limits (-1: none).
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"max_bytes"`
	Msgs     int64 `json:"msgs"`
	MaxMsgs  int64 `json:"max_msgs"`
	// Percent is the fuller of the two, in percent of its limit.
	Percent float64 `json:"percent"`
	// DiscardNew is true when the stream refuses messages once full,
	// false when it drops its oldest.
	DiscardNew bool `json:"discard_new"`
}

// EventType implements Payload.
func (*StreamAlert) EventType() string { return TypeStreamAlert }

// NATSSubject implements Payload.
func (a *StreamAlert) NATSSubject() (string, error) { return subject.StreamAlert(a.Stream) }

// EventSubject implements Payload: the stream's name.
func (a *StreamAlert) EventSubject() string { return a.Stream }
