package appliance

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/oma/atrest"
	"github.com/godwit/godwit/oma/metrics"
	"github.com/godwit/godwit/oma/standby"
	"github.com/godwit/godwit/oma/vmas"
)

// ClusterKeys are where the keys live that every node and every OMA of a
// cluster share, in one directory made once (CreateClusterKeys) and copied
// to each machine: so that the nodes let in the same users, and an OMA
// that takes over reads what the one before it wrote.
type ClusterKeys struct {
	// Dir is the directory (mode 0700).
	Dir string
}

// Internal is the seed of the OMA's internal NATS user.
func (k ClusterKeys) Internal() string { return filepath.Join(k.Dir, "oma.nk") }

// Observer and Admin are the seeds of the observer and admin NATS users.
func (k ClusterKeys) Observer() string { return filepath.Join(k.Dir, "observer.nk") }

// Admin is the seed of the admin NATS user.
func (k ClusterKeys) Admin() string { return filepath.Join(k.Dir, "admin.nk") }

// RouteSecret is the password of the routes between the nodes.
func (k ClusterKeys) RouteSecret() string { return filepath.Join(k.Dir, "route.secret") }

// AtRest is the key that seals the registered vCenters' passwords.
func (k ClusterKeys) AtRest() string { return filepath.Join(k.Dir, "at-rest.key") }

// CreateClusterKeys makes the keys of a new cluster in dir, which must not
// hold any of them yet.
func CreateClusterKeys(dir string) (ClusterKeys, error) {
	k := ClusterKeys{Dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return k, fmt.Errorf("cluster keys: %w", err)
	}
	for _, f := range []string{k.Internal(), k.Observer(), k.Admin(), k.RouteSecret(), k.AtRest()} {
		if _, err := os.Stat(f); err == nil {
			return k, fmt.Errorf("cluster keys: %s exists: a cluster's keys are made once, then copied to every machine", f)
		}
	}
	for _, f := range []string{k.Internal(), k.Observer(), k.Admin()} {
		if _, err := loadOrCreateUser(f); err != nil {
			return k, fmt.Errorf("cluster keys: %w", err)
		}
	}
	if err := os.WriteFile(k.RouteSecret(), []byte(rand.Text()+rand.Text()+"\n"), 0o600); err != nil {
		return k, fmt.Errorf("cluster keys: %w", err)
	}
	if _, err := atrest.Load(k.AtRest()); err != nil {
		return k, fmt.Errorf("cluster keys: %w", err)
	}
	return k, nil
}

// clusterSecrets are the keys a node reads from ClusterKeys.
type clusterSecrets struct {
	internal []byte // the internal user's seed
	route    string // the routes' password
}

