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
	// Code classifies the failure when the responder said (CodeNotFound,
	// CodeConflict); empty otherwise.
	Code string
}

// Codes a responder's error may carry to the requester (see Coded).
const (
	CodeNotFound = "not_found" // what the request names does not exist
	CodeConflict = "conflict"  // it clashes with the current state
	CodeMoved    = "moved"     // the job is another VMA's now: the asker must let it go
)

// Coded is implemented by a Responder's error that classifies itself for
// the requester: Serve sends RemoteCode along, and Request puts it in
// RemoteError.Code.
type Coded interface {
	RemoteCode() string
}

// Error implements error.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("request %s: responder failed: %s", e.Subject, e.Message)
}
