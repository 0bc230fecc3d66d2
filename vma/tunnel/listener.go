package tunnel

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// listener is the reverse forward as a net.Listener that outlives connections.
type listener struct {
	addr      string
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	up        atomic.Bool // the forward is in place on the OMA's sshd
}

var _ net.Listener = (*listener)(nil)

// newListener returns the listener for the forward of addr on the OMA's sshd.
func newListener(addr string) *listener {
	return &listener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Listener returns the reverse forward of Config.RemoteListen: connections made to that address
// on the OMA side arrive on its Accept, across reconnects. Accept returns net.ErrClosed only
// after Close, and ErrNoForward at once if RemoteListen is empty. Close cancels the forward;
// the Tunnel keeps running.
func (t *Tunnel) Listener() net.Listener { return t.forward }

// Accept waits for the next connection forwarded from the OMA side.
func (l *listener) Accept() (net.Conn, error) {
	if l.addr == "" {
		return nil, ErrNoForward
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops the forward; pending and later Accepts return net.ErrClosed.
func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

// Addr is RemoteListen, the address on the OMA side.
func (l *listener) Addr() net.Addr { return remoteAddr(l.addr) }

// remoteAddr is an address on the OMA side.
type remoteAddr string

// Network is always tcp.
func (remoteAddr) Network() string { return "tcp" }

// String is the host:port.
func (a remoteAddr) String() string { return string(a) }

// serve requests the forward on c, again after a wait whenever it fails or goes away, and hands
// the connections to Accept, until ctx ends or the listener is closed.
func (l *listener) serve(ctx context.Context, c *ssh.Client, log *slog.Logger, wait, maxWait time.Duration) {
	if l.addr == "" {
		return
	}
	first := wait
	for ctx.Err() == nil && !l.closed() {
		fl, err := c.Listen("tcp", l.addr)
		if err != nil {
			log.Warn("ssh remote forward", "addr", l.addr, "err", err, "retry", wait)
		} else {
			log.Info("ssh remote forward up", "addr", l.addr)
			wait = first
			l.up.Store(true)
			l.accept(ctx, fl)
			l.up.Store(false)
		}
		select {
		case <-ctx.Done():
		case <-l.done:
		case <-time.After(jitter(wait)):
		}
		wait = min(2*wait, maxWait)
	}
}

// accept hands fl's connections to Accept until fl fails, ctx ends or the listener is closed.
func (l *listener) accept(ctx context.Context, fl net.Listener) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-l.done:
		case <-stop:
		}
		fl.Close()
	})
	defer wg.Wait()
	defer close(stop)
	for {
		conn, err := fl.Accept()
		if err != nil {
			return
		}
		select {
		case l.conns <- conn:
		case <-ctx.Done():
			conn.Close()
		case <-l.done:
			conn.Close()
		}
	}
}

// closed reports whether Close was called.
func (l *listener) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}
