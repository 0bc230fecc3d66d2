// Package appliance assembles the VMA from its parts: its identity and
// bbolt state, its connection to the OMA's bus, the worker (heartbeats,
// discovery) and the REST API. The vma binary and every test that needs a
// whole VMA run it the same way:
//
//	v, err := appliance.New(cfg)
//	...
//	go v.Run(ctx)   // returns once everything it started has stopped
//	<-v.Ready()     // then v.Addrs() tells where it listens
package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/vma/api"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/identity"
	"github.com/godwit/godwit/vma/jobs"
	"github.com/godwit/godwit/vma/metrics"
	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/source"
	"github.com/godwit/godwit/vma/source/vddk"
	"github.com/godwit/godwit/vma/store"
	"github.com/godwit/godwit/vma/tunnel"
	"github.com/godwit/godwit/vma/vcenter"
	"github.com/godwit/godwit/vma/worker"
)

// Version is the VMA's version, announced in heartbeats and health.
const Version = "0.1.0"

// Config configures a VMA. DataDir and NATSSeed are required.
type Config struct {
	// DataDir holds the identity and the state.
	DataDir string
	// ID is the VMA id on first start; afterwards it must match the stored
	// one. Empty makes one up on first start.
	ID string
	// APIAddr is the REST API's listen address; empty means 127.0.0.1:8081
	// (api.DefaultAddr) and a port 0 picks a free one.
	APIAddr string
	// MetricsAddr, when set, is a second listen address that serves GET
	// /metrics without a token, for a Prometheus on a management network;
	// the API serves it too, to its bearer token.
	MetricsAddr string
	// API configures the REST API: its bearer token, the browser origins
	// it allows, its HTTP server. Its identity, version, timeouts, clock,
	// logger and vCenter allow list are the VMA's.
	API api.Config
	// NATSURL is the OMA's NATS; empty means nats://127.0.0.1:4222.
	NATSURL string
	// NATSSeed is this VMA's NKey seed, as `oma vma add` printed it.
	NATSSeed []byte
	// OMAURL is the OMA API URL; empty means http://localhost:8082.
	OMAURL string
	// VCenterCAFile and VCenterInsecure say how to trust vCenter's certificate.
	VCenterCAFile   string
	VCenterInsecure bool
	// VCenterAllow lists the only vCenters the VMA logs in to, through its
	// API or for the OMA; empty: any.
	VCenterAllow []string
	// VCenterTimeout bounds connecting and logging in to vCenter; 0 means 15s.
	VCenterTimeout time.Duration
	// Heartbeat is the heartbeat period; 0 means 10s.
	Heartbeat time.Duration
	// DiscoverTimeout bounds a discovery through the API; 0 means 60s.
	DiscoverTimeout time.Duration
	// MaxJobs is how many replication jobs run at once; 0 means 4.
	MaxJobs int
	// DiskParallelism is how many disks of a job copy at once; 0 means 2.
	DiskParallelism int
	// NBDConnections is how many NBD connections (each an SSH channel
	// through the tunnel) a disk's copy opens to its export, when the
	// export allows several; 0 chooses them per disk from the tunnel's
	// measured RTT and LinkRate (1 without a tunnel).
	NBDConnections int
	// LinkRate is the bytes per second the link to the OMA carries; it
	// sizes NBDConnections 0. 0 means jobs.DefaultLinkRate.
	LinkRate int64
	// Source is the disk transport: auto (vddk when installed, else
	// datastore), datastore or vddk; empty means auto.
	Source string
	// VDDKLibDir is VMware's VDDK directory for the vddk transport.
	VDDKLibDir string
	// Copy tunes each disk's copy (Depth, RequestSize); zero: defaults.
	Copy copier.Config
	// ProgressInterval is the least time between a job's progress
	// events; 0 means 1s.
	ProgressInterval time.Duration
	// CleanupRetry is the first delay before a failed snapshot removal is
	// tried again; 0 means 10s.
	CleanupRetry time.Duration
	// CheckpointInterval is the most time between two recorded checkpoints
	// of a copying disk; 0 means 5s.
	CheckpointInterval time.Duration
	// ExportRetry is how long a copy keeps trying to reach an export that
	// went away (the OMA restarts); 0 means 10m.
	ExportRetry time.Duration
	// Tunnel, when set (ssh://user@host[:port], port 22 by default; several
	// comma-separated for an OMA and its standby, tried in turn), makes
	// everything to the OMA go through one SSH connection to its sshd: the
	// bus (NATSURL is then an address on the OMA's side), the NBD exports,
	// and a remote forward of the Unix socket TunnelListen on the OMA to
	// the VMA API. The
	// VMA's SSH key is ssh_ed25519 in DataDir, made on first start.
	Tunnel string
	// TunnelKnownHosts is the known_hosts file holding the OMA's host key.
	TunnelKnownHosts string
	// TunnelInsecure accepts any host key (development only).
	TunnelInsecure bool
	// TunnelConnections is how many SSH connections the tunnel keeps to
	// the OMA's sshd (its port, the same key): the primary one for the bus
	// and the API's forward, the rest carrying the copies' NBD channels; 0
	// means chosen from the round trip time (tunnel.Config.Connections).
	TunnelConnections int
	// TunnelListen is the Unix socket on the OMA the VMA API is forwarded
	// from (the OMA holds the VMA's API port and forwards into it); empty
	// means DefaultTunnelDir/<id>.sock.
	TunnelListen string
	// TunnelSocketBuffer, when positive, sets the tunnel's TCP socket
	// buffers to this many bytes (tunnel.Config.SocketBuffer); 0: the
	// kernel's autotuning, usually better.
	TunnelSocketBuffer int
	// TunnelNoSession turns off the tunnel's one session command per
	// connection that makes an OpenSSH sshd before 10.1 set TCP_NODELAY
	// (tunnel.Config.NoSession).
	TunnelNoSession bool
	// NATSOptions are passed to nats.go for the bus connection after
	// godwit's own, for example nats.UserCredentials for an external
	// cluster.
	NATSOptions []nats.Option
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives every part's log; nil discards.
	Logger *slog.Logger
}

