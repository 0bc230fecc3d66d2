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
	Op     string // "read", "write", "write zeroes", "extents", "verify read" or "verify digests"
	Offset int64
	Err    error
}

// Error returns "copy at offset N: op: cause".
func (e *Error) Error() string {
	return fmt.Sprintf("copy at offset %d: %s: %v", e.Offset, e.Op, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrMismatch is matched (errors.Is) by a *VerifyError: the destination,
// read back, holds other bytes than were copied to it.
var ErrMismatch = errors.New("destination differs from the source")

// VerifyError is Copy's error when verification finds that the block
// [Offset, Offset+Length) of the destination does not hold what was read
// from the source: the first such block in offset order. It is not a read
// error; a failed read back is an *Error with Op "verify read".
type VerifyError struct {
	Offset, Length int64
}

// Error returns "verify: bytes at offset N (+len) differ from the source".
func (e *VerifyError) Error() string {
	return fmt.Sprintf("verify: bytes at offset %d (+%d) differ from the source", e.Offset, e.Length)
}

// Is reports whether target is ErrMismatch.
func (e *VerifyError) Is(target error) bool { return target == ErrMismatch }

// ErrNoHasher is returned (wrapped) by a Hasher when nobody can compute the
// destination's digests: with it for the first blocks, Copy verifies by
// reading back instead.
var ErrNoHasher = errors.New("no hasher answers")
