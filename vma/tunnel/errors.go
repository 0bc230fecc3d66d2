package tunnel

import (
	"errors"
	"fmt"
)

// ErrUnauthorized means the OMA's sshd refused the VMA's key: it is not in the authorized_keys
// of Config.User on the OMA. The error that wraps it names the key's fingerprint.
var ErrUnauthorized = errors.New("ssh key not authorized")

// ErrNoForward is returned by the Accept of [Tunnel.Listener] when Config.RemoteListen is empty.
var ErrNoForward = errors.New("tunnel has no remote forward")

// ErrNotVMA means the peer on a VMA's API socket did not prove it holds the VMA's SSH key (see
// Verify): another VMA bound the socket while this one was down, or something else answers there.
var ErrNotVMA = errors.New("not the VMA: its tunnel socket answered without the VMA's key")

// HostKeyError means the OMA's host key is not the one known_hosts holds for the address, or the
// address is not in known_hosts at all (Unknown).
type HostKeyError struct {
	Addr        string // the address dialled
	KnownHosts  string // the known_hosts file consulted
	Fingerprint string // SHA256 fingerprint of the key the server offered
	Type        string // its type, such as ssh-ed25519
	Unknown     bool   // the host is not in KnownHosts at all
}

// Error says what was wrong and where to fix it.
func (e *HostKeyError) Error() string {
	if e.Unknown {
		return fmt.Sprintf("host key of %s (%s %s) is not in %s", e.Addr, e.Type, e.Fingerprint, e.KnownHosts)
	}
	return fmt.Sprintf("host key of %s (%s %s) does not match %s: possible man-in-the-middle, or the OMA's key changed",
		e.Addr, e.Type, e.Fingerprint, e.KnownHosts)
}
