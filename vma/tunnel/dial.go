package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// DialContext opens a direct-tcpip channel to addr (host:port as seen from the OMA, such as
// "127.0.0.1:4222") through the tunnel. While the tunnel is down it waits for it to come back
// until ctx ends; the error then wraps both ctx.Err() and the last connection error (a
// *HostKeyError or ErrUnauthorized, for instance). A refusal by the OMA's sshd (a port outside
// permitopen, nothing listening) wraps an *ssh.OpenChannelError; when nothing listened or the
// address was unreachable from the OMA, it also wraps the syscall.Errno the sshd met (such as
// syscall.ECONNREFUSED), as a direct dial's error does. The connection's deadlines are
// coarse: one that passes closes it (see deadlineConn). Its signature fits vma/nbd's Config.Dial.
// With data connections (Config.Connections), a dial to an address outside Config.PrimaryAddrs
// opens its channel on the up data connection with the fewest channels, else on the primary.
func (t *Tunnel) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("dial %s %s through tunnel: unsupported network", network, addr)
	}
	for {
		l, c, up, lastErr, reserved := t.route(addr)
		if c == nil {
			select {
			case <-up:
				continue
			case <-ctx.Done():
				_, _, lastErr = t.current()
				if lastErr != nil {
					return nil, fmt.Errorf("dial %s through tunnel: tunnel down (%w): %w", addr, lastErr, ctx.Err())
				}
				return nil, fmt.Errorf("dial %s through tunnel: tunnel down: %w", addr, ctx.Err())
			}
		}
		conn, err := c.DialContext(ctx, network, addr)
		if err == nil {
			t.channels.Add(1)
			if !reserved {
				l.channels.Add(1)
			}
			return &deadlineConn{Conn: conn, onClose: func() { t.channels.Add(-1); l.channels.Add(-1) }}, nil
		}
		if reserved {
			l.channels.Add(-1)
		}
		var refused *ssh.OpenChannelError
		if errors.As(err, &refused) || ctx.Err() != nil {
			return nil, fmt.Errorf("dial %s through tunnel to %s: %w", addr, t.addr(), channelError(err))
		}
		if l != &t.primary {
			// The data connection is broken: no more channels on it
			// (its loop reconnects); try another one, or the primary.
			if l.drop(c) {
				c.Close()
			}
			continue
		}
		if now, _, _ := t.current(); now == c {
			return nil, fmt.Errorf("dial %s through tunnel to %s: %w", addr, t.addr(), err)
		}
		// The connection dropped under us: wait for the next one.
	}
}

// Dialer adapts a Tunnel to nats.go's nats.SetCustomDialer, whose dialer has no context.
type Dialer struct {
	// Tunnel carries the connections.
	Tunnel *Tunnel
	// Context bounds each Dial (its wait for the tunnel included); nil: context.Background().
	Context context.Context
	// Timeout, if positive, also bounds each Dial, so nats.go's reconnect loop is not held up
	// for long by a tunnel that is down.
	Timeout time.Duration
}

// Dial opens a connection to address on the OMA side; see Tunnel.DialContext.
func (d Dialer) Dial(network, address string) (net.Conn, error) {
	ctx := d.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	return d.Tunnel.DialContext(ctx, network, address)
}
