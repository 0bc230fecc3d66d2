// Package appliance assembles the OMA from its parts: bbolt state, the
// embedded NATS server and the OMA's connection to it, the streams, the
// nbdkit exports, the control layer and its consumers, and the REST API.
// The oma binary and every test that needs a whole OMA run it the same way:
//
//	o, err := appliance.New(cfg)
//	...
//	go o.Run(ctx)      // returns once everything it started has stopped
//	<-o.Ready()        // then o.Addrs() tells where it listens
package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/oma/api"
	"github.com/godwit/godwit/oma/atrest"
	"github.com/godwit/godwit/oma/console"
	"github.com/godwit/godwit/oma/control"
	"github.com/godwit/godwit/oma/cutover"
	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/metrics"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/tokens"
	"github.com/godwit/godwit/oma/tunnels"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/version"
	"github.com/godwit/godwit/vma/copier"
)

// Config configures an OMA. Only DataDir is required; the zero value of
// every other field is the documented default.
type Config struct {
	// DataDir holds the state, the volumes, the exports and the NKeys.
	DataDir string
	// StateDir, when set, holds what is this OMA's own and not the
	// volumes: the state (state.db), the embedded NATS server's store, the
	// tunnels' sockets and the initial token. An OMA and its standby share
	// DataDir (a shared filesystem, as CloudStack's primary storage is),
	// each with a StateDir of its own. Empty means DataDir.
	StateDir string
	// APIAddr is the REST API's listen address; empty means
	// "127.0.0.1:8082" and a port 0 picks a free one. An address that is
	// not loopback (all interfaces included) needs TLS (API.HTTP's
	// certificate and key) or APIInsecureHTTP.
	APIAddr string
	// APIInsecureHTTP allows plain HTTP on an APIAddr that is not
	// loopback, where bearer tokens and vCenter passwords would cross the
	// network in clear.
	APIInsecureHTTP bool
	// APIURL is the OMA API URL given to VMAs; empty means http://localhost:8082.
	APIURL string
	// API configures the REST API: the browser origins it allows, TLS, the
	// idle timeout. Its Logger and Now are the OMA's.
	API api.Config
	// MetricsAddr, when set, is a second listen address that serves GET
	// /metrics without a token, for a Prometheus on a management network;
	// the API serves it too, to a token of scope read.
	MetricsAddr string
	// NATSAddr is the NATS listen address; empty means 127.0.0.1:4222 and
	// a port 0 picks a free one.
	NATSAddr string
	// NATSMonitorPort is the NATS HTTP monitoring port; 0 turns it off.
	NATSMonitorPort int
	// NATSMaxPayload is the largest NATS message, in bytes; 0 means 1 MiB.
	NATSMaxPayload int32
	// NATSServerName is the embedded NATS server's name, which must differ
	// on every node of a cluster; empty means "godwit-oma".
	NATSServerName string
	// Cluster, when its Name is set, makes the embedded NATS server one
	// node of a JetStream cluster (its Secret is read from KeysDir).
	Cluster bus.ClusterConfig
	// NATSURL, when set, is the client URLs (comma-separated) of a
	// cluster's nodes, run by other OMAs or by 'oma node' with the same
	// KeysDir: the OMA connects to them and runs no NATS server.
	NATSURL string
	// StreamReplicas is how many nodes of a cluster keep each stream; 0
	// means 1.
	StreamReplicas int
	// Standby starts the OMA as a standby on a cluster: it follows the
	// active OMA's state and takes over when its lease lapses. (On a
	// cluster every OMA waits for the lease; a standby also leaves a new
	// cluster's first lease to the OMA started without it.)
	Standby bool
	// LeaseTTL is how long the active OMA's lease lasts without a renewal:
	// a standby takes over that long after the active OMA stopped; 0
	// means standby.DefaultLeaseTTL.
	LeaseTTL time.Duration
	// KeysDir holds the keys every node and OMA of a cluster share
	// (CreateClusterKeys): the internal NATS key, the observer's and the
	// admin's, the routes' password and the at-rest key. A cluster
	// (Cluster or NATSURL) needs it.
	KeysDir string
	// FirstPort and LastPort bound the NBD port pool; zero means 10100-10199.
	FirstPort, LastPort int
	// NBDPortsPerVMA is how many ports of the NBD port pool each VMA gets
	// at registration as its share (its jobs' exports, its SSH key's
	// forwards); 0 means vmas.DefaultNBDPortsPerVMA, at most the pool.
	NBDPortsPerVMA int
	// SSHDPort is the port of the sshd the VMAs tunnel to, when known: no
	// VMA's API port may take it (nor the API's, NATS's or the pool's). 0:
	// unknown (ports below 1024, 22 and 443, are refused anyway).
	SSHDPort int
	// Nbdkit is the nbdkit binary the exports run; empty means "nbdkit" on
	// the PATH. (Tests put a wrapper here that adds nbdkit filters.)
	Nbdkit string
	// ExportAddr is the address nbdkit listens on; empty means 127.0.0.1.
	ExportAddr string
	// ExportHost is the host VMAs are told to reach exports at; empty means ExportAddr.
	ExportHost string
	// TunnelDir holds the Unix sockets the VMAs' SSH sessions forward
	// their APIs on, <TunnelDir>/<id>.sock; empty means DataDir/tunnels.
	// The OMA holds each registered VMA's API port on 127.0.0.1 and
	// forwards into its socket (oma/tunnels).
	TunnelDir string
	// DiscoverTimeout bounds POST /api/v1/discover; 0 means 60s.
	DiscoverTimeout time.Duration
	// PendingJobTTL is how long a job may stay pending (never started)
	// before it expires; 0 means jobs.DefaultPendingJobTTL (24h).
	PendingJobTTL time.Duration
	// MaxPendingJobs is how many pending jobs one API token may have; 0
	// means jobs.DefaultMaxPendingJobs.
	MaxPendingJobs int
	// VerifyParallel is how many VMAs' verify requests are hashed at once;
	// 0 means jobs.DefaultVerifyParallel.
	VerifyParallel int
	// VerifyRate bounds the bytes per second read from the volumes to
	// answer verify requests, to spare the disks; 0 means no bound.
	VerifyRate int64
	// VerifyLimiter, when set, is that bound instead of VerifyRate. (Tests
	// hold the OMA's verification with it.)
	VerifyLimiter jobs.Limiter
	// AtRestKeyFile holds the key that seals the registered vCenters'
	// passwords (mode 0600, created on first start); empty means
	// DataDir/at-rest.key.
	AtRestKeyFile string
	// MinSyncInterval is the shortest interval of a plan's schedule; 0
	// means plans.DefaultMinSyncInterval (a minute).
	MinSyncInterval time.Duration
	// PlanPoll is how often the plans' schedules tick; 0 means a second.
	PlanPoll time.Duration
	// HeartbeatTimeout is how long after its last heartbeat a VMA gets no
	// more jobs from the queue; 0 means queue.DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// PauseSnapshotMax is how long a job may stay paused with its
	// snapshot; 0 means jobs.DefaultPauseSnapshotMax.
	PauseSnapshotMax time.Duration
	// TakeoverGrace is how long a running job's VMA may be gone, after
	// HeartbeatTimeout, before another VMA takes the job over; 0 means
	// jobs.DefaultTakeoverGrace.
	TakeoverGrace time.Duration
	// Cutover configures the cutovers (its DataDir is DataDir).
	Cutover cutover.Config
	// StreamMaxAge and StreamMaxBytes limit what each stream keeps; zero
	// means 30 days and 1 GiB.
	StreamMaxAge   time.Duration
	StreamMaxBytes int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives every part's log; nil discards.
	Logger *slog.Logger
}

