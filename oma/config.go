package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/flagconf"
	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/oma/api"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/oma/authkeys"
	"github.com/godwit/godwit/oma/cutover"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/plans"
	"github.com/godwit/godwit/oma/queue"
	"github.com/godwit/godwit/oma/standby"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vmas"
)

// config is the OMA's command line.
type config struct {
	dataDir         string
	stateDir        string
	apiAddr         string
	metricsAddr     string
	apiURL          string
	natsAddr        string
	natsMonitorPort int
	nbdPorts        string
	nbdPortsPerVMA  int
	exportAddr      string
	exportHost      string
	discoverTimeout time.Duration
	streamMaxAge    time.Duration
	streamMaxBytes  int64
	allowOrigins    string
	tlsCert         string
	tlsKey          string
	insecureHTTP    bool
	sshdPort        int
	pendingJobTTL   time.Duration
	maxPendingJobs  int
	verifyParallel  int
	verifyRate      int64
	bodyTimeout     time.Duration
	maxConns        int
	tunnelDir       string
	secretKey       string
	minSyncInterval time.Duration
	vmaTimeout      time.Duration
	takeoverGrace   time.Duration
	targetDir       string
	accel           string
	bootTimeout     time.Duration
	pauseMax        time.Duration
	cluster         clusterFlags
}

// clusterFlags are the flags that make the OMA a node of a NATS cluster,
// or connect it to one; oma node takes them too.
type clusterFlags struct {
	name       string
	listen     string
	routes     string
	serverName string
	tlsCert    string
	tlsKey     string
	tlsCA      string
	keysDir    string
	natsURL    string
	replicas   int
	standby    bool
	leaseTTL   time.Duration
}

// newFlagSet declares the flags every oma command has; its usage lists the
// subcommands before the flags.
func newFlagSet(name string, cfg *config, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), subcommands)
		fmt.Fprintf(fs.Output(), "\nFlags of %s (also $GODWIT_<FLAG> and -config FILE):\n", name)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.dataDir, "data", filepath.Join("data", "oma"), "data directory: state, volumes, exports, keys")
	fs.StringVar(&cfg.stateDir, "state-dir", "", "directory of this OMA's own state (state.db, the NATS store, tunnel sockets, initial-token), when -data is shared with a standby OMA (default: -data)")
	fs.String("config", "", "JSON config file; keys are flag names")
	return fs
}

