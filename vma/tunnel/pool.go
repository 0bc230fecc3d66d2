package tunnel

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// One TCP connection over a long link carries only so much: about 27 MB/s
// at 100 ms with Linux's default 4 MiB send buffer, and every SSH channel
// shares it. So besides the primary connection (the bus, the API's remote
// forward, the outage events, the keepalives), the tunnel may keep data
// connections to the same sshd, with the same key, each carrying NBD
// channels. Losing one breaks only the copies' channels on it (they resume
// from their checkpoints); the bus never sees it, and no outage is
// reported.

// ConnState is one SSH connection of the tunnel, for health reports.
type ConnState struct {
	Primary    bool      `json:"primary"`              // the bus's and the remote forward's connection
	Connected  bool      `json:"connected"`            // it is up
	Since      time.Time `json:"since"`                // when Connected last changed
	Reconnects int       `json:"reconnects"`           // connections made after the first
	Channels   int       `json:"channels"`             // channels DialContext opened on it, not closed yet
	BytesIn    int64     `json:"bytes_in"`             // bytes read from the sshd, SSH framing included
	BytesOut   int64     `json:"bytes_out"`            // bytes written to it
	LocalAddr  string    `json:"local_addr,omitempty"` // the VMA's end of its TCP connection, the last one made
	NoDelay    string    `json:"no_delay,omitempty"`   // how sshd came to set TCP_NODELAY on it: see State.NoDelay
	LastError  string    `json:"last_error,omitempty"` // why it was last lost or not made
}

// link is one SSH connection slot of the tunnel: the primary's counters, or
// a data connection with its state.
type link struct {
	index             int // 0: the primary; data connections from 1
	channels          atomic.Int64
	bytesIn, bytesOut atomic.Int64
	mu                sync.Mutex
	local             string
	raw               net.Conn    // the TCP connection under the last connection made
	client            *ssh.Client // data connections only; nil while down
	connected         bool
	since             time.Time
	connects          int
	lastErr           error
	noDelay           string // the session command's outcome: State.NoDelay
}

// setRaw records the link's new TCP connection.
func (l *link) setRaw(raw net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.raw, l.local = raw, raw.LocalAddr().String()
}

// tcp returns the link's last TCP connection.
func (l *link) tcp() net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw
}

// set publishes c as the data connection's client.
func (l *link) set(c *ssh.Client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.client, l.connected, l.since = c, true, time.Now()
	l.connects++
}

// drop unpublishes c if it is still the link's client, and reports whether it was.
func (l *link) drop(c *ssh.Client) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client != c {
		return false
	}
	l.client, l.connected, l.since = nil, false, time.Now()
	return true
}

// setErr records why the data connection was lost or not made.
func (l *link) setErr(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastErr = err
}

// state is the link's ConnState, without Primary's fields kept by Tunnel.
func (l *link) state() ConnState {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := ConnState{Connected: l.connected, Since: l.since, Reconnects: max(l.connects-1, 0), Channels: int(l.channels.Load()),
		BytesIn: l.bytesIn.Load(), BytesOut: l.bytesOut.Load(), LocalAddr: l.local, NoDelay: l.noDelay}
	if l.lastErr != nil {
		s.LastError = l.lastErr.Error()
	}
	return s
}

// pool holds the data connections, set once the primary first connected.
type pool struct {
	mu    sync.Mutex
	links []*link
}

// leastBusy returns the up data connection with the fewest channels and
// counts one more channel on it (the caller's, to release if its dial
// fails), or nil when none is up.
func (p *pool) leastBusy() (*link, *ssh.Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *link
	var bestClient *ssh.Client
	for _, l := range p.links {
		l.mu.Lock()
		c := l.client
		l.mu.Unlock()
		if c != nil && (best == nil || l.channels.Load() < best.channels.Load()) {
			best, bestClient = l, c
		}
	}
	if best != nil {
		best.channels.Add(1)
	}
	return best, bestClient
}

// states returns the data connections' states.
func (p *pool) states() []ConnState {
	p.mu.Lock()
	links := slices.Clone(p.links)
	p.mu.Unlock()
	out := make([]ConnState, len(links))
	for i, l := range links {
		out[i] = l.state()
	}
	return out
}

// route picks the connection for a dial to addr: the primary for the
// bus's addresses (Config.PrimaryAddrs) and while no data connection is
// up, else the data connection with the fewest channels. For a data
// connection, the channel is already counted on its link (reserved is
// true: the caller releases it if the dial fails). With the primary down,
// c is nil and up is closed once it is back.
func (t *Tunnel) route(addr string) (l *link, c *ssh.Client, up <-chan struct{}, lastErr error, reserved bool) {
	if !slices.Contains(t.cfg.PrimaryAddrs, addr) {
		if l, c := t.pool.leastBusy(); l != nil {
			return l, c, nil, nil, true
		}
	}
	c, up, lastErr = t.current()
	return &t.primary, c, up, lastErr, false
}

