package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// State is a snapshot of the tunnel for health reports.
type State struct {
	Connected  bool      // an SSH connection is up
	Forwarding bool      // the remote forward is in place on the OMA's sshd
	Since      time.Time // when Connected last changed
	Reconnects int       // connections made after the first
	BytesIn    int64     // bytes read from the OMA's sshd, SSH framing included, all connections
	BytesOut   int64     // bytes written to it
	LastError  string    // the last connection error, empty if none yet
	// Channels is how many connections DialContext opened that are not
	// closed yet: the bus's, and one per NBD connection of the copies.
	Channels int
	// Connections are the tunnel's SSH connections: the primary first,
	// then the data connections (Config.Connections), once chosen.
	Connections []ConnState
	// NoDelay says how the OMA's sshd came to set TCP_NODELAY on the primary
	// connection (each connection's is in Connections): "session" (the session
	// command ran), "server default" (OpenSSH 10.1+), "pending", "off"
	// (Config.NoSession), "not OpenSSH", or "failed: ...".
	NoDelay string
	// RTT is TCP's smoothed round-trip time on the primary connection,
	// queueing included; MinRTT the least it measured (the link's own);
	// KeepaliveRTT the last keepalive's round trip through SSH. Zero while
	// unknown.
	RTT, MinRTT, KeepaliveRTT time.Duration
	// DeliveryRate is TCP's estimate (primary connection) of the rate it delivers, bytes/s;
	// SndCwnd its congestion window in segments.
	DeliveryRate float64
	SndCwnd      int
	// SndbufLimited and RwndLimited are the shares (0-1) of the last
	// second's sending time that the VMA's send buffer and the OMA's receive
	// window held the connection back: which end's buffer is the ceiling.
	SndbufLimited, RwndLimited float64
	// BytesInPerSec and BytesOutPerSec are BytesIn and BytesOut per second,
	// smoothed over a few seconds.
	BytesInPerSec, BytesOutPerSec float64
}

// Outage is one loss of an established connection, reported once it is
// made again.
type Outage struct {
	LostAt     time.Time // when the connection was found lost
	RestoredAt time.Time // when the next connection was made
	Err        string    // why it was lost
	Attempts   int       // connections tried to restore it, the one that worked included
	Reconnects int       // connections made after the first, the one that restored it included
}

// Tunnel is the VMA's SSH connection to the OMA. Its methods are safe for concurrent use.
type Tunnel struct {
	cfg       Config
	log       *slog.Logger
	client    *ssh.ClientConfig
	channels  atomic.Int64 // open connections DialContext made
	bytesIn   atomic.Int64
	bytesOut  atomic.Int64
	forward   *listener
	primary   link // the primary connection's counters
	pool      pool // the data connections
	running   atomic.Bool
	mu        sync.Mutex
	conn      *ssh.Client   // nil while down
	up        chan struct{} // closed when conn is set; replaced when it drops
	connected bool
	since     time.Time
	connects  int
	lastErr   error
	measured  measures     // the link as the primary connection sees it: measure.go
	addrs     []string     // Addr, then Alternates
	at        atomic.Int32 // the index in addrs of the sshd in use
}

// addr returns the address of the OMA's sshd in use.
func (t *Tunnel) addr() string { return t.addrs[t.at.Load()] }

// Addr returns the address of the OMA's sshd the tunnel uses (or tries
// next, while down).
func (t *Tunnel) Addr() string { return t.addr() }

// New checks cfg and returns a Tunnel that connects once Run is called.
func New(cfg Config) (*Tunnel, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	check, algos, err := hostKeyCheck(cfg)
	if err != nil {
		return nil, err
	}
	t := &Tunnel{
		cfg: cfg,
		log: cfg.Logger.With("oma", cfg.Addr),
		client: &ssh.ClientConfig{
			User:              cfg.User,
			Auth:              []ssh.AuthMethod{ssh.PublicKeys(cfg.Key)},
			HostKeyCallback:   check,
			HostKeyAlgorithms: algos,
			Timeout:           cfg.DialTimeout,
			Config:            ssh.Config{Ciphers: cfg.Ciphers},
		},
		up:    make(chan struct{}),
		since: time.Now(),
	}
	t.forward = newListener(cfg.RemoteListen, cfg.Key)
	t.addrs = append([]string{cfg.Addr}, cfg.Alternates...)
	return t, nil
}