// DefaultTunnelDir is where an OMA installed as documented keeps the VMAs'
// API sockets (its -tunnel-dir: its data dir's tunnels).
const DefaultTunnelDir = "/var/lib/godwit-oma/tunnels"

// withDefaults fills the zero fields of cfg and checks the rest.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.DataDir == "" {
		return cfg, errors.New("vma: empty data dir")
	}
	if len(cfg.NATSSeed) == 0 {
		return cfg, errors.New("vma: no NATS seed: give the file with the NKey seed `oma vma add` wrote (-nats-seed)")
	}
	if cfg.APIAddr == "" {
		cfg.APIAddr = api.DefaultAddr
	}
	if cfg.NATSURL == "" {
		cfg.NATSURL = "nats://127.0.0.1:4222"
	}
	if cfg.OMAURL == "" {
		cfg.OMAURL = "http://localhost:8082"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.API.HTTP.Validate(); err != nil {
		return cfg, fmt.Errorf("api: %w", err)
	}
	switch cfg.Source {
	case "", source.Auto, source.Datastore, source.VDDK:
	default:
		return cfg, fmt.Errorf("vma: source %q: want auto, datastore or vddk (-source)", cfg.Source)
	}
	if cfg.TunnelConnections < 0 || cfg.TunnelConnections > tunnel.MaxConnections {
		return cfg, fmt.Errorf("vma: tunnel connections %d: want 0 (chosen from the round trip time) to %d", cfg.TunnelConnections, tunnel.MaxConnections)
	}
	if cfg.MaxJobs < 0 || cfg.DiskParallelism < 0 || cfg.NBDConnections < 0 || cfg.LinkRate < 0 {
		return cfg, fmt.Errorf("vma: max jobs %d, disk parallelism %d, NBD connections %d and link rate %d must not be negative", cfg.MaxJobs, cfg.DiskParallelism, cfg.NBDConnections, cfg.LinkRate)
	}
	return cfg, nil
}

// Addrs are where a running VMA listens.
type Addrs struct {
	// API is the REST API's address, such as 127.0.0.1:8081.
	API string
	// Metrics is the metrics listener's address, or "" without one.
	Metrics string
}

// VMA is one VMA appliance. Run it once.
type VMA struct {
	cfg   Config
	ready chan struct{}

	mu    sync.Mutex
	addrs Addrs
	id    identity.Identity
}

// New checks cfg and returns a VMA ready to Run.
func New(cfg Config) (*VMA, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &VMA{cfg: cfg, ready: make(chan struct{})}, nil
}