// runPool waits for the primary connection, decides how many connections
// the tunnel keeps (Config.Connections, or from the primary's round trip
// time) and runs the data connections until ctx ends.
func (t *Tunnel) runPool(ctx context.Context) {
	c, ok := t.waitPrimary(ctx)
	if !ok {
		return
	}
	n := t.cfg.Connections
	if n == 0 {
		rtt := probeRTT(c) // a few round trips: the kernel's figure, if any, is then one of them at least
		if kernel, ok := kernelMinRTT(t.primary.tcp()); ok {
			rtt = kernel // not inflated by the scheduling of sshd or of this process
		}
		n = autoConnections(rtt)
		t.log.Info("ssh connections chosen from the round trip time", "rtt", rtt.Round(time.Microsecond), "connections", n)
	}
	if n <= 1 {
		return
	}
	links := make([]*link, n-1)
	for i := range links {
		links[i] = &link{index: i + 1, since: time.Now()}
	}
	t.pool.mu.Lock()
	t.pool.links = links
	t.pool.mu.Unlock()
	var wg sync.WaitGroup
	for i, l := range links {
		wg.Go(func() {
			// Staggered, so that the sshd does not see them all at once
			// (MaxStartups counts handshakes under way).
			if sleep(ctx, jitter(time.Duration(i+1)*t.cfg.ReconnectWait/4)) {
				t.runData(ctx, l)
			}
		})
	}
	wg.Wait()
}

// waitPrimary waits until the primary connection is up and returns it;
// false when ctx ended first.
func (t *Tunnel) waitPrimary(ctx context.Context) (*ssh.Client, bool) {
	for {
		c, up, _ := t.current()
		if c != nil {
			return c, true
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// runData keeps the data connection l up until ctx ends: it connects
// while the primary is up (while the OMA is away, only the primary tries),
// and reconnects with backoff when it drops.
func (t *Tunnel) runData(ctx context.Context, l *link) {
	log := t.log.With("conn", l.index)
	wait := t.cfg.ReconnectWait
	for {
		if _, ok := t.waitPrimary(ctx); !ok {
			return
		}
		c, err := t.connect(ctx, l)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.setErr(err)
			log.Warn("ssh data connection", "err", err, "retry", wait)
		} else {
			wait = t.cfg.ReconnectWait
			err = t.serveData(ctx, c, l)
			if ctx.Err() != nil {
				return
			}
			l.setErr(err)
			log.Warn("ssh data connection lost: the copies' channels on it broke and resume from their checkpoints", "err", err, "retry", wait)
		}
		if !sleep(ctx, jitter(wait)) {
			return
		}
		wait = min(2*wait, t.cfg.MaxReconnectWait)
	}
}

// serveData sets the data connection c up, publishes it for DialContext
// and keeps it alive until it drops or ctx ends; it closes c and returns
// once its goroutines have stopped.
func (t *Tunnel) serveData(ctx context.Context, c *ssh.Client, l *link) error {
	l.set(c)
	t.log.Info("ssh data connection up", "conn", l.index, "local", c.LocalAddr().String())
	return t.hold(ctx, c, l, func() { l.drop(c) })
}

// setup is the one place where every SSH connection of the tunnel, the
// primary and each data connection, is set up once its handshake is done,
// beside the connection's channels (they never wait for it). It must return
// when ctx ends. It runs the session command that makes an OpenSSH sshd
// before 10.1 set TCP_NODELAY (runNoDelay) and records the outcome on l.
func (t *Tunnel) setup(ctx context.Context, c *ssh.Client, l *link) {
	t.runNoDelay(ctx, c, l)
}

// probeRTT times a few keepalive requests on c, before any bulk data
// flows, and returns the shortest (0 if none was answered).
func probeRTT(c *ssh.Client) time.Duration {
	var best time.Duration
	for range 3 {
		start := time.Now()
		if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil {
			break
		}
		if d := time.Since(start); best == 0 || d < best {
			best = d
		}
	}
	return best
}

// kernelMinRTT is the shortest round trip time the kernel saw on conn
// (TCP_INFO's tcpi_min_rtt); false when conn is no TCP connection or has
// none.
func kernelMinRTT(conn net.Conn) (time.Duration, bool) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return 0, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil || info.Min_rtt == 0 {
		return 0, false
	}
	return time.Duration(info.Min_rtt) * time.Microsecond, true
}

// autoConnections is how many SSH connections the tunnel keeps when
// Config.Connections is 0, from the primary's round trip time: the primary
// alone on a LAN (below 5 ms), else the primary and one data connection
// per started 25 ms, at most 4 (about 27 MB/s each at 100 ms with Linux's
// default 4 MiB socket buffer; more with bigger buffers).
func autoConnections(rtt time.Duration) int {
	if rtt < 5*time.Millisecond {
		return 1
	}
	data := int((rtt + 25*time.Millisecond - 1) / (25 * time.Millisecond))
	return 1 + min(max(data, 1), 4)
}