// Run connects to the OMA and keeps the connection up, reconnecting with backoff whenever it
// drops or cannot be made (a wrong host key or an unauthorized key included: an operator may fix
// them), until ctx ends. It returns nil then, once everything it started has stopped; it
// returns an error at once if called twice.
func (t *Tunnel) Run(ctx context.Context) error {
	if !t.running.CompareAndSwap(false, true) {
		return errors.New("tunnel: Run called twice")
	}
	defer t.running.Store(false)
	var pooled sync.WaitGroup
	defer pooled.Wait()
	pooled.Go(func() { t.runPool(ctx) })
	wait := t.cfg.ReconnectWait
	var lost *Outage // the outage under way, nil while up or before the first connection
	failed := 0      // connects failed in a row
	for ctx.Err() == nil {
		c, err := t.connect(ctx, &t.primary)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			t.setErr(err)
			if lost != nil {
				lost.Attempts++
			}
			if failed++; len(t.addrs) > 1 {
				// The next OMA at once, until each was tried: a standby may
				// have taken over.
				t.at.Store(int32((int(t.at.Load()) + 1) % len(t.addrs)))
				t.log.Warn("ssh connect; trying the next OMA", "err", err, "next", t.addr())
				if failed%len(t.addrs) != 0 {
					continue
				}
			} else {
				t.log.Error("ssh connect", "err", err, "retry", wait)
			}
		} else {
			failed = 0
			wait = t.cfg.ReconnectWait
			if lost != nil {
				lost.Attempts++
				lost.RestoredAt = time.Now()
				lost.Reconnects = t.State().Reconnects + 1
				t.log.Info("ssh connection restored", "down", lost.RestoredAt.Sub(lost.LostAt).Round(time.Millisecond),
					"attempts", lost.Attempts, "cause", lost.Err, "oma", t.addr())
				if t.cfg.OnRestore != nil {
					t.cfg.OnRestore(*lost)
				}
				lost = nil
			}
			err = t.serve(ctx, c)
			if ctx.Err() != nil {
				break
			}
			t.setErr(err)
			t.log.Warn("ssh connection lost", "err", err, "retry", wait)
			lost = &Outage{LostAt: time.Now(), Err: err.Error()}
		}
		if !sleep(ctx, jitter(wait)) {
			break
		}
		wait = min(2*wait, t.cfg.MaxReconnectWait)
	}
	return nil
}