// Ready is closed once the VMA serves: its API, worker and bus connection run.
func (v *VMA) Ready() <-chan struct{} { return v.ready }

// Addrs returns where the VMA listens; it is complete once Ready is closed.
func (v *VMA) Addrs() Addrs {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.addrs
}

// Identity returns the VMA's id and keys; it is set once Ready is closed.
func (v *VMA) Identity() identity.Identity {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.id
}

// Run runs the VMA until ctx ends, then stops the API (draining requests),
// the worker, the bus connection and the state, in that order. It returns
// only after everything it started has stopped.
//
// The bus connection reconnects forever. Should nats.go close it for good
// all the same, the VMA connects anew and runs its jobs (which resume from
// their checkpoints), worker and API handlers on the new connection; the
// API answers 503 meanwhile, health saying reconnecting.
func (v *VMA) Run(ctx context.Context) error {
	cfg := v.cfg
	id, err := identity.LoadOrCreate(cfg.DataDir, cfg.ID)
	if err != nil {
		return err
	}
	log := cfg.Logger.With("vma", id.ID)
	st, err := store.Open(filepath.Join(cfg.DataDir, "state.db"), time.Second)
	if err != nil {
		return err
	}
	defer st.Close()
	inbox, err := subject.InboxPrefix(id.ID)
	if err != nil {
		return err
	}
	// The tunnel, when there is one, outlives everything that rides on it.
	lost := newOutages()
	tn, stopTunnel, err := startTunnel(cfg, id.ID, lost.add, log)
	if err != nil {
		return err
	}
	defer stopTunnel()
	bc := bus.ClientConfig{Name: id.ID, Source: "/godwit/vma/" + id.ID, NKeySeed: cfg.NATSSeed, InboxPrefix: inbox, Confined: true,
		Options: cfg.NATSOptions, Logger: log}
	if tn != nil {
		bc.Dial = tunnel.Dialer{Tunnel: tn, Context: ctx}.Dial
	}
	// The API listens at once: until the bus is up it answers that the VMA
	// is starting, and how its tunnel fares, rather than not at all.
	l, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.APIAddr, err)
	}
	var ml net.Listener
	if cfg.MetricsAddr != "" {
		if ml, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			l.Close()
			return fmt.Errorf("listen %s (-metrics-addr): %w", cfg.MetricsAddr, err)
		}
		defer ml.Close()
	}
	v.mu.Lock()
	v.addrs, v.id = Addrs{API: l.Addr().String()}, id
	if ml != nil {
		v.addrs.Metrics = ml.Addr().String()
	}
	v.mu.Unlock()
	front := new(swapHandler)
	showTunnel := cfg.API.TokenSHA256 == nil
	front.set(starting(id.ID, cfg.NATSURL, tn, showTunnel, nil))
	httpCfg := cfg.API.HTTP
	if httpCfg.Logger == nil {
		httpCfg.Logger = log
	}
	apiCtx, stopAPI := context.WithCancel(ctx)
	apiDone := make(chan struct{})
	var apiErr error // set before apiDone is closed
	go func() {
		defer close(apiDone)
		apiErr = httpserver.Serve(apiCtx, l, front, httpCfg)
	}()
	defer func() { stopAPI(); <-apiDone }()
	if tn != nil {
		// The API also answers on the OMA's side of the remote forward;
		// the local listener's server is the one whose end stops the VMA.
		var fwd sync.WaitGroup
		defer func() { stopAPI(); fwd.Wait() }()
		fwd.Go(func() {
			if err := httpserver.Serve(apiCtx, tn.Listener(), front, httpCfg); err != nil && apiCtx.Err() == nil {
				log.Error("API on the tunnel's remote forward", "err", err)
			}
		})
	}

	s := &session{v: v, cfg: cfg, id: id, log: log, st: st, tn: tn, lost: lost, front: front, apiDone: apiDone}
	mc := metrics.Config{VMA: id.ID, Version: Version, Connected: func() bool {
		c := s.conn.Load()
		return c != nil && c.Connected()
	}}
	if tn != nil {
		mc.Tunnel = tn
	}
	s.metrics = promhttp.HandlerFor(metrics.Registry(metrics.New(st, mc)), promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
	if ml != nil {
		only := http.NewServeMux()
		only.Handle("GET /metrics", s.metrics)
		var mg sync.WaitGroup
		defer func() { stopAPI(); mg.Wait() }()
		mg.Go(func() {
			if err := httpserver.Serve(apiCtx, ml, only, httpserver.Config{}); err != nil {
				log.Error("metrics listener failed", "addr", ml.Addr().String(), "err", err)
			}
		})
	}
	for {
		log.Info("connecting to the bus", "nats", cfg.NATSURL, "tunnel", cfg.Tunnel != "")
		conn, err := bus.Connect(ctx, cfg.NATSURL, bc)
		if err != nil {
			if ctx.Err() != nil {
				log.Info("vma stopped before reaching the bus")
				return nil
			}
			return err
		}
		err = s.run(ctx, conn)
		if !errors.Is(err, errBusLost) {
			stopAPI()
			<-apiDone
			if err == nil {
				err = apiErr
			}
			log.Info("vma stopped")
			return err
		}
		// nats.go gave the connection up: everything on it is dead. Jobs
		// were interrupted as for a stop and resume on the new one.
		why := conn.Health().LastError
		log.Error("bus connection lost for good: connecting again", "err", why)
		front.set(starting(id.ID, cfg.NATSURL, tn, showTunnel, fmt.Errorf("the last connection was closed for good (%s)", why)))
	}
}

