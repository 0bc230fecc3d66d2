package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/oma/api"
	"github.com/godwit/godwit/oma/control"
	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/tokens"
)

// openStore opens the state database in dataDir.
func openStore(dataDir string) (*store.Store, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	st, err := store.Open(filepath.Join(dataDir, "state.db"), time.Second)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%w: is an OMA running on %s?", err, dataDir)
	}
	return st, err
}

// run runs the OMA until ctx ends, then shuts it down in order: HTTP
// drained, consumers stopped, nbdkit stopped, NATS drained and stopped,
// bbolt closed.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("oma", &cfg, stderr)
	declareRunFlags(fs, &cfg)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := cfg.check(); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	st, err := openStore(cfg.dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := initialToken(st, cfg.dataDir, log); err != nil {
		return err
	}
	observer, err := loadOrCreateUser(filepath.Join(cfg.dataDir, "observer.nk"))
	if err != nil {
		return err
	}
	admin, err := loadOrCreateUser(filepath.Join(cfg.dataDir, "admin.nk"))
	if err != nil {
		return err
	}
	srv, err := bus.StartServer(ctx, bus.ServerConfig{
		StoreDir:    filepath.Join(cfg.dataDir, "jetstream"),
		Host:        cfg.natsHost,
		Port:        cfg.natsPort,
		MonitorPort: cfg.natsMonitorPort,
		Access:      bus.Access{Observers: []string{observer.publicKey}, Admins: []string{admin.publicKey}},
		Logger:      log.WithGroup("nats"),
	})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Error("shut down nats", "err", err)
		}
	}()
	conn, err := srv.Connect(ctx, bus.ClientConfig{Name: "oma", Source: "/godwit/oma", Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		if err := conn.Drain(); err != nil {
			log.Error("drain nats", "err", err)
		}
	}()
	if err := conn.EnsureStreams(ctx, bus.StreamLimits{MaxAge: cfg.streamMaxAge, MaxBytes: cfg.streamMaxBytes}); err != nil {
		return err
	}

	exp := exports.New(exports.Config{FirstPort: cfg.firstPort, LastPort: cfg.lastPort, BindAddr: cfg.exportAddr, Logger: log.WithGroup("nbd")})
	defer exp.StopAll()
	ctl := control.New(control.Config{
		DataDir: cfg.dataDir, ExportHost: cfg.exportHost, APIURL: cfg.apiURL, NATSURL: srv.ClientURL(),
		DiscoverTimeout: cfg.discoverTimeout, AppliedMaxAge: cfg.streamMaxAge + 24*time.Hour, Logger: log,
	}, st, conn, exp, srv)
	if err := ctl.Restore(ctx); err != nil {
		return err
	}

	l, err := net.Listen("tcp", cfg.apiAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.apiAddr, err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- ctl.Run(runCtx) }()

	log.Info("oma ready", "api", l.Addr().String(), "nats", srv.ClientURL(),
		"observer_nkey", observer.path, "admin_nkey", admin.path, "nbd_ports", cfg.nbdPorts)
	apiCtx, stopAPI := context.WithCancel(ctx)
	defer stopAPI()
	apiErr := make(chan error, 1)
	go func() { apiErr <- api.New(ctl, st, srv, log).Serve(apiCtx, l) }()

	select {
	case err = <-apiErr: // ctx ended and requests drained, or the listener failed
		stopRun()
		if rerr := <-runErr; err == nil {
			err = rerr
		}
	case err = <-runErr:
		stopAPI()
		aerr := <-apiErr
		if ctx.Err() != nil { // shutting down: the consumers ended first
			err = aerr
		} else { // the consumers cannot go on: stop serving too
			err = fmt.Errorf("consumers stopped: %v", err)
		}
	}
	log.Info("oma stopped")
	return err
}

// initialToken creates a first API token when none exists and writes it
// to initial-token (mode 0600) in the data dir; the log names the file,
// never the token.
func initialToken(st *store.Store, dataDir string, log *slog.Logger) error {
	n, err := tokens.Count(st)
	if err != nil || n > 0 {
		return err
	}
	secret, err := tokens.Create(st, "initial", time.Now())
	if err != nil {
		return err
	}
	path := filepath.Join(dataDir, "initial-token")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write initial token: %w", err)
	}
	log.Info("created the initial API token", "file", path)
	return nil
}

// tokenCreate implements `oma token create --name NAME`.
func tokenCreate(args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("oma token create", &cfg, stderr)
	name := fs.String("name", "", "token name (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("token create: --name is required")
	}
	st, err := openStore(cfg.dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	secret, err := tokens.Create(st, *name, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, secret)
	return err
}

// vmaAdd implements `oma vma add --id ID`.
func vmaAdd(args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("oma vma add", &cfg, stderr)
	id := fs.String("id", "", "VMA id (required): letters, digits, '-', '_'")
	natsURL := fs.String("nats-url", "nats://127.0.0.1:4222", "NATS URL to give the VMA (through its tunnel)")
	apiURL := fs.String("api-url", "http://localhost:8082", "OMA API URL to give the VMA")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" {
		return errors.New("vma add: --id is required")
	}
	st, err := openStore(cfg.dataDir)
	if err != nil {
		return fmt.Errorf("%w (on a running OMA use POST /api/v1/vmas)", err)
	}
	defer st.Close()
	cred, err := control.RegisterVMA(st, *id, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "# VMA %s: keep the seed secret (mode 0600 on the VMA); it is not stored on the OMA.\nGODWIT_VMA_ID=%s\nGODWIT_NATS_URL=%s\nGODWIT_OMA_URL=%s\nGODWIT_NATS_NKEY_SEED=%s\n",
		cred.ID, cred.ID, *natsURL, *apiURL, cred.NKeySeed)
	return err
}
