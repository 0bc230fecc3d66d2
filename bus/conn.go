package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/godwit/godwit/schema"
)

// State is a connection state reported to ClientConfig.OnState.
type State int

// Connection states.
const (
	Connected    State = iota // the first connection is up
	Disconnected              // the connection dropped; reconnecting
	Reconnected               // back after a drop
	Closed                    // closed for good (Close, or Drain finished)
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	case Reconnected:
		return "reconnected"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// DialFunc opens the network connection to a NATS server, for example
// through an SSH tunnel. address is host:port from the URL.
type DialFunc func(network, address string) (net.Conn, error)

// Dial implements nats.CustomDialer.
func (f DialFunc) Dial(network, address string) (net.Conn, error) { return f(network, address) }

// ClientConfig configures Connect. The zero value connects anonymously.
type ClientConfig struct {
	// Name is the connection name the server shows.
	Name string
	// Source is the CloudEvents source of events this connection publishes,
	// such as "/godwit/vma/vma-1"; empty means "/godwit/" + Name.
	Source string
	// NKeySeed authenticates with an NKey user seed ("SU..."); the seed is
	// kept in memory only.
	NKeySeed []byte
	// InboxPrefix replaces "_INBOX" for replies; a VMA must use
	// subject.InboxPrefix(id), which its permissions allow.
	InboxPrefix string
	// JSAPIPrefix replaces "$JS.API" for JetStream; an observer must use
	// ObserverAPIPrefix.
	JSAPIPrefix string
	// Confined is set on a VMA's connection: its account has no JetStream
	// API (see Access), so Consume pulls from the VMA's durables with plain
	// pull requests, and nothing asks JetStream for more.
	Confined bool
	// Dial replaces the TCP dialer, for example with the SSH tunnel.
	Dial DialFunc
	// ReconnectWait is the first delay between reconnect attempts, doubled
	// on each failed attempt up to MaxReconnectWait, with up to 20% jitter.
	// Zero values mean 100ms and 5s. Reconnecting never gives up, not even
	// on authorization errors: a restarted OMA refuses a VMA until it has
	// loaded its users again, and nats.go would otherwise close the
	// connection for good after the second refusal.
	ReconnectWait    time.Duration
	MaxReconnectWait time.Duration
	// OnState is called, from one goroutine, on every state change, with
	// the error that caused a disconnect (nil otherwise).
	OnState func(State, error)
	// Options are passed to nats.Connect after godwit's own, for example
	// nats.UserCredentials for an external cluster.
	Options []nats.Option
	// Validator checks published and consumed events; nil compiles one.
	Validator *schema.Validator
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
	// OnHandled, when set, is called as each message of a durable
	// consumer is handled, its changes committed, with its stream and the
	// time the server stored it: what an apply-lag metric needs. It is
	// called from the consumers' goroutines and must be quick.
	OnHandled func(stream string, stored time.Time)
}

// Conn is a connection to NATS with JetStream, publishing and consuming
// godwit events. It is safe for concurrent use.
type Conn struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	validator *schema.Validator
	source    string
	now       func() time.Time
	log       *slog.Logger
	health    *connHealth
	confined  bool
	onHandled func(stream string, stored time.Time)

	ackedMu sync.Mutex
	acked   map[string]*handledSeqs // by stream/durable, for a durable created again
}