// connect dials the OMA's sshd and runs the SSH handshake, cut short by ctx; l counts the
// connection's bytes.
func (t *Tunnel) connect(ctx context.Context, l *link) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	addr := t.addr()
	raw, err := t.dialer().DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial ssh %s: %w", addr, err)
	}
	l.setRaw(raw)
	conn := &countConn{Conn: &countConn{Conn: raw, in: &l.bytesIn, out: &l.bytesOut}, in: &t.bytesIn, out: &t.bytesOut}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, t.client)
	if !stop() {
		if err == nil {
			c.Close()
		}
		raw.Close()
		return nil, fmt.Errorf("ssh handshake with %s: %w", addr, ctx.Err())
	}
	if err != nil {
		raw.Close()
		return nil, t.handshakeErr(err)
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// handshakeErr classifies a handshake failure.
func (t *Tunnel) handshakeErr(err error) error {
	var hk *HostKeyError
	switch {
	case errors.As(err, &hk):
		return hk
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Errorf("ssh to %s as %s with key %s: %w (add it to that user's authorized_keys on the OMA): %w",
			t.addr(), t.cfg.User, ssh.FingerprintSHA256(t.cfg.Key.PublicKey()), ErrUnauthorized, err)
	}
	return fmt.Errorf("ssh handshake with %s: %w", t.addr(), err)
}

// serve publishes c, keeps it alive and runs the forward until c drops or ctx ends; it closes c
// and returns once its goroutines have stopped.
func (t *Tunnel) serve(ctx context.Context, c *ssh.Client) error {
	t.setConn(c)
	t.log.Info("ssh connected", "server", string(c.ServerVersion()))
	if t.cfg.InsecureIgnoreHostKey {
		t.log.Warn("SSH HOST KEY NOT CHECKED: InsecureIgnoreHostKey is for development only; anyone on the path can read and change this tunnel")
	}
	return t.hold(ctx, c, &t.primary, t.clearConn,
		func(ctx context.Context) { t.forward.serve(ctx, c, t.log, t.cfg.ReconnectWait, t.cfg.MaxReconnectWait) },
		t.sample)
}

// hold keeps the connection c of l up: it sets it up, keeps it alive and
// runs each of also beside it, until c drops or ctx ends. Then it calls
// drop (no new channel may take c), closes c and returns why c ended, once
// every goroutine has stopped.
func (t *Tunnel) hold(ctx context.Context, c *ssh.Client, l *link, drop func(), also ...func(context.Context)) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var kaErr error
	wg.Go(func() { t.setup(ctx, c, l) })
	wg.Go(func() { kaErr = t.keepalive(ctx, c) })
	for _, f := range also {
		wg.Go(func() { f(ctx) })
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	waited := false
	select {
	case err = <-done:
		waited = true
	case <-ctx.Done():
	}
	cancel()
	drop()
	c.Close()
	wg.Wait()
	if !waited {
		err = <-done
	}
	if kaErr != nil {
		err = kaErr
	}
	if err == nil {
		err = errors.New("connection closed")
	}
	return err
}

// keepalive sends keepalive@openssh.com every interval and closes c when one goes unanswered
// for an interval.
func (t *Tunnel) keepalive(ctx context.Context, c *ssh.Client) error {
	tick := time.NewTicker(t.cfg.Keepalive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		answered := make(chan error, 1)
		go func() {
			sent := time.Now()
			_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
			if now, _, _ := t.current(); err == nil && now == c {
				t.measured.setKeepalive(time.Since(sent))
			}
			answered <- err
		}()
		timer := time.NewTimer(t.cfg.Keepalive)
		select {
		case err := <-answered:
			timer.Stop()
			if err != nil {
				return fmt.Errorf("keepalive: %w", err)
			}
		case <-timer.C:
			c.Close()
			return fmt.Errorf("keepalive unanswered for %s: peer dead", t.cfg.Keepalive)
		case <-ctx.Done():
			timer.Stop()
			return nil
		}
	}
}

// setConn publishes c as the current connection.
func (t *Tunnel) setConn(c *ssh.Client) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.conn = c
	t.connected = true
	t.since = time.Now()
	t.connects++
	close(t.up)
}

// clearConn marks the tunnel down.
func (t *Tunnel) clearConn() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.conn = nil
	t.connected = false
	t.since = time.Now()
	t.up = make(chan struct{})
}

// setErr records the last connection error.
func (t *Tunnel) setErr(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastErr = err
}

// current returns the connection, or nil and a channel closed when one is up, and the last
// connection error.
func (t *Tunnel) current() (*ssh.Client, <-chan struct{}, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conn, t.up, t.lastErr
}

// State returns a snapshot of the tunnel's health.
func (t *Tunnel) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := State{Connected: t.connected, Forwarding: t.forward.up.Load(), Since: t.since, Reconnects: max(t.connects-1, 0),
		BytesIn: t.bytesIn.Load(), BytesOut: t.bytesOut.Load(), Channels: int(t.channels.Load())}
	if t.lastErr != nil {
		s.LastError = t.lastErr.Error()
	}
	primary := t.primary.state()
	primary.Primary, primary.Connected, primary.Since, primary.Reconnects, primary.LastError = true, s.Connected, s.Since, s.Reconnects, s.LastError
	s.Connections = append([]ConnState{primary}, t.pool.states()...)
	s.NoDelay = primary.NoDelay
	t.measured.fill(&s)
	return s
}

// sleep waits d or until ctx ends, and reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// jitter spreads d by up to a fifth either way so many VMAs do not reconnect in step.
func jitter(d time.Duration) time.Duration {
	spread := int64(d) / 5
	if spread <= 0 {
		return d
	}
	return d - time.Duration(spread) + time.Duration(rand.Int64N(2*spread))
}
