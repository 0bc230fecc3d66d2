package tunnel

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
)

// MaxConnections is the most SSH connections a tunnel keeps (Config.Connections).
const MaxConnections = 8

// MaxSocketPath is the longest Unix socket path Linux binds (sun_path less its terminating NUL).
const MaxSocketPath = 107

// Config configures New. Addr, User, Key and either KnownHosts or InsecureIgnoreHostKey are
// required; the rest have working zero values.
type Config struct {
	// Addr is host:port of the OMA's sshd.
	Addr string
	// Alternates are host:port of the sshds of other OMAs that may take
	// over (a standby OMA): when the sshd in use cannot be reached, the
	// next one is tried, in turn, each once before the backoff grows. The
	// host key of each must be in KnownHosts.
	Alternates []string
	// User is the account on the OMA whose authorized_keys holds the VMA's key.
	User string
	// Key is the VMA's private key, usually from LoadOrCreateKey.
	Key ssh.Signer
	// KnownHosts is the path of a known_hosts file holding the OMA's host key.
	KnownHosts string
	// InsecureIgnoreHostKey accepts any host key. Development only: it is logged loudly on
	// every connection.
	InsecureIgnoreHostKey bool
	// Keepalive is the interval between keepalive@openssh.com requests; a request unanswered
	// for one interval drops the connection. 0: 15s.
	Keepalive time.Duration
	// ReconnectWait is the first wait before reconnecting; it doubles up to MaxReconnectWait.
	// 0: 1s and 1m.
	ReconnectWait, MaxReconnectWait time.Duration
	// DialTimeout bounds the TCP connect and SSH handshake. 0: 30s.
	DialTimeout time.Duration
	// Ciphers, when set, are the only ciphers offered, in order of
	// preference (such as aes128-gcm@openssh.com); empty: x/crypto's
	// defaults.
	Ciphers []string
	// RemoteListen is the Unix socket the OMA's sshd listens on for the reverse forward
	// (streamlocal-forward@openssh.com), an absolute path on the OMA such as
	// /var/lib/godwit-oma/tunnels/vma-1.sock; empty: no forward. The OMA holds the VMA's API
	// port itself and forwards into it (a TCP port could be taken by any local user while the
	// tunnel is down; the socket's directory is the OMA user's alone).
	RemoteListen string
	// Connections is how many SSH connections to the OMA's sshd the tunnel keeps, all with
	// the same key to the same port: the primary one (the bus, the remote forward, the
	// keepalives whose loss is an outage) and Connections-1 data connections, which carry
	// the dials to addresses outside PrimaryAddrs (the NBD exports). One TCP connection over
	// a long link carries only so much; several fill it. A data connection that drops breaks
	// only its own channels and is made again, with no outage. 0: chosen when the primary
	// first connects, from its round trip time (1 below 5 ms, 5 at 100 ms: see
	// autoConnections); 1: the primary alone. At most MaxConnections.
	Connections int
	// PrimaryAddrs are the addresses (host:port as passed to DialContext) whose channels
	// always go on the primary connection: the bus's, such as "127.0.0.1:4222", so that it
	// shares its TCP connection with no bulk copy and does not see a data connection drop.
	PrimaryAddrs []string
	// NoSession turns off the session command that makes an OpenSSH sshd
	// before 10.1 set TCP_NODELAY (see State.NoDelay): one session per
	// connection, whose command the key's forced /bin/false replaces.
	NoSession bool
	// SocketBuffer, when positive, sets the TCP connection's SO_SNDBUF and
	// SO_RCVBUF to this many bytes (the kernel doubles it, capped at
	// net.core.wmem_max and rmem_max) and turns the kernel's autotuning off;
	// 0: autotuning up to net.ipv4.tcp_wmem's and tcp_rmem's maximum,
	// usually better (README: Long links).
	SocketBuffer int
	// LinkRate is the rate of the link to the OMA in bytes per second, for
	// the one-time check that the socket buffers hold two round trips of it;
	// 0: DefaultLinkRate.
	LinkRate int64
	// OnRestore, when set, is called from Run each time a connection
	// that was lost is made again, with the outage; it must not block.
	// Failures to make the first connection are not outages.
	OnRestore func(Outage)
	// Logger receives connection events; nil discards.
	Logger *slog.Logger
}

// withDefaults checks c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	for _, a := range append([]string{c.Addr}, c.Alternates...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c, fmt.Errorf("tunnel addr %q: %w", a, err)
		}
	}
	if c.User == "" {
		return c, errors.New("tunnel: no user")
	}
	if c.Key == nil {
		return c, errors.New("tunnel: no key")
	}
	if c.KnownHosts == "" && !c.InsecureIgnoreHostKey {
		return c, errors.New("tunnel: no known_hosts file (or InsecureIgnoreHostKey)")
	}
	if c.RemoteListen != "" {
		if !filepath.IsAbs(c.RemoteListen) || filepath.Clean(c.RemoteListen) != c.RemoteListen {
			return c, fmt.Errorf("tunnel remote listen %q: want the absolute path of a Unix socket on the OMA, such as /var/lib/godwit-oma/tunnels/vma-1.sock", c.RemoteListen)
		}
		if len(c.RemoteListen) > MaxSocketPath {
			return c, fmt.Errorf("tunnel remote listen %q: %d bytes, a Unix socket path has at most %d", c.RemoteListen, len(c.RemoteListen), MaxSocketPath)
		}
	}
	if c.Connections < 0 || c.Connections > MaxConnections {
		return c, fmt.Errorf("tunnel connections %d: want 0 (chosen from the round trip time) to %d", c.Connections, MaxConnections)
	}
	if c.Keepalive <= 0 {
		c.Keepalive = 15 * time.Second
	}
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = time.Second
	}
	if c.MaxReconnectWait <= 0 {
		c.MaxReconnectWait = time.Minute
	}
	if c.MaxReconnectWait < c.ReconnectWait {
		c.MaxReconnectWait = c.ReconnectWait
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
