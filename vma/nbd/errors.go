package nbd

import (
	"errors"
	"fmt"
)

// Errno is an error number of the NBD protocol. The named values are the ones the protocol defines;
// errors.Is(err, EIO) reports whether err is an [*Error] carrying EIO.
type Errno uint32

// The NBD error values.
const (
	EPERM     Errno = 1   // EPERM: operation not permitted.
	EIO       Errno = 5   // EIO: input/output error.
	ENOMEM    Errno = 12  // ENOMEM: cannot allocate memory.
	EINVAL    Errno = 22  // EINVAL: invalid argument.
	ENOSPC    Errno = 28  // ENOSPC: no space left on device.
	EOVERFLOW Errno = 75  // EOVERFLOW: value too large.
	ENOTSUP   Errno = 95  // ENOTSUP: operation not supported.
	ESHUTDOWN Errno = 108 // ESHUTDOWN: server is shutting down.
)

// Error returns the errno's name, such as "EIO", or "errno 42" for a number the protocol does not name.
func (e Errno) Error() string {
	switch e {
	case EPERM:
		return "EPERM"
	case EIO:
		return "EIO"
	case ENOMEM:
		return "ENOMEM"
	case EINVAL:
		return "EINVAL"
	case ENOSPC:
		return "ENOSPC"
	case EOVERFLOW:
		return "EOVERFLOW"
	case ENOTSUP:
		return "ENOTSUP"
	case ESHUTDOWN:
		return "ESHUTDOWN"
	}
	return "errno " + itoa(uint64(e))
}

// Error is an error the server reported for one request: the command, the range it covered (for an
// NBD_REPLY_TYPE_ERROR_OFFSET chunk, from the offset the server named to the request's end), the NBD
// error number and the server's message, if it sent one.
type Error struct {
	Cmd            string // "read", "write", "write zeroes", "trim", "flush", "block status"
	Offset, Length int64
	Errno          uint32
	Msg            string // the server's message; often empty
}

// Error reads like "nbd write at 1048576 (+65536): EIO", followed by the server's message if any.
func (e *Error) Error() string {
	s := fmt.Sprintf("nbd %s at %d (+%d): %v", e.Cmd, e.Offset, e.Length, Errno(e.Errno))
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// Is reports whether target is the [Errno] e carries, so errors.Is(err, nbd.ENOSPC) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(Errno)
	return ok && uint32(t) == e.Errno
}

var (
	// ErrClosed is returned by calls on a closed client, and fails the requests in flight at Close.
	ErrClosed = errors.New("nbd: client closed")
	// ErrProtocol is wrapped by the errors of a server that breaks the protocol; the connection is
	// failed with it.
	ErrProtocol = errors.New("nbd: protocol violation")
	// ErrUnsupported is wrapped when the export does not offer what a call needs (trim, write zeroes,
	// flush, FUA, block status), or is read-only and the call would write.
	ErrUnsupported = errors.New("nbd: not supported by the export")
	// ErrRange is wrapped when a call's range is negative or lies beyond the export's size.
	ErrRange = errors.New("nbd: range outside the export")
)

// protoErr wraps ErrProtocol with what was wrong.
func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}
