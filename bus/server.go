package bus

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// ServerConfig configures StartServer. Only StoreDir is required; the zero
// value of every other field is a sensible default.
type ServerConfig struct {
	// StoreDir is where JetStream keeps its file store.
	StoreDir string
	// Host is the client listen address; empty means 127.0.0.1 (loopback only).
	Host string
	// Port is the client port; 0 means 4222 and -1 a free port.
	Port int
	// MonitorPort is the HTTP monitoring port on Host; 0 disables it and -1
	// picks a free port.
	MonitorPort int
	// Name is the server name; empty means "godwit-oma".
	Name string
	// Access lists the observers and VMAs allowed in besides the OMA itself.
	Access Access
	// Seed is the NKey seed ("SU...") of the OMA's internal user; empty
	// makes a new key for this process. The nodes of a cluster share one,
	// so that an OMA may connect to any of them.
	Seed []byte
	// MaxPayload is the largest message the server takes, in bytes; 0 means
	// nats-server's default, 1 MiB. Discovery results larger than it are
	// published in pages.
	MaxPayload int32
	// MaxConnections caps the client connections the server accepts; 0
	// means DefaultMaxConnections.
	MaxConnections int
	// ReadyTimeout bounds the wait for the server to accept clients; 0 means 10s.
	ReadyTimeout time.Duration
	// Cluster, when its Name is set, makes the server one node of a
	// JetStream cluster; Name (the server name) must then differ on every
	// node, and Access be the same.
	Cluster ClusterConfig
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
}

// ClusterConfig is a node's place in a NATS cluster with JetStream: its
// routes to the other nodes. Streams are replicated across the nodes as
// StreamLimits.Replicas says.
type ClusterConfig struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// Listen is the address the node's routes listen on, such as
	// 127.0.0.1:6222; a port 0 picks a free one.
	Listen string
	// Routes are the other nodes' route URLs (nats-route://host:port);
	// the node's own may be among them.
	Routes []string
	// Secret, when set, is the password every node's routes present and
	// require (as user RouteUser); nodes without it cannot join.
	Secret string
	// TLSCert, TLSKey and TLSCA, when set, make the routes TLS: each node
	// presents its certificate and requires a peer certificate that TLSCA
	// signed.
	TLSCert, TLSKey, TLSCA string
}

// RouteUser is the user name routes authenticate with when
// ClusterConfig.Secret is set.
const RouteUser = "godwit-route"

// DefaultMaxConnections is the connection cap of ServerConfig's zero
// value: far above what an OMA with its VMAs, observers and tools needs,
// far below what would exhaust its file descriptors.
const DefaultMaxConnections = 1024

// Server is an embedded nats-server with JetStream. It has an internal user
// for the OMA, whose key never leaves the process; see Connect.
type Server struct {
	ns   *server.Server
	oma  nkeys.KeyPair
	log  *slog.Logger
	gate *gate // forwards observers' read-only JetStream API requests

	mu     sync.Mutex // guards opts and access for SetAccess
	cfg    ServerConfig
	opts   *server.Options
	access Access
}

// StartServer starts an embedded NATS server with JetStream on cfg.StoreDir
// and returns once it accepts clients. The caller must call Shutdown.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("start nats server: empty store dir")
	}
	oma, err := internalUser(cfg.Seed)
	if err != nil {
		return nil, fmt.Errorf("start nats server: %w", err)
	}
	s := &Server{oma: oma, log: discardIfNil(cfg.Logger), access: cfg.Access, cfg: cfg}
	opts, err := s.options(cfg.Access, nil)
	if err != nil {
		return nil, fmt.Errorf("start nats server: %w", err)
	}
	if err := moveGlobalStore(cfg.StoreDir, s.log); err != nil {
		return nil, fmt.Errorf("start nats server: %w", err)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats server: %w", err)
	}
	ns.SetLoggerV2(serverLog{s.log}, false, false, false)
	s.ns, s.opts = ns, opts
	ns.Start()

	wait := cfg.ReadyTimeout
	if wait == 0 {
		wait = 10 * time.Second
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
		wait = time.Until(d)
	}
	if !ns.ReadyForConnections(wait) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("start nats server on %s: not ready after %s", net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)), wait)
	}
	if !ns.JetStreamEnabled() || !accountJetStream(ns, time.Now().Add(wait)) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("start nats server: jetstream did not start in %s", cfg.StoreDir)
	}
	if s.gate, err = startGate(ns, oma, s.log); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, err
	}
	s.log.Info("nats server ready", "url", ns.ClientURL(), "store", cfg.StoreDir)
	return s, nil
}