// withDefaults fills the zero fields of cfg and checks the rest.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.DataDir == "" {
		return cfg, errors.New("oma: empty data dir")
	}
	if cfg.StateDir == "" {
		cfg.StateDir = cfg.DataDir
	}
	if cfg.APIAddr == "" {
		cfg.APIAddr = DefaultAPIAddr
	}
	apiHost, _, err := splitHostPort(cfg.APIAddr)
	if err != nil {
		return cfg, fmt.Errorf("api address %q: %w", cfg.APIAddr, err)
	}
	if !loopback(apiHost) && cfg.API.HTTP.TLSCertFile == "" && !cfg.APIInsecureHTTP {
		return cfg, fmt.Errorf("api address %s is not loopback and would serve plain HTTP, bearer tokens and vCenter passwords in clear: "+
			"serve HTTPS (-api-tls-cert and -api-tls-key), listen on loopback (-api-addr 127.0.0.1:8082), or allow it with -api-insecure-http", cfg.APIAddr)
	}
	if cfg.APIURL == "" {
		cfg.APIURL = "http://localhost:8082"
	}
	if cfg.NATSAddr == "" {
		cfg.NATSAddr = "127.0.0.1:4222"
	}
	if _, _, err := splitHostPort(cfg.NATSAddr); err != nil {
		return cfg, fmt.Errorf("nats address %q: %w", cfg.NATSAddr, err)
	}
	if cfg.Cluster.Name != "" && cfg.NATSURL != "" {
		return cfg, errors.New("a cluster name and a NATS URL: run a node of the cluster (-cluster-name) or connect to one (-nats-url), not both")
	}
	if (cfg.Cluster.Name != "" || cfg.NATSURL != "") && cfg.KeysDir == "" {
		return cfg, errors.New("a cluster needs the keys every node shares (-cluster-keys DIR, made once by 'oma cluster-keys')")
	}
	if cfg.Cluster.Name == "" && (cfg.Cluster.Listen != "" || len(cfg.Cluster.Routes) > 0) {
		return cfg, errors.New("cluster routes without a cluster name (-cluster-name)")
	}
	if cfg.StreamReplicas < 0 || cfg.StreamReplicas > 5 {
		return cfg, fmt.Errorf("stream replicas %d: want 1 to 5", cfg.StreamReplicas)
	}
	if cfg.Standby && cfg.Cluster.Name == "" && cfg.NATSURL == "" {
		return cfg, errors.New("a standby OMA needs a cluster to follow the active one on (-cluster-name or -nats-url)")
	}
	if cfg.LeaseTTL < 0 || (cfg.LeaseTTL > 0 && cfg.LeaseTTL < time.Second) {
		return cfg, fmt.Errorf("lease TTL %s: want 1s or more", cfg.LeaseTTL)
	}
	if cfg.StreamReplicas > 1 && cfg.Cluster.Name == "" && cfg.NATSURL == "" {
		return cfg, fmt.Errorf("stream replicas %d on one NATS server: replicas need a cluster (-cluster-name or -nats-url)", cfg.StreamReplicas)
	}
	if cfg.FirstPort == 0 && cfg.LastPort == 0 {
		cfg.FirstPort, cfg.LastPort = 10100, 10199
	}
	if cfg.FirstPort < 1 || cfg.LastPort > 65535 || cfg.FirstPort > cfg.LastPort {
		return cfg, fmt.Errorf("nbd port pool %d-%d: want 1 <= first <= last <= 65535", cfg.FirstPort, cfg.LastPort)
	}
	if cfg.NBDPortsPerVMA < 0 {
		return cfg, fmt.Errorf("nbd ports per vma %d: want 1 or more (0: %d)", cfg.NBDPortsPerVMA, vmas.DefaultNBDPortsPerVMA)
	}
	if cfg.ExportAddr == "" {
		cfg.ExportAddr = "127.0.0.1"
	}
	if cfg.ExportHost == "" {
		cfg.ExportHost = cfg.ExportAddr
	}
	if cfg.TunnelDir == "" {
		cfg.TunnelDir = filepath.Join(cfg.StateDir, "tunnels")
	}
	if cfg.DiscoverTimeout == 0 {
		cfg.DiscoverTimeout = 60 * time.Second
	}
	if cfg.StreamMaxAge == 0 {
		cfg.StreamMaxAge = 30 * 24 * time.Hour
	}
	if cfg.StreamMaxBytes == 0 {
		cfg.StreamMaxBytes = 1 << 30
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.API.Logger, cfg.API.Now = cfg.Logger, cfg.Now
	if err := cfg.API.Validate(); err != nil {
		return cfg, fmt.Errorf("api: %w", err)
	}
	return cfg, nil
}

