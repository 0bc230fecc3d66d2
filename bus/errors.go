package bus

import (
	"errors"
	"fmt"
)

// ErrPoison, wrapped by a Handler's error, marks a message that will never
// succeed: it is terminated instead of redelivered.
var ErrPoison = errors.New("poison message")

// ErrNoResponders is returned by Request when nobody serves the subject.
var ErrNoResponders = errors.New("no responders")

// RemoteError is returned by Request when the responder failed.
type RemoteError struct {
	Subject string
	Message string
}

// Error implements error.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("request %s: responder failed: %s", e.Subject, e.Message)
}
