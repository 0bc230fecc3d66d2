package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
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
	// MaxPayload is the largest message the server takes, in bytes; 0 means
	// nats-server's default, 1 MiB. Discovery results larger than it are
	// published in pages.
	MaxPayload int32
	// ReadyTimeout bounds the wait for the server to accept clients; 0 means 10s.
	ReadyTimeout time.Duration
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
}

// Server is an embedded nats-server with JetStream. It has an internal user
// for the OMA, whose key never leaves the process; see Connect.
type Server struct {
	ns   *server.Server
	oma  nkeys.KeyPair
	log  *slog.Logger
	gate *gate // forwards observers' read-only JetStream API requests

	mu     sync.Mutex // guards opts and access for SetAccess
	opts   *server.Options
	access Access
}

// StartServer starts an embedded NATS server with JetStream on cfg.StoreDir
// and returns once it accepts clients. The caller must call Shutdown.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("start nats server: empty store dir")
	}
	oma, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("start nats server: create oma key: %w", err)
	}
	s := &Server{oma: oma, log: discardIfNil(cfg.Logger), access: cfg.Access}
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		MaxPayload: cfg.MaxPayload,
	}
	if opts.ServerName == "" {
		opts.ServerName = "godwit-oma"
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = 4222
	}
	if cfg.MonitorPort != 0 {
		opts.HTTPHost = opts.Host
		opts.HTTPPort = cfg.MonitorPort
	}
	if err := s.applyAccess(opts, cfg.Access); err != nil {
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
	if !ns.JetStreamEnabled() {
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

// applyAccess puts the users of a into opts.
func (s *Server) applyAccess(opts *server.Options, a Access) error {
	omaPub, err := s.oma.PublicKey()
	if err != nil {
		return fmt.Errorf("oma public key: %w", err)
	}
	users, err := a.users(omaPub)
	if err != nil {
		return err
	}
	opts.Nkeys = users
	return nil
}

// SetAccess replaces the observers and VMAs allowed in, without a restart.
// Connected clients whose key is gone are disconnected.
func (s *Server) SetAccess(a Access) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	opts := s.opts.Clone()
	if err := s.applyAccess(opts, a); err != nil {
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