// accountJetStream waits until JetStream serves AccountOMA, which it may
// start doing after the server accepts clients, or deadline passes.
func accountJetStream(ns *server.Server, deadline time.Time) bool {
	for {
		if acc, err := ns.LookupAccount(AccountOMA); err == nil && acc.JetStreamEnabled() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// options returns the server's options granting access a: the accounts
// and users of a, and everything else from s.cfg.
func (s *Server) options(a Access, bare map[string]bool) (*server.Options, error) {
	omaPub, err := s.oma.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("oma public key: %w", err)
	}
	conf, err := a.config(omaPub, bare)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(conf); err != nil {
		return nil, fmt.Errorf("nats access configuration: %w", err)
	}
	if s.opts != nil {
		// A reload compares the old users with the new ones deeply, through
		// their accounts, which reach the server's live state: give the new
		// users the very account objects the old ones had, so that the
		// comparison stops at the pointer instead of racing with clients.
		old := map[string]*server.Account{}
		for _, u := range s.opts.Nkeys {
			if u.Account != nil {
				old[u.Account.Name] = u.Account
			}
		}
		for _, u := range opts.Nkeys {
			if u.Account == nil {
				continue
			}
			if acc, ok := old[u.Account.Name]; ok {
				u.Account = acc
			}
		}
	}
	cfg := s.cfg
	opts.ServerName, opts.Host, opts.Port = cfg.Name, cfg.Host, cfg.Port
	opts.JetStream, opts.StoreDir, opts.NoSigs = true, cfg.StoreDir, true
	opts.MaxPayload, opts.MaxConn = cfg.MaxPayload, cfg.MaxConnections
	if opts.ServerName == "" {
		opts.ServerName = "godwit-oma"
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = 4222
	}
	if opts.MaxConn == 0 {
		opts.MaxConn = DefaultMaxConnections
	}
	if cfg.MonitorPort != 0 {
		opts.HTTPHost = opts.Host
		opts.HTTPPort = cfg.MonitorPort
	}
	if c := cfg.Cluster; c.Name != "" {
		host, port, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("cluster listen address %q: %w", c.Listen, err)
		}
		opts.Cluster.Name, opts.Cluster.Host = c.Name, host
		if opts.Cluster.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("cluster listen address %q: %w", c.Listen, err)
		}
		if opts.Cluster.Port == 0 {
			opts.Cluster.Port = -1 // a free port
		}
		if len(c.Routes) > 0 {
			opts.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
		}
		if c.Secret != "" {
			opts.Cluster.Username, opts.Cluster.Password = RouteUser, c.Secret
			for _, u := range opts.Routes {
				u.User = url.UserPassword(RouteUser, c.Secret)
			}
		}
		if c.TLSCert != "" || c.TLSKey != "" || c.TLSCA != "" {
			if c.TLSCert == "" || c.TLSKey == "" || c.TLSCA == "" {
				return nil, errors.New("cluster TLS needs a certificate, its key and a CA")
			}
			tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.TLSCert, KeyFile: c.TLSKey, CaFile: c.TLSCA, Verify: true})
			if err != nil {
				return nil, fmt.Errorf("cluster TLS: %w", err)
			}
			tc.RootCAs = tc.ClientCAs // a node is its peers' client and server both
			opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = tc, 5
		}
	}
	return opts, nil
}

// internalUser returns the key pair of seed, or a new one when seed is empty.
func internalUser(seed []byte) (nkeys.KeyPair, error) {
	if len(seed) == 0 {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, fmt.Errorf("create the internal key: %w", err)
		}
		return kp, nil
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("internal key: %w", err)
	}
	if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, errors.New("internal key: the seed is not a user's")
	}
	return kp, nil
}