// declareRunFlags declares the flags of running the OMA.
func declareRunFlags(fs *flag.FlagSet, cfg *config) {
	fs.StringVar(&cfg.apiAddr, "api-addr", appliance.DefaultAPIAddr, "REST API listen address; one that is not loopback needs -api-tls-cert and -api-tls-key, or -api-insecure-http")
	fs.StringVar(&cfg.apiURL, "api-url", "http://localhost:8082", "OMA API URL given to VMAs")
	fs.StringVar(&cfg.allowOrigins, "api-allow-origin", "", "comma-separated browser origins (scheme://host[:port]) allowed to call the API besides its own")
	fs.StringVar(&cfg.tlsCert, "api-tls-cert", "", "PEM certificate (chain) to serve the API over HTTPS; needs -api-tls-key")
	fs.StringVar(&cfg.tlsKey, "api-tls-key", "", "PEM private key to serve the API over HTTPS; needs -api-tls-cert")
	fs.BoolVar(&cfg.insecureHTTP, "api-insecure-http", false, "allow plain HTTP on an -api-addr that is not loopback (tokens and vCenter passwords in clear)")
	fs.DurationVar(&cfg.bodyTimeout, "api-body-timeout", httpserver.DefaultBodyTimeout, "how long a request body may take to arrive; a slower one is cut (408)")
	fs.IntVar(&cfg.maxConns, "api-max-conns", httpserver.DefaultMaxConns, "API connections held at once; one more is answered 503")
	declareForwardFlags(fs, cfg)
	fs.StringVar(&cfg.metricsAddr, "metrics-addr", "", "a second listen address serving GET /metrics without a token, for Prometheus (such as 127.0.0.1:9108); the API serves it to a read token either way")
	fs.IntVar(&cfg.natsMonitorPort, "nats-monitor-port", 0, "NATS HTTP monitoring port on the NATS host; 0 turns it off")
	fs.DurationVar(&cfg.discoverTimeout, "discover-timeout", 60*time.Second, "how long POST /api/v1/discover waits for a VMA")
	fs.DurationVar(&cfg.pendingJobTTL, "pending-job-ttl", jobs.DefaultPendingJobTTL, "how long a job may stay pending (created, never started) before it expires and its NBD port is released")
	fs.IntVar(&cfg.maxPendingJobs, "max-pending-jobs", jobs.DefaultMaxPendingJobs, "pending jobs one API token may have at once; one more is refused (429)")
	fs.IntVar(&cfg.verifyParallel, "verify-parallel", jobs.DefaultVerifyParallel, "verify requests of VMAs hashed at once (each reads a volume)")
	fs.Int64Var(&cfg.verifyRate, "verify-rate", 0, "bytes per second read from the volumes to answer verify requests, over all of them; 0: no bound")
	fs.StringVar(&cfg.secretKey, "secret-key", "", "file of the key that encrypts the registered vCenters' passwords at rest (mode 0600, created on first start; default: <data>/at-rest.key); keep it out of backups of state.db")
	fs.DurationVar(&cfg.minSyncInterval, "min-sync-interval", plans.DefaultMinSyncInterval, "shortest interval a plan's sync schedule may have")
	fs.DurationVar(&cfg.pauseMax, "pause-snapshot-max", jobs.DefaultPauseSnapshotMax, "how long a job may stay paused with its VMware snapshot; then it ends paused-expired and the snapshot is removed")
	fs.DurationVar(&cfg.vmaTimeout, "vma-heartbeat-timeout", queue.DefaultHeartbeatTimeout, "how long after its last heartbeat a VMA gets no more jobs from the queue, and its waiting jobs go to another VMA (VMAs beat every 10s)")
	fs.StringVar(&cfg.targetDir, "cutover-target-dir", "", "where a cutover writes the converted disks, domain XML and CloudStack commands when it names no target_dir: <dir>/<vm name>-<vm id> (default <data>/target)")
	fs.StringVar(&cfg.accel, "accel", "", "how cutover conversions and boot checks run guests: kvm or tcg (default: probed once with a real tiny boot under KVM, else tcg)")
	fs.DurationVar(&cfg.bootTimeout, "boot-check-timeout", 0, "how long a cutover's boot check waits for the login prompt (default 10m under TCG, 3m under KVM)")
	fs.DurationVar(&cfg.takeoverGrace, "vma-takeover-grace", jobs.DefaultTakeoverGrace, "how long after -vma-heartbeat-timeout a gone VMA's running jobs wait before another VMA takes them over from their checkpoints")
	declareClusterFlags(fs, &cfg.cluster)
	fs.StringVar(&cfg.cluster.natsURL, "nats-url", "", "client URLs (comma-separated) of a NATS cluster's nodes, run by other OMAs or 'oma node' with the same -cluster-keys: connect to them and run no NATS server")
	fs.BoolVar(&cfg.cluster.standby, "standby", false, "start as a standby OMA on the cluster: follow the active OMA's state and take over when its lease lapses (needs -cluster-name or -nats-url, the same -cluster-keys, and -data on storage both OMAs reach, with -state-dir its own)")
	fs.DurationVar(&cfg.cluster.leaseTTL, "lease-ttl", standby.DefaultLeaseTTL, "how long the active OMA's lease lasts without a renewal: a standby takes over that long after the active OMA stops")
	fs.IntVar(&cfg.cluster.replicas, "stream-replicas", 1, "how many nodes of the cluster keep each stream and bucket (3 survives the loss of one node)")
	fs.DurationVar(&cfg.streamMaxAge, "stream-max-age", 30*24*time.Hour, "how long streams keep events")
	fs.Int64Var(&cfg.streamMaxBytes, "stream-max-bytes", 1<<30, "bytes each stream keeps at most")
}