// load reads the internal seed and the route password; both must exist
// (CreateClusterKeys) and be readable by their owner only.
func (k ClusterKeys) load() (clusterSecrets, error) {
	var s clusterSecrets
	for _, f := range []string{k.Internal(), k.Observer(), k.Admin(), k.RouteSecret()} {
		info, err := os.Stat(f)
		if errors.Is(err, fs.ErrNotExist) {
			return s, fmt.Errorf("cluster keys: %s is missing: make the keys once with 'oma cluster-keys -dir DIR' and copy the directory to every machine", f)
		}
		if err != nil {
			return s, fmt.Errorf("cluster keys: %w", err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			return s, fmt.Errorf("cluster keys: %s is readable by others (mode %v): chmod 600 it", f, info.Mode().Perm())
		}
	}
	seed, err := os.ReadFile(k.Internal())
	if err != nil {
		return s, fmt.Errorf("cluster keys: %w", err)
	}
	route, err := os.ReadFile(k.RouteSecret())
	if err != nil {
		return s, fmt.Errorf("cluster keys: %w", err)
	}
	s.internal, s.route = []byte(strings.TrimSpace(string(seed))), strings.TrimSpace(string(route))
	if s.route == "" {
		return s, fmt.Errorf("cluster keys: %s is empty", k.RouteSecret())
	}
	return s, nil
}

// sharedAccess lets a cluster's nodes in on who may connect: SetAccess
// writes the access into the cluster's bucket, which every node follows
// (the OMA's own too), and applies it at once to the OMA's own node, if
// it runs one.
type sharedAccess struct {
	conn *bus.Conn
	own  *bus.Server // nil with an external cluster

	mu     sync.Mutex
	access bus.Access
}

// Access returns the access last set.
func (s *sharedAccess) Access() bus.Access {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.access
}

// SetAccess shares a with the cluster.
func (s *sharedAccess) SetAccess(a bus.Access) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.own != nil {
		if err := s.own.SetAccess(a); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.conn.ShareAccess(ctx, a); err != nil {
		return err
	}
	s.access = a
	return nil
}

// natsBus is the OMA's NATS: its own server (nil when it connects to a
// cluster run by others), its connection, and who sets the access.
type natsBus struct {
	server *bus.Server
	conn   *bus.Conn
	url    string // what clients are told: the server's URL, or the cluster's
	access vmas.AccessSetter
	stop   func() // drains the connection, then stops what startBus started
	// clustered says the OMA is on a cluster, with a lease and a standby.
	clustered bool
}

// ownURL is the URL of the OMA's own server, "" without one.
func (b *natsBus) ownURL() string {
	if b.server == nil {
		return ""
	}
	return b.server.ClientURL()
}

// startBus starts the OMA's NATS server (or connects to the cluster in
// cfg.NATSURL), connects, and makes the streams; in a cluster it shares
// access with every node through the access bucket, which its own node
// follows too.
func (o *OMA) startBus(ctx context.Context, access bus.Access, secrets clusterSecrets, lag *metrics.ApplyLag) (*natsBus, error) {
	cfg, log := o.cfg, o.log
	b := &natsBus{}
	var stops []func()
	b.stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	ccfg := bus.ClientConfig{Name: "oma", Source: "/godwit/oma", Logger: log, OnHandled: lag.Observe}
	if cfg.NATSURL == "" {
		srv, stopServer, err := startNode(ctx, bus.ServerConfig{StoreDir: filepath.Join(cfg.StateDir, "jetstream"),
			MonitorPort: cfg.NATSMonitorPort, MaxPayload: cfg.NATSMaxPayload, Name: cfg.NATSServerName, Cluster: cfg.Cluster,
			Access: access, Logger: log.WithGroup("nats")}, cfg.NATSAddr, secrets, log)
		if err != nil {
			return nil, err
		}
		stops = append(stops, stopServer)
		b.server, b.url, b.access = srv, srv.ClientURL(), srv
		if b.conn, err = srv.Connect(ctx, ccfg); err != nil {
			b.stop()
			return nil, err
		}
	} else {
		ccfg.NKeySeed, ccfg.InboxPrefix = secrets.internal, "_INBOX_OMA"
		var err error
		if b.conn, err = bus.Connect(ctx, cfg.NATSURL, ccfg); err != nil {
			return nil, fmt.Errorf("connect to the cluster: %w", err)
		}
		b.url = cfg.NATSURL
	}
	conn := b.conn
	stops = append(stops, func() {
		if err := conn.Drain(); err != nil {
			log.Error("drain nats", "err", err)
		}
	})
	clustered := cfg.Cluster.Name != "" || cfg.NATSURL != ""
	// On a cluster, the active OMA makes the streams once it holds the
	// lease (ensureCluster): two OMAs making them at once slow each other
	// down. The first OMA of a new cluster makes the lease's buckets; a
	// standby waits for them.
	var err error
	switch {
	case !clustered:
		err = conn.EnsureStreams(ctx, o.streamLimits())
	case !cfg.Standby:
		err = retryCluster(ctx, func(ctx context.Context) error {
			return standby.EnsureBuckets(ctx, conn.JetStream(), cfg.StreamReplicas)
		})
	}
	if err != nil {
		b.stop()
		return nil, err
	}
	if clustered {
		// The access is shared once this OMA is the active one (share).
		b.access = &sharedAccess{conn: conn, own: b.server, access: access}
		b.clustered = true
		if b.server != nil {
			fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			done := make(chan struct{})
			go func() { defer close(done); _ = b.server.FollowAccess(fctx, conn) }()
			// Before the connection drains: the watch uses it.
			stops = append(stops, func() { cancel(); <-done })
		}
	}
	return b, nil
}

// streamLimits are the limits of the OMA's streams.
func (o *OMA) streamLimits() bus.StreamLimits {
	return bus.StreamLimits{MaxAge: o.cfg.StreamMaxAge, MaxBytes: o.cfg.StreamMaxBytes, Replicas: o.cfg.StreamReplicas}
}

// ensureCluster makes, or updates, the streams and the buckets of a
// cluster: the active OMA's work once it holds the lease. A new cluster
// elects its JetStream leader a few seconds after its nodes meet: it tries
// again until ctx ends.
func (o *OMA) ensureCluster(ctx context.Context, conn *bus.Conn) error {
	limits := o.streamLimits()
	return retryCluster(ctx, func(ctx context.Context) error {
		if err := conn.EnsureStreams(ctx, limits); err != nil {
			return err
		}
		if err := conn.EnsureAccessBucket(ctx, limits.Replicas); err != nil {
			return err
		}
		return standby.EnsureBuckets(ctx, conn.JetStream(), limits.Replicas)
	})
}

// retryCluster calls fn again and again until it succeeds or ctx ends,
// on a cluster, with 2s to answer at first, then more
// each time up to 10s: a request to a node or leader that went away is
// never answered, and the cluster elects another within seconds.
func retryCluster(ctx context.Context, fn func(context.Context) error) error {
	for wait := 2 * time.Second; ; wait = min(wait*3/2, 10*time.Second) {
		actx, cancel := context.WithTimeout(ctx, wait)
		err := fn(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startNode starts an OMA's NATS server on addr (a port 0 picks a free
// one) with the cluster's secrets, and returns it with the function that
// shuts it down.
func startNode(ctx context.Context, sc bus.ServerConfig, addr string, secrets clusterSecrets, log *slog.Logger) (*bus.Server, func(), error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("nats address %q: %w", addr, err)
	}
	if port == 0 {
		port = -1 // bus: a free port
	}
	sc.Host, sc.Port, sc.Seed, sc.Cluster.Secret = host, port, secrets.internal, secrets.route
	srv, err := bus.StartServer(ctx, sc)
	if err != nil {
		return nil, nil, err
	}
	return srv, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Error("shut down nats", "err", err)
		}
	}, nil
}

// NodeConfig configures RunNode.
type NodeConfig struct {
	// DataDir holds the node's JetStream store.
	DataDir string
	// NATSAddr is the client listen address; empty means 127.0.0.1:4222.
	NATSAddr string
	// MonitorPort is the HTTP monitoring port; 0 turns it off.
	MonitorPort int
	// Name is the node's name, unique in the cluster.
	Name string
	// Cluster is the node's place in the cluster; its Secret is read from KeysDir.
	Cluster bus.ClusterConfig
	// KeysDir holds the cluster's keys (CreateClusterKeys).
	KeysDir string
	// Logger receives the node's log; nil discards.
	Logger *slog.Logger
}

// RunNode runs a NATS node of an OMA cluster and nothing else, until ctx
// ends: a third node for a quorum beside two OMAs, say. It lets in the
// OMAs (their internal key), the observer and the admin of KeysDir, and
// the VMAs the active OMA shares through the access bucket.
func RunNode(ctx context.Context, cfg NodeConfig) error {
	if cfg.DataDir == "" || cfg.KeysDir == "" || cfg.Cluster.Name == "" || cfg.Name == "" {
		return errors.New("oma node: the data dir, the cluster keys, the cluster name and the node name are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keys := ClusterKeys{Dir: cfg.KeysDir}
	secrets, err := keys.load()
	if err != nil {
		return err
	}
	observer, err := loadOrCreateUser(keys.Observer())
	if err != nil {
		return err
	}
	admin, err := loadOrCreateUser(keys.Admin())
	if err != nil {
		return err
	}
	if cfg.NATSAddr == "" {
		cfg.NATSAddr = "127.0.0.1:4222"
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	srv, stopServer, err := startNode(ctx, bus.ServerConfig{StoreDir: filepath.Join(cfg.DataDir, "jetstream"), MonitorPort: cfg.MonitorPort,
		Name: cfg.Name, Cluster: cfg.Cluster, Access: bus.Access{Observers: []string{observer.publicKey}, Admins: []string{admin.publicKey}},
		Logger: log.WithGroup("nats")}, cfg.NATSAddr, secrets, log)
	if err != nil {
		return err
	}
	defer stopServer()
	conn, err := srv.Connect(ctx, bus.ClientConfig{Name: "oma-node", Source: "/godwit/oma/node", Logger: log})
	if err != nil {
		return err
	}
	defer conn.Close()
	log.Info("oma node ready", "nats", srv.ClientURL(), "cluster", cfg.Cluster.Name, "name", cfg.Name)
	if err := srv.FollowAccess(ctx, conn); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