// errBusLost ends a session whose bus connection nats.go closed for good.
var errBusLost = errors.New("bus connection closed for good")

// session runs everything that rides on one bus connection: the jobs, the
// worker, the API's handlers, the tunnel outage reports.
type session struct {
	v       *VMA
	cfg     Config
	id      identity.Identity
	log     *slog.Logger
	st      *store.Store
	tn      *tunnel.Tunnel
	lost    *outages
	front   *swapHandler
	apiDone <-chan struct{}
	src     jobs.Source // made on the first run
	// conn is the session's bus connection while it runs; metrics serves
	// GET /metrics.
	conn    atomic.Pointer[bus.Conn]
	metrics http.Handler
	ready   sync.Once
}

// run runs the session on conn until ctx ends (nil), the API server
// stops (nil: Run takes its error), the worker fails (its error), or conn
// is lost (errBusLost). It drains conn before it returns.
func (s *session) run(ctx context.Context, conn *bus.Conn) error {
	cfg, id, log, tn := s.cfg, s.id, s.log, s.tn
	s.conn.Store(conn)
	defer func() { _ = conn.Drain() }()
	if tn != nil {
		octx, stopOutages := context.WithCancel(ctx)
		var og sync.WaitGroup
		og.Go(func() { s.lost.publish(octx, conn, id.ID, time.Second, log) })
		defer og.Wait()
		defer stopOutages()
	}
	if s.src == nil {
		src, err := source.New(ctx, cfg.Source, vddk.Config{LibDir: cfg.VDDKLibDir, Logger: log})
		if err != nil {
			return err
		}
		s.src = src
		log.Info("disk source", "source", src.Name())
	}
	runner, err := jobs.New(conn, s.st, jobs.Config{Identity: id, Source: s.src, MaxJobs: cfg.MaxJobs, DiskParallelism: cfg.DiskParallelism, Connections: cfg.NBDConnections, LinkRate: cfg.LinkRate,
		VCenter: vcenter.Config{CAFile: cfg.VCenterCAFile, Insecure: cfg.VCenterInsecure, Timeout: cfg.VCenterTimeout, Allow: cfg.VCenterAllow},
		Copy:    cfg.Copy, ProgressInterval: cfg.ProgressInterval, CleanupRetry: cfg.CleanupRetry, CheckpointInterval: cfg.CheckpointInterval,
		ExportRetry: cfg.ExportRetry, NBD: nbdConfig(tn), Link: linkOf(tn), Now: cfg.Now, Logger: log})
	if err != nil {
		return err
	}
	w := worker.New(conn, worker.Config{Identity: id, Version: Version, Heartbeat: cfg.Heartbeat,
		VCenterCAFile: cfg.VCenterCAFile, VCenterInsecure: cfg.VCenterInsecure, VCenterTimeout: cfg.VCenterTimeout,
		VCenterAllow: cfg.VCenterAllow, Load: runner.Load, Now: cfg.Now, Logger: log})
	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	workerErr := make(chan error, 1)
	go func() {
		var g sync.WaitGroup
		var runErr error
		g.Go(func() {
			if runErr = runner.Run(wctx); runErr != nil && wctx.Err() == nil {
				stopWorker()
			}
		})
		err := w.Run(wctx)
		stopWorker()
		g.Wait()
		workerErr <- errors.Join(err, runErr)
	}()
	ac := cfg.API
	ac.Identity, ac.Version, ac.DiscoverTimeout, ac.Now, ac.Logger = id, Version, cfg.DiscoverTimeout, cfg.Now, log
	ac.VCenterAllow = cfg.VCenterAllow
	if ac.Metrics == nil {
		ac.Metrics = s.metrics
	}
	if tn != nil {
		ac.Tunnel = tn
	}
	s.front.set(api.New(conn, s.st, runner, ac).Handler())
	s.ready.Do(func() {
		log.Info("vma ready", "api", s.v.Addrs().API, "public_key", id.PublicKey())
		close(s.v.ready)
	})

	select {
	case <-s.apiDone:
		stopWorker()
		return <-workerErr
	case err := <-workerErr:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("worker stopped: %w", err)
	case <-conn.Lost():
		stopWorker()
		if err := <-workerErr; err != nil {
			log.Warn("worker on the lost bus connection", "err", err)
		}
		return errBusLost
	}
}