// declareClusterFlags declares the flags of a node of a NATS cluster.
func declareClusterFlags(fs *flag.FlagSet, c *clusterFlags) {
	fs.StringVar(&c.name, "cluster-name", "", "make the embedded NATS server a node of the JetStream cluster of this name (needs -cluster-listen, -routes, -cluster-keys and a unique -server-name)")
	fs.StringVar(&c.listen, "cluster-listen", "", "address the node's routes listen on, such as 10.0.0.1:6222")
	fs.StringVar(&c.routes, "routes", "", "the nodes' route URLs, comma-separated (nats-route://host:6222); the node's own may be among them")
	fs.StringVar(&c.serverName, "server-name", "", "the NATS node's name, unique in the cluster (default godwit-oma)")
	fs.StringVar(&c.tlsCert, "cluster-tls-cert", "", "PEM certificate the node presents on its routes (routes are then mutual TLS; needs -cluster-tls-key and -cluster-tls-ca)")
	fs.StringVar(&c.tlsKey, "cluster-tls-key", "", "PEM private key of -cluster-tls-cert")
	fs.StringVar(&c.tlsCA, "cluster-tls-ca", "", "PEM CA that signed the other nodes' route certificates")
	fs.StringVar(&c.keysDir, "cluster-keys", "", "directory of the keys every node and OMA of a cluster share (made once by 'oma cluster-keys', copied to each machine): NATS keys, the routes' password, the at-rest key")
}

// bus returns the cluster's part of the appliance's configuration.
func (c *clusterFlags) bus() bus.ClusterConfig {
	return bus.ClusterConfig{Name: c.name, Listen: c.listen, Routes: flagconf.List(c.routes), TLSCert: c.tlsCert, TLSKey: c.tlsKey, TLSCA: c.tlsCA}
}

// check refuses a cluster half given.
func (c *clusterFlags) check() error {
	if c.name != "" && (c.listen == "" || c.routes == "") {
		return errors.New("-cluster-name needs -cluster-listen and -routes")
	}
	if c.name != "" && c.serverName == "" {
		return errors.New("-cluster-name needs -server-name, unique in the cluster")
	}
	if (c.tlsCert != "" || c.tlsKey != "" || c.tlsCA != "") && (c.tlsCert == "" || c.tlsKey == "" || c.tlsCA == "") {
		return errors.New("-cluster-tls-cert, -cluster-tls-key and -cluster-tls-ca go together")
	}
	return nil
}

// declareForwardFlags declares the flags that say what a VMA reaches
// through its SSH connection: running the OMA and writing authorized_keys
// lines take the same ones.
func declareForwardFlags(fs *flag.FlagSet, cfg *config) {
	fs.StringVar(&cfg.natsAddr, "nats-addr", "127.0.0.1:4222", "NATS listen address (loopback by default)")
	fs.StringVar(&cfg.nbdPorts, "nbd-ports", "10100-10199", "NBD export port pool, FIRST-LAST")
	fs.IntVar(&cfg.nbdPortsPerVMA, "nbd-ports-per-vma", vmas.DefaultNBDPortsPerVMA, "ports of the NBD pool each VMA gets at registration: its jobs' exports use only them, its SSH key may open only them (at most the pool)")
	fs.StringVar(&cfg.exportAddr, "export-addr", "127.0.0.1", "address nbdkit listens on")
	fs.StringVar(&cfg.exportHost, "export-host", "", "host VMAs are told to reach exports at (default: -export-addr)")
	fs.IntVar(&cfg.sshdPort, "sshd-port", 0, "port of the OMA's sshd the VMAs tunnel to, which no VMA's API port may take (0: unknown; below 1024 is refused anyway)")
	fs.StringVar(&cfg.tunnelDir, "tunnel-dir", "", "directory (mode 0700) of the Unix sockets the VMAs' SSH tunnels forward their APIs on; the OMA holds each VMA's API port and forwards into <dir>/<id>.sock (default: <data>/tunnels)")
}

