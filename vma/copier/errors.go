package copier

import (
	"errors"
	"fmt"
)

// ErrConfig is wrapped by Copy's errors about its arguments: a bad Config,
// areas that are unsorted, overlap, or reach past the source's end.
var ErrConfig = errors.New("bad copy arguments")

// Error is an error of one request of a copy: which operation, at which
// offset of the source (and destination), and why.
type Error struct {
	Op     string // "read", "write", "write zeroes" or "extents"
	Offset int64
	Err    error
}

// Error returns "copy at offset N: op: cause".
func (e *Error) Error() string {
	return fmt.Sprintf("copy at offset %d: %s: %v", e.Offset, e.Op, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }
