package tunnel

import (
	"errors"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
)

// remoteErrnos are the errors an OpenSSH sshd names, by their strerror
// text, when it cannot connect on the VMA's behalf.
var remoteErrnos = []syscall.Errno{syscall.ECONNREFUSED, syscall.ETIMEDOUT, syscall.EHOSTUNREACH,
	syscall.ENETUNREACH, syscall.ECONNRESET}

// channelError translates a refused direct-tcpip channel at the boundary:
// when the OMA's sshd could not connect on the VMA's behalf (reason
// ConnectionFailed, with strerror text such as "Connection refused"), the
// error also wraps the matching syscall.Errno, so a caller tells "nothing
// listens there now" (errors.Is(err, syscall.ECONNREFUSED), as for a
// direct dial) from a refusal by policy (administratively prohibited: a
// port outside permitopen), which wraps only the *ssh.OpenChannelError.
func channelError(err error) error {
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) || oce.Reason != ssh.ConnectionFailed {
		return err
	}
	for _, e := range remoteErrnos {
		if strings.EqualFold(oce.Message, e.Error()) {
			return &remoteDialError{err: err, errno: e}
		}
	}
	return err
}

// remoteDialError is an *ssh.OpenChannelError that also is the errno the
// OMA's sshd met.
type remoteDialError struct {
	err   error
	errno syscall.Errno
}

func (e *remoteDialError) Error() string   { return e.err.Error() }
func (e *remoteDialError) Unwrap() []error { return []error{e.err, e.errno} }