// ownPorts lists the OMA's own ports as its flags say (API, NATS, sshd,
// NBD pool), which no VMA's API port may take.
func (cfg *config) ownPorts() ([]vmas.PortRange, error) {
	first, last, err := cfg.pool()
	if err != nil {
		return nil, err
	}
	var own []vmas.PortRange
	addrs := []struct{ name, addr string }{{"API", cfg.apiAddr}, {"NATS", cfg.natsAddr}}
	if cfg.metricsAddr != "" {
		addrs = append(addrs, struct{ name, addr string }{"metrics", cfg.metricsAddr})
	}
	for _, a := range addrs {
		_, p, err := net.SplitHostPort(a.addr)
		if err != nil {
			return nil, fmt.Errorf("%s address %q: %w", a.name, a.addr, err)
		}
		if n, err := strconv.Atoi(p); err == nil && n > 0 {
			own = append(own, vmas.PortRange{Name: a.name, First: n, Last: n})
		}
	}
	if cfg.sshdPort > 0 {
		own = append(own, vmas.PortRange{Name: "sshd", First: cfg.sshdPort, Last: cfg.sshdPort})
	}
	return append(own, vmas.PortRange{Name: "NBD port pool", First: first, Last: last}), nil
}

// socketDir returns -tunnel-dir, absolute, <data>/tunnels when not given.
func (cfg *config) socketDir() (string, error) {
	dir := cfg.tunnelDir
	if dir == "" {
		dir = filepath.Join(cfg.state(), "tunnels")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("-tunnel-dir: %w", err)
	}
	return abs, nil
}

// state returns -state-dir, or -data without it.
func (cfg *config) state() string {
	if cfg.stateDir != "" {
		return cfg.stateDir
	}
	return cfg.dataDir
}

// pool parses -nbd-ports.
func (cfg *config) pool() (first, last int, err error) {
	a, b, ok := strings.Cut(cfg.nbdPorts, "-")
	first, err1 := strconv.Atoi(a)
	last, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || first < 1 || last > 65535 || first > last {
		return 0, 0, fmt.Errorf("-nbd-ports %q: want FIRST-LAST, such as 10100-10199", cfg.nbdPorts)
	}
	return first, last, nil
}

// share returns the NBD port pool and -nbd-ports-per-vma.
func (cfg *config) share() (store.Ports, int, error) {
	first, last, err := cfg.pool()
	if err != nil {
		return store.Ports{}, 0, err
	}
	if cfg.nbdPortsPerVMA < 1 {
		return store.Ports{}, 0, fmt.Errorf("-nbd-ports-per-vma %d: want 1 or more", cfg.nbdPortsPerVMA)
	}
	return store.Ports{First: first, Last: last}, cfg.nbdPortsPerVMA, nil
}

// forwards returns what a VMA may reach through its SSH connection, as the
// OMA run with these flags serves it.
func (cfg *config) forwards() (authkeys.Forwards, error) {
	first, last, err := cfg.pool()
	if err != nil {
		return authkeys.Forwards{}, err
	}
	host := cfg.exportHost
	if host == "" {
		host = cfg.exportAddr
	}
	return authkeys.Forwards{NATS: cfg.natsAddr, NBDHost: host, FirstPort: first, LastPort: last}, nil
}

// parse parses args over the environment and the config file.
func parse(fs *flag.FlagSet, args []string) error { return flagconf.Parse(fs, args) }