// DefaultAPIAddr is where the REST API listens by default: loopback only.
const DefaultAPIAddr = "127.0.0.1:8082"

// loopback reports whether a listen host is this machine's loopback only:
// localhost or a loopback IP. An empty host or an unspecified address
// (0.0.0.0, ::) listens on every interface; any other name may resolve to
// anything.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitHostPort splits a listen address whose port may be 0.
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return host, port, nil
}

// Addrs are where a running OMA listens.
type Addrs struct {
	// API is the REST API's address, such as 127.0.0.1:8082.
	API string
	// NATS is the NATS client URL, such as nats://127.0.0.1:4222.
	NATS string
	// NATSMonitor is the monitoring URL, or "" when it is off.
	NATSMonitor string
	// Metrics is the address of the metrics listener, or "" without one.
	Metrics string
}

// Files are the credentials an OMA keeps in its data dir, each mode 0600.
type Files struct {
	// InitialToken holds the first API token; it exists only when the OMA
	// created it because no token existed.
	InitialToken string
	// Observer and Admin hold the NATS NKey seeds for the nats CLI.
	Observer, Admin string
}

// OMA is one OMA appliance. Run it once.
type OMA struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{}

	mu    sync.Mutex
	addrs Addrs
}

// New checks cfg and returns an OMA ready to Run.
func New(cfg Config) (*OMA, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &OMA{cfg: cfg, log: cfg.Logger, ready: make(chan struct{})}, nil
}