// moveGlobalStore moves the JetStream store of an OMA from before accounts,
// kept under nats-server's global account, to AccountOMA, so that its
// streams and consumers carry on.
func moveGlobalStore(dir string, log *slog.Logger) error {
	old, now := filepath.Join(dir, "jetstream", "$G"), filepath.Join(dir, "jetstream", AccountOMA)
	if _, err := os.Stat(old); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("move jetstream store: %w", err)
	}
	if _, err := os.Stat(now); err == nil {
		return fmt.Errorf("move jetstream store: both %s and %s exist: keep one", old, now)
	}
	if err := os.Rename(old, now); err != nil {
		return fmt.Errorf("move jetstream store: %w", err)
	}
	log.Info("moved the jetstream store to the OMA's account", "from", old, "to", now)
	return nil
}

// SetAccess replaces the observers and VMAs allowed in, without a restart.
// Connected clients whose key is gone are disconnected.
//
// A VMA new to the server gets its account in two reloads: first the
// account alone, then its user and imports. nats-server (2.15) makes the
// subscriptions of an account's service imports on a reload only for an
// account that existed before it; in one reload, a new VMA's imports would
// be there but carry nothing.
func (s *Server) SetAccess(a Access) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.equal(s.access) {
		return nil // no reload: nats-server's races with connecting clients
	}
	bare := map[string]bool{}
	for id := range a.VMAs {
		if _, ok := s.access.VMAs[id]; !ok {
			bare[id] = true
		}
	}
	if len(bare) > 0 {
		opts, err := s.options(a, bare)
		if err != nil {
			return fmt.Errorf("set nats access: %w", err)
		}
		if err := s.ns.ReloadOptions(opts); err != nil {
			return fmt.Errorf("set nats access: %w", err)
		}
		s.opts = opts
	}
	opts, err := s.options(a, nil)
	if err != nil {
		return fmt.Errorf("set nats access: %w", err)
	}
	if err := s.ns.ReloadOptions(opts); err != nil {
		return fmt.Errorf("set nats access: %w", err)
	}
	s.opts, s.access = opts, a
	return nil
}

// Access returns the access the server now grants.
func (s *Server) Access() Access {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.access
}

// Name returns the server's name (ServerConfig.Name): in a cluster, the
// node's, as stream infos name their leaders.
func (s *Server) Name() string { return s.ns.Name() }

// ClusterAddr returns the address the node's routes listen on, or nil
// outside a cluster.
func (s *Server) ClusterAddr() net.Addr { return s.ns.ClusterAddr() }

// Routes returns how many route connections to other nodes the server has.
func (s *Server) Routes() int { return s.ns.NumRoutes() }

// RoutePeers returns the names of the nodes this node has routes to.
func (s *Server) RoutePeers() []string {
	routez, err := s.ns.Routez(nil)
	if err != nil {
		return nil
	}
	var names []string
	for _, r := range routez.Routes {
		if !slices.Contains(names, r.RemoteName) {
			names = append(names, r.RemoteName)
		}
	}
	return names
}

// ClientNames returns the names of the clients connected to this node, as
// they gave them (ClientConfig.Name).
func (s *Server) ClientNames() []string {
	connz, err := s.ns.Connz(&server.ConnzOptions{Limit: DefaultMaxConnections})
	if err != nil {
		return nil
	}
	var names []string
	for _, c := range connz.Conns {
		names = append(names, c.Name)
	}
	return names
}

// ClientURL returns the URL clients connect to, such as nats://127.0.0.1:4222.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// MonitorURL returns the monitoring endpoint's URL, or "" when it is off.
func (s *Server) MonitorURL() string {
	if a := s.ns.MonitorAddr(); a != nil {
		return "http://" + a.String()
	}
	return ""
}

// JetStreamEnabled reports whether JetStream runs.
func (s *Server) JetStreamEnabled() bool { return s.ns.JetStreamEnabled() }

// Shutdown stops the server and waits until it has stopped, or ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.gate.close()
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
		s.log.Info("nats server stopped")
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shut down nats server: %w", ctx.Err())
	}
}