// appliance turns the command line into the appliance's configuration.
func (cfg *config) appliance() (appliance.Config, error) {
	pool, perVMA, err := cfg.share()
	if err != nil {
		return appliance.Config{}, err
	}
	firstPort, lastPort := pool.First, pool.Last
	if cfg.streamMaxBytes < 1 || cfg.streamMaxAge <= 0 || cfg.discoverTimeout <= 0 {
		return appliance.Config{}, fmt.Errorf("-stream-max-bytes, -stream-max-age and -discover-timeout must be positive")
	}
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return appliance.Config{}, fmt.Errorf("-api-tls-cert and -api-tls-key go together: give both or neither")
	}
	if cfg.bodyTimeout <= 0 || cfg.maxConns < 1 {
		return appliance.Config{}, fmt.Errorf("-api-body-timeout and -api-max-conns must be positive")
	}
	if cfg.verifyParallel < 1 {
		return appliance.Config{}, fmt.Errorf("-verify-parallel %d: want at least 1", cfg.verifyParallel)
	}
	if cfg.verifyRate < 0 {
		return appliance.Config{}, fmt.Errorf("-verify-rate %d: want 0 (no bound) or bytes per second", cfg.verifyRate)
	}
	if cfg.minSyncInterval <= 0 {
		return appliance.Config{}, fmt.Errorf("-min-sync-interval %s: want a positive duration", cfg.minSyncInterval)
	}
	if cfg.pauseMax <= 0 {
		return appliance.Config{}, fmt.Errorf("-pause-snapshot-max %s: want a positive duration", cfg.pauseMax)
	}
	if cfg.vmaTimeout <= 0 {
		return appliance.Config{}, fmt.Errorf("-vma-heartbeat-timeout %s: want a positive duration", cfg.vmaTimeout)
	}
	if cfg.pendingJobTTL <= 0 || cfg.maxPendingJobs < 1 {
		return appliance.Config{}, fmt.Errorf("-pending-job-ttl and -max-pending-jobs must be positive")
	}
	tunnelDir, err := cfg.socketDir()
	if err != nil {
		return appliance.Config{}, err
	}
	if err := cfg.cluster.check(); err != nil {
		return appliance.Config{}, err
	}
	var ac api.Config
	ac.AllowOrigins = flagconf.List(cfg.allowOrigins)
	ac.HTTP.TLSCertFile, ac.HTTP.TLSKeyFile = cfg.tlsCert, cfg.tlsKey
	ac.HTTP.BodyTimeout, ac.HTTP.MaxConns = cfg.bodyTimeout, cfg.maxConns
	return appliance.Config{
		DataDir:         cfg.dataDir,
		StateDir:        cfg.stateDir,
		API:             ac,
		APIAddr:         cfg.apiAddr,
		MetricsAddr:     cfg.metricsAddr,
		APIInsecureHTTP: cfg.insecureHTTP,
		APIURL:          cfg.apiURL,
		NATSAddr:        cfg.natsAddr,
		NATSMonitorPort: cfg.natsMonitorPort,
		NATSServerName:  cfg.cluster.serverName,
		Cluster:         cfg.cluster.bus(),
		NATSURL:         cfg.cluster.natsURL,
		StreamReplicas:  cfg.cluster.replicas,
		KeysDir:         cfg.cluster.keysDir,
		Standby:         cfg.cluster.standby,
		LeaseTTL:        cfg.cluster.leaseTTL,
		FirstPort:       firstPort,
		LastPort:        lastPort,
		NBDPortsPerVMA:  perVMA,
		SSHDPort:        cfg.sshdPort,
		ExportAddr:      cfg.exportAddr,
		ExportHost:      cfg.exportHost,
		TunnelDir:       tunnelDir,
		DiscoverTimeout: cfg.discoverTimeout,
		PendingJobTTL:   cfg.pendingJobTTL,
		MaxPendingJobs:  cfg.maxPendingJobs,
		VerifyParallel:  cfg.verifyParallel,
		VerifyRate:      cfg.verifyRate,
		StreamMaxAge:    cfg.streamMaxAge,
		StreamMaxBytes:  cfg.streamMaxBytes,
		AtRestKeyFile:   cfg.secretKey,
		MinSyncInterval: cfg.minSyncInterval, HeartbeatTimeout: cfg.vmaTimeout, PauseSnapshotMax: cfg.pauseMax, TakeoverGrace: cfg.takeoverGrace,
		Cutover: cutover.Config{TargetDir: cfg.targetDir, Accel: cfg.accel, BootTimeout: cfg.bootTimeout, VirtioWin: os.Getenv("VIRTIO_WIN")},
	}, nil
}