// Health is how a connection fares, for health endpoints.
type Health struct {
	// State is connected, reconnecting, closed, ... (as Conn.State).
	State string `json:"state"`
	// Connected says whether the connection is up now.
	Connected bool `json:"connected"`
	// Since is when the connection last came up or went down.
	Since time.Time `json:"since"`
	// Reconnects counts the reconnections since Connect.
	Reconnects uint64 `json:"reconnects"`
	// LastError is why the connection last dropped or an attempt failed,
	// such as "nats: authorization violation"; empty when none did.
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when LastError happened.
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// connHealth is what the connection's handlers record for Health and Lost.
type connHealth struct {
	mu        sync.Mutex
	since     time.Time
	lastErr   string
	lastErrAt time.Time
	closing   atomic.Bool   // Close or Drain was called
	lost      chan struct{} // closed when the connection closed without them
	lostOnce  sync.Once
}

func (h *connHealth) setErr(now time.Time, err error) {
	if err == nil {
		return
	}
	h.mu.Lock()
	h.lastErr, h.lastErrAt = err.Error(), now
	h.mu.Unlock()
}

func (h *connHealth) moved(now time.Time) {
	h.mu.Lock()
	h.since = now
	h.mu.Unlock()
}

// Connect connects to url (one or more comma-separated NATS URLs) and
// returns once the first connection is up. It fails when ctx ends first,
// with the last connection error. Once connected, it reconnects forever.
func Connect(ctx context.Context, url string, cfg ClientConfig) (*Conn, error) {
	return connect(ctx, url, cfg)
}

// Connect connects to the embedded server in-process as the OMA's internal
// user, which may publish and subscribe everything. cfg.Dial and
// cfg.NKeySeed are ignored.
func (s *Server) Connect(ctx context.Context, cfg ClientConfig) (*Conn, error) {
	seed, err := s.oma.Seed()
	if err != nil {
		return nil, fmt.Errorf("connect to embedded nats: %w", err)
	}
	cfg.NKeySeed, cfg.Dial = seed, nil
	if cfg.InboxPrefix == "" {
		cfg.InboxPrefix = "_INBOX_OMA"
	}
	cfg.Options = append([]nats.Option{nats.InProcessServer(s.ns)}, cfg.Options...)
	return connect(ctx, s.ClientURL(), cfg)
}

func connect(ctx context.Context, url string, cfg ClientConfig) (*Conn, error) {
	log := discardIfNil(cfg.Logger).With("nats", url)
	if cfg.ReconnectWait <= 0 {
		cfg.ReconnectWait = 100 * time.Millisecond
	}
	if cfg.MaxReconnectWait <= 0 {
		cfg.MaxReconnectWait = 5 * time.Second
	}
	onState := cfg.OnState
	if onState == nil {
		onState = func(State, error) {}
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	up := make(chan struct{})
	var once sync.Once
	var lastMu sync.Mutex
	var lastErr error // why the latest connection attempt failed
	health := &connHealth{since: now(), lost: make(chan struct{})}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		// A restarted server that has not loaded this user yet answers
		// "authorization violation": keep trying, it will.
		nats.IgnoreAuthErrorAbort(),
		nats.CustomReconnectDelay(backoff(cfg.ReconnectWait, cfg.MaxReconnectWait)),
		nats.ConnectHandler(func(*nats.Conn) {
			once.Do(func() { close(up) })
			health.moved(now())
			log.Info("nats connected")
			onState(Connected, nil)
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			lastMu.Lock()
			lastErr = err
			lastMu.Unlock()
			health.setErr(now(), err)
			log.Debug("nats connection attempt failed", "err", err)
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // Close, not a drop: ClosedHandler reports it
			}
			health.moved(now())
			health.setErr(now(), err)
			log.Warn("nats disconnected", "err", err)
			onState(Disconnected, err)
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			health.moved(now())
			log.Info("nats reconnected")
			onState(Reconnected, nil)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			health.moved(now())
			if !health.closing.Load() {
				health.setErr(now(), nc.LastError())
				log.Error("nats connection closed for good", "err", nc.LastError())
				health.lostOnce.Do(func() { close(health.lost) })
			}
			onState(Closed, nil)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Error("nats subscription error", "subject", sub.Subject, "err", err)
				return
			}
			lastMu.Lock()
			lastErr = err
			lastMu.Unlock()
			health.setErr(now(), err)
			log.Error("nats error", "err", err)
		}),
	}
	if len(cfg.NKeySeed) > 0 {
		kp, err := nkeys.FromSeed(cfg.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("connect %s: nkey seed: %w", url, err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("connect %s: nkey public key: %w", url, err)
		}
		opts = append(opts, nats.Nkey(pub, kp.Sign))
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	if cfg.Dial != nil {
		opts = append(opts, nats.SetCustomDialer(cfg.Dial))
	}
	opts = append(opts, cfg.Options...)

	v := cfg.Validator
	if v == nil {
		var err error
		if v, err = schema.New(); err != nil {
			return nil, err
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	select {
	case <-up:
	case <-ctx.Done():
		last := nc.LastError()
		lastMu.Lock()
		if lastErr != nil {
			last = lastErr
		}
		lastMu.Unlock()
		health.closing.Store(true)
		nc.Close()
		if last != nil {
			return nil, fmt.Errorf("connect %s: %w (last error: %v)", url, ctx.Err(), last)
		}
		return nil, fmt.Errorf("connect %s: %w", url, ctx.Err())
	}
	js, err := jetstream.New(nc)
	if cfg.JSAPIPrefix != "" {
		js, err = jetstream.NewWithAPIPrefix(nc, cfg.JSAPIPrefix)
	}
	if err != nil {
		health.closing.Store(true)
		nc.Close()
		return nil, fmt.Errorf("connect %s: jetstream: %w", url, err)
	}
	source := cfg.Source
	if source == "" {
		source = "/godwit/" + cfg.Name
	}
	return &Conn{nc: nc, js: js, validator: v, source: source, now: now, log: log, health: health, confined: cfg.Confined, onHandled: cfg.OnHandled}, nil
}

// backoff doubles the delay from first up to max, adding up to 20% jitter.
func backoff(first, max time.Duration) nats.ReconnectDelayHandler {
	return func(attempts int) time.Duration {
		d := first
		for i := 1; i < attempts && d < max; i++ {
			d *= 2
		}
		d = min(d, max)
		return d + rand.N(d/5+1)
	}
}

// NATS returns the underlying connection.
func (c *Conn) NATS() *nats.Conn { return c.nc }

// JetStream returns the JetStream context of the connection.
func (c *Conn) JetStream() jetstream.JetStream { return c.js }

// Connected reports whether the connection is up now.
func (c *Conn) Connected() bool { return c.nc.IsConnected() }

// MaxPayload is the largest message the server takes, in bytes.
func (c *Conn) MaxPayload() int64 { return c.nc.MaxPayload() }

// State describes the connection now in lower case: connected,
// reconnecting, disconnected, closed, ...
func (c *Conn) State() string { return strings.ToLower(c.nc.Status().String()) }

// Health reports how the connection fares now.
func (c *Conn) Health() Health {
	h := c.health
	h.mu.Lock()
	defer h.mu.Unlock()
	out := Health{State: c.State(), Connected: c.nc.IsConnected(), Since: h.since, Reconnects: c.nc.Stats().Reconnects, LastError: h.lastErr}
	if h.lastErr != "" {
		at := h.lastErrAt
		out.LastErrorAt = &at
	}
	return out
}

// Lost is closed when the connection closed for good although neither
// Close nor Drain was called: nats.go gave up on it (a server error it
// does not reconnect after). The connection's subscriptions and consumers
// are then dead; the owner connects anew and starts them again.
func (c *Conn) Lost() <-chan struct{} { return c.health.lost }

// Drain lets subscriptions finish what they hold, flushes, and closes.
func (c *Conn) Drain() error {
	c.health.closing.Store(true)
	if err := c.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("drain nats connection: %w", err)
	}
	return nil
}

// Close closes the connection at once.
func (c *Conn) Close() {
	c.health.closing.Store(true)
	c.nc.Close()
}