// startTunnel starts the SSH tunnel cfg asks for, if any, and returns it
// with the function that stops it and waits for it. onRestore gets each
// outage of its connection once it is over.
func startTunnel(cfg Config, vmaID string, onRestore func(tunnel.Outage), log *slog.Logger) (*tunnel.Tunnel, func(), error) {
	if cfg.Tunnel == "" {
		return nil, func() {}, nil
	}
	var addrs []string
	var user string
	for _, raw := range strings.Split(cfg.Tunnel, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Scheme != "ssh" || u.Hostname() == "" || u.User == nil || u.User.Username() == "" {
			return nil, nil, fmt.Errorf("vma: tunnel %q: want ssh://user@host[:port], or several comma-separated for an OMA and its standby (-tunnel)", raw)
		}
		if _, hasPassword := u.User.Password(); hasPassword {
			return nil, nil, errors.New("vma: tunnel: no password in the URL: the VMA logs in with its key (-tunnel)")
		}
		if user != "" && u.User.Username() != user {
			return nil, nil, fmt.Errorf("vma: tunnel %q: every OMA's sshd takes the same user (%s)", raw, user)
		}
		user = u.User.Username()
		addr := u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "22")
		}
		addrs = append(addrs, addr)
	}
	key, err := tunnel.LoadOrCreateKey(cfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	listen := cfg.TunnelListen
	if listen == "" {
		listen = DefaultTunnelDir + "/" + vmaID + ".sock"
	}
	tn, err := tunnel.New(tunnel.Config{Addr: addrs[0], Alternates: addrs[1:], User: user, Key: key, KnownHosts: cfg.TunnelKnownHosts,
		InsecureIgnoreHostKey: cfg.TunnelInsecure, RemoteListen: listen, OnRestore: onRestore, Logger: log.With("tunnel", strings.Join(addrs, ",")),
		Connections: cfg.TunnelConnections, PrimaryAddrs: natsAddrs(cfg.NATSURL),
		SocketBuffer: cfg.TunnelSocketBuffer, NoSession: cfg.TunnelNoSession, LinkRate: cfg.LinkRate})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := tn.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("tunnel stopped", "err", err)
		}
	}()
	return tn, func() { cancel(); <-done }, nil
}

// natsAddrs are the host:port addresses of the NATS URLs in urls (comma
// separated, as nats.go takes them): the bus's dials, which stay on the
// tunnel's primary connection.
func natsAddrs(urls string) []string {
	var out []string
	for _, s := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" {
			continue
		}
		port := u.Port()
		if port == "" {
			port = "4222"
		}
		out = append(out, net.JoinHostPort(u.Hostname(), port))
	}
	return out
}

// linkOf is what jobs learn of the link to the exports: the tunnel's
// measured round trip, which sizes each disk's NBD connections; nil
// without a tunnel.
func linkOf(tn *tunnel.Tunnel) jobs.Link {
	if tn == nil {
		return nil
	}
	return tn
}

// nbdConfig is how jobs reach the OMA's exports: through the tunnel when
// there is one.
func nbdConfig(tn *tunnel.Tunnel) nbd.Config {
	if tn == nil {
		return nbd.Config{}
	}
	return nbd.Config{Dial: tn.DialContext}
}