// Files returns where the OMA keeps its credentials.
func (o *OMA) Files() Files {
	if dir := o.cfg.KeysDir; dir != "" {
		k := ClusterKeys{Dir: dir}
		return Files{InitialToken: filepath.Join(o.cfg.StateDir, "initial-token"), Observer: k.Observer(), Admin: k.Admin()}
	}
	return Files{
		InitialToken: filepath.Join(o.cfg.StateDir, "initial-token"),
		Observer:     filepath.Join(o.cfg.DataDir, "observer.nk"),
		Admin:        filepath.Join(o.cfg.DataDir, "admin.nk"),
	}
}

// Ready is closed once the OMA serves: its API, NATS and consumers run.
func (o *OMA) Ready() <-chan struct{} { return o.ready }

// Addrs returns where the OMA listens; it is complete once Ready is closed.
func (o *OMA) Addrs() Addrs {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.addrs
}

// OpenStore opens the state database in dataDir, creating the directory.
// It fails with an error wrapping store.ErrLocked while an OMA runs there.
func OpenStore(dataDir string) (*store.Store, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	st, err := store.Open(filepath.Join(dataDir, "state.db"), time.Second)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%w: is an OMA running on %s?", err, dataDir)
	}
	return st, err
}

// Run runs the OMA until ctx ends, then shuts it down in order: HTTP
// drained, consumers stopped, nbdkit stopped, NATS drained and stopped,
// bbolt closed. It returns only after everything it started has stopped:
// nil after a clean shutdown, or the error that stopped it.
func (o *OMA) Run(ctx context.Context) error {
	cfg, log := o.cfg, o.log
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st, err := OpenStore(cfg.StateDir)
	if err != nil {
		return err
	}
	defer st.Close()
	files := o.Files()
	keyFile := cfg.AtRestKeyFile
	var secrets clusterSecrets
	switch {
	case cfg.KeysDir != "":
		if secrets, err = (ClusterKeys{Dir: cfg.KeysDir}).load(); err != nil {
			return err
		}
		if keyFile == "" {
			keyFile = ClusterKeys{Dir: cfg.KeysDir}.AtRest()
		}
	case keyFile == "":
		keyFile = filepath.Join(cfg.DataDir, "at-rest.key")
	}
	atRestKey, err := atrest.Load(keyFile)
	if err != nil {
		return err
	}
	observer, err := loadOrCreateUser(files.Observer)
	if err != nil {
		return err
	}
	admin, err := loadOrCreateUser(files.Admin)
	if err != nil {
		return err
	}
	// The registered VMAs are let in from the start: a reload of the
	// server's access while clients connect races inside nats-server
	// (2.15: its authorization check reads a connecting client's options
	// as they are written), and VMAs reconnect as soon as it listens.
	access := bus.Access{Observers: []string{observer.publicKey}, Admins: []string{admin.publicKey}, VMAs: map[string]string{}}
	err = st.View(func(tx *bbolt.Tx) error {
		vmas, err := store.VMAs(tx)
		for _, v := range vmas {
			access.VMAs[v.ID] = v.NKey
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("registered VMAs: %w", err)
	}
	lag := metrics.NewApplyLag(cfg.Now)
	b, err := o.startBus(ctx, access, secrets, lag)
	if err != nil {
		return err
	}
	defer b.stop()
	srv, conn := b.server, b.conn
	lead, err := o.lead(ctx, st, b, access)
	if err != nil {
		return err
	}
	var leaseLost chan error // nil outside a cluster: never ready
	if lead != nil {
		defer lead.stop()
		leaseLost = lead.lost
	}
	if err := initialToken(st, files.InitialToken, cfg.Now(), log); err != nil {
		return err
	}

	exp := exports.New(exports.Config{FirstPort: cfg.FirstPort, LastPort: cfg.LastPort, BindAddr: cfg.ExportAddr, Nbdkit: cfg.Nbdkit, Logger: log.WithGroup("nbd")})
	defer exp.StopAll()
	l, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.APIAddr, err)
	}
	defer l.Close() // Serve closes it too; this is for a failed start
	var ml net.Listener
	if cfg.MetricsAddr != "" {
		if ml, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return fmt.Errorf("listen %s (-metrics-addr): %w", cfg.MetricsAddr, err)
		}
		defer ml.Close()
	}
	o.mu.Lock()
	o.addrs = Addrs{API: l.Addr().String(), NATS: b.url}
	if srv != nil {
		o.addrs.NATSMonitor = srv.MonitorURL()
	}
	if ml != nil {
		o.addrs.Metrics = ml.Addr().String()
	}
	o.mu.Unlock()

	ctl := control.New(control.Config{
		DataDir: cfg.DataDir, ExportHost: cfg.ExportHost, APIURL: cfg.APIURL, NATSURL: b.url,
		DiscoverTimeout: cfg.DiscoverTimeout, AppliedMaxAge: cfg.StreamMaxAge + 24*time.Hour, Now: cfg.Now, Logger: log,
		OMAPorts:      o.ownPorts(l.Addr(), b.ownURL()),
		PendingJobTTL: cfg.PendingJobTTL, MaxPendingJobs: cfg.MaxPendingJobs, NBDPortsPerVMA: cfg.NBDPortsPerVMA,
		VerifyParallel: cfg.VerifyParallel, VerifyLimiter: verifyLimiter(cfg),
		AtRestKey: atRestKey, MinSyncInterval: cfg.MinSyncInterval, PlanPoll: cfg.PlanPoll, HeartbeatTimeout: cfg.HeartbeatTimeout, PauseSnapshotMax: cfg.PauseSnapshotMax,
		TakeoverGrace: cfg.TakeoverGrace, Cutover: cfg.Cutover,
	}, st, conn, exp, b.access)
	if err := ctl.Restore(ctx); err != nil {
		return err
	}

	vmaPorts, err := tunnels.New(tunnels.Config{Dir: cfg.TunnelDir, Logger: log.WithGroup("tunnels")}, ctl)
	if err != nil {
		return err
	}

	portsCtx, stopPorts := context.WithCancel(ctx)
	portsDone := make(chan struct{})
	go func() { defer close(portsDone); vmaPorts.Run(portsCtx) }()
	defer func() { stopPorts(); <-portsDone }()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- ctl.Run(runCtx) }()
	apiCtx, stopAPI := context.WithCancel(ctx)
	defer stopAPI()
	apiErr := make(chan error, 1)
	apiCfg := cfg.API
	apiCfg.VMAPorts = vmaPorts
	if apiCfg.Metrics == nil {
		reg := metrics.Registry(metrics.New(st, metrics.Config{Version: version.String(), HeartbeatTimeout: cfg.HeartbeatTimeout}), lag)
		apiCfg.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
	}
	apiSrv := api.New(ctl, st, srv, apiCfg)
	con, err := console.New(console.Config{API: apiSrv.Handler(), JetStream: conn.JetStream(), AllowOrigins: apiCfg.AllowOrigins,
		Now: cfg.Now, Logger: log.WithGroup("console")})
	if err != nil {
		return err
	}
	apiSrv.SetPages(con.Handler())
	consoleDone := make(chan struct{})
	go func() { defer close(consoleDone); con.Run(apiCtx) }()
	defer func() { stopAPI(); <-consoleDone }()
	go func() { apiErr <- apiSrv.Serve(apiCtx, l) }()
	if ml != nil {
		metricsDone := make(chan struct{})
		go func() {
			defer close(metricsDone)
			only := http.NewServeMux()
			only.Handle("GET /metrics", apiCfg.Metrics)
			if err := httpserver.Serve(apiCtx, ml, only, httpserver.Config{}); err != nil {
				log.Error("metrics listener failed", "addr", ml.Addr().String(), "err", err)
			}
		}()
		defer func() { stopAPI(); <-metricsDone }()
	}

	log.Info("oma ready", "api", l.Addr().String(), "nats", b.url,
		"observer_nkey", observer.path, "admin_nkey", admin.path, "nbd_ports", fmt.Sprintf("%d-%d", cfg.FirstPort, cfg.LastPort),
		"tunnel_dir", cfg.TunnelDir)
	close(o.ready)

	select {
	case err = <-apiErr: // ctx ended and requests drained, or the listener failed
		stopRun()
		if rerr := <-runErr; err == nil {
			err = rerr
		}
	case err = <-leaseLost:
		stopAPI()
		stopRun()
		<-apiErr
		<-runErr
		err = fmt.Errorf("stopped acting: %w", err)
	case err = <-runErr:
		stopAPI()
		aerr := <-apiErr
		if ctx.Err() != nil { // shutting down: the consumers ended first
			err = aerr
		} else { // the consumers cannot go on: stop serving too
			err = fmt.Errorf("consumers stopped: %w", err)
		}
	}
	log.Info("oma stopped")
	return err
}

