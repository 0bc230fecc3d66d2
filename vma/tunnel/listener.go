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
	signer    ssh.Signer // answers the OMA's identity check on each connection
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	up        atomic.Bool // the forward is in place on the OMA's sshd
}

var _ net.Listener = (*listener)(nil)

// newListener returns the listener for the forward of the Unix socket path on the OMA's sshd,
// whose connections prove they come from signer's holder.
func newListener(path string, signer ssh.Signer) *listener {
	return &listener{addr: path, signer: signer, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Listener returns the reverse forward of Config.RemoteListen: connections made to that Unix
// socket on the OMA side arrive on its Accept, across reconnects, once the VMA has answered the
// OMA's identity check on them (see Verify); a connection that does not bring a challenge is
// dropped. Accept returns net.ErrClosed only after Close, and ErrNoForward at once if
// RemoteListen is empty. Close cancels the forward; the Tunnel keeps running.
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

// Addr is RemoteListen, the socket path on the OMA side.
func (l *listener) Addr() net.Addr { return &net.UnixAddr{Name: l.addr, Net: "unix"} }

// serve requests the forward on c, again after a wait whenever it fails or goes away, and hands
// the connections to Accept, until ctx ends or the listener is closed.
func (l *listener) serve(ctx context.Context, c *ssh.Client, log *slog.Logger, wait, maxWait time.Duration) {
	if l.addr == "" {
		return
	}
	first := wait
	for ctx.Err() == nil && !l.closed() {
		fl, err := c.ListenUnix(l.addr)
		if err != nil {
			// The OMA removes a socket its last session left behind within a second or two.
			log.Warn("ssh remote forward", "path", l.addr, "err", err, "retry", wait)
		} else {
			log.Info("ssh remote forward up", "path", l.addr)
			wait = first
			l.up.Store(true)
			l.accept(ctx, fl, log)
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

// accept hands fl's connections to Accept, each once it has answered the OMA's challenge,
// until fl fails, ctx ends or the listener is closed.
func (l *listener) accept(ctx context.Context, fl net.Listener, log *slog.Logger) {
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
		wg.Go(func() {
			// The proof's deadline closes the channel; once answered, the channel goes to
			// Accept as it came (HTTP servers use deadlines a channel does not have).
			dc := &deadlineConn{Conn: conn}
			proved := make(chan error, 1)
			go func() { proved <- prove(dc, l.signer, proofTimeout) }()
			select {
			case err := <-proved:
				if err != nil {
					// The OMA probes the socket this way too: nothing to report.
					log.Debug("connection on the remote forward without the OMA's challenge", "err", err)
					dc.Close()
					return
				}
			case <-ctx.Done():
				dc.Close()
				<-proved
				return
			case <-l.done:
				dc.Close()
				<-proved
				return
			case <-stop:
				dc.Close()
				<-proved
				return
			}
			select {
			case l.conns <- conn:
			case <-ctx.Done():
				conn.Close()
			case <-l.done:
				conn.Close()
			case <-stop:
				conn.Close()
			}
		})
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
