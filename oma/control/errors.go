package control

import (
	"errors"
	"fmt"

	"github.com/godwit/godwit/bus"
)

// Kind classifies an Error for the REST API.
type Kind int

// Error kinds.
const (
	Invalid      Kind = iota + 1 // the request is malformed (400)
	NotFound                     // what it names does not exist (404)
	Conflict                     // it clashes with the current state (409)
	Unavailable                  // a resource is exhausted (503)
	Timeout                      // the VMA did not answer in time (504)
	Upstream                     // the VMA or vCenter failed (502)
	Unauthorized                 // vCenter refused the credentials (401)
	Limit                        // the caller is at a limit, such as its pending jobs (429)
)

// Error is a failure the caller can act on: Field names the input at fault.
type Error struct {
	Kind  Kind
	Field string
	Msg   string
	Err   error
}

// Error implements error.
func (e *Error) Error() string {
	s := e.Msg
	if e.Field != "" {
		s = e.Field + ": " + s
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// RemoteCode implements bus.Coded, so that a VMA asking through the bus
// learns what kind of failure it got.
func (e *Error) RemoteCode() string {
	switch e.Kind {
	case NotFound:
		return bus.CodeNotFound
	case Conflict:
		return bus.CodeConflict
	}
	return ""
}

func errorf(kind Kind, field, format string, args ...any) *Error {
	return &Error{Kind: kind, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of err, or 0 when it is not an *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}