// ownPorts lists the OMA's own ports, which no VMA's API port may take:
// the API's (as bound), NATS's (its client URL), the monitoring port, the
// sshd's when known, and the NBD pool.
func (o *OMA) ownPorts(api net.Addr, natsURL string) []vmas.PortRange {
	cfg := o.cfg
	var own []vmas.PortRange
	add := func(name string, first, last int) {
		if first > 0 {
			own = append(own, vmas.PortRange{Name: name, First: first, Last: last})
		}
	}
	if ta, ok := api.(*net.TCPAddr); ok {
		add("API", ta.Port, ta.Port)
	}
	if _, p, err := net.SplitHostPort(strings.TrimPrefix(natsURL, "nats://")); err == nil {
		n, _ := strconv.Atoi(p)
		add("NATS", n, n)
	}
	add("NATS monitoring", cfg.NATSMonitorPort, cfg.NATSMonitorPort)
	add("sshd", cfg.SSHDPort, cfg.SSHDPort)
	add("NBD port pool", cfg.FirstPort, cfg.LastPort)
	return own
}

// initialToken gives the tokens from before scopes the admin scope, which
// is what they could do, and creates a first API token (admin) when none
// exists and writes it to path (mode 0600); the log names the file, never
// the token.
func initialToken(st *store.Store, path string, now time.Time, log *slog.Logger) error {
	migrated, err := tokens.MigrateScopes(st)
	if err != nil {
		return err
	}
	if migrated > 0 {
		log.Info("API tokens from before scopes are admin tokens", "tokens", migrated)
	}
	n, err := tokens.Count(st)
	if err != nil || n > 0 {
		return err
	}
	secret, err := tokens.Create(st, "initial", tokens.Admin, now)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write initial token: %w", err)
	}
	log.Info("created the initial API token", "file", path)
	return nil
}

// verifyLimiter is the bound of cfg on reading volumes for verify requests,
// nil for none.
func verifyLimiter(cfg Config) jobs.Limiter {
	switch {
	case cfg.VerifyLimiter != nil:
		return cfg.VerifyLimiter
	case cfg.VerifyRate > 0:
		return copier.NewLimiter(cfg.VerifyRate, nil)
	}
	return nil
}
