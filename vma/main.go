// Command vma runs the godwit VMA appliance, the worker next to vCenter:
// its REST API (:8081, which the OMA reaches as http://localhost:9081),
// discovery through govmomi, and its side of the bus.
//
// Usage:
//
//	vma [flags]     run the VMA
//	vma pubkey      print the VMA's X25519 public key (creating its identity on first use)
//
// Flags also come from $GODWIT_<FLAG> and from a JSON file (-config); the
// command line wins over the file, the file over the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/flagconf"
	"github.com/godwit/godwit/vma/api"
	"github.com/godwit/godwit/vma/identity"
	"github.com/godwit/godwit/vma/store"
	"github.com/godwit/godwit/vma/worker"
)

// version is the VMA's version, announced in heartbeats.
const version = "0.1.0"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "vma:", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "pubkey" {
		return pubkey(args[1:], stdout, stderr)
	}
	return run(ctx, args, stderr)
}

type config struct {
	dataDir, id, apiAddr, natsURL, natsSeed, omaURL, vcenterCA string
	vcenterInsecure                                            bool
	heartbeat, discoverTimeout                                 time.Duration
}

func flags(name string, cfg *config, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "JSON config file; keys are flag names")
	fs.StringVar(&cfg.dataDir, "data", filepath.Join("data", "vma"), "data directory: identity, state")
	fs.StringVar(&cfg.id, "id", "", "VMA id on first start (letters, digits, '-', '_'); later it must match")
	return fs
}

func pubkey(args []string, stdout, stderr io.Writer) error {
	var cfg config
	if err := flagconf.Parse(flags("vma pubkey", &cfg, stderr), args); err != nil {
		return err
	}
	id, err := identity.LoadOrCreate(cfg.dataDir, cfg.id)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, id.PublicKey())
	return err
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	var cfg config
	fs := flags("vma", &cfg, stderr)
	fs.StringVar(&cfg.apiAddr, "api-addr", ":8081", "REST API listen address")
	fs.StringVar(&cfg.natsURL, "nats-url", "nats://127.0.0.1:4222", "the OMA's NATS URL")
	fs.StringVar(&cfg.natsSeed, "nats-seed", "", "file holding this VMA's NATS NKey seed (from oma vma add), mode 0600")
	fs.StringVar(&cfg.omaURL, "oma-url", "http://localhost:8082", "the OMA API URL")
	fs.StringVar(&cfg.vcenterCA, "vcenter-ca", "", "PEM file of CA certificates to trust for vCenter, besides the system's")
	fs.BoolVar(&cfg.vcenterInsecure, "vcenter-insecure", false, "skip vCenter certificate verification (development only)")
	fs.DurationVar(&cfg.heartbeat, "heartbeat", 30*time.Second, "heartbeat period")
	fs.DurationVar(&cfg.discoverTimeout, "discover-timeout", 60*time.Second, "how long POST /api/v1/discover waits")
	if err := flagconf.Parse(fs, args); err != nil {
		return err
	}
	if cfg.natsSeed == "" {
		return errors.New("-nats-seed is required: the file with the NKey seed `oma vma add` printed")
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	id, err := identity.LoadOrCreate(cfg.dataDir, cfg.id)
	if err != nil {
		return err
	}
	log = log.With("vma", id.ID)
	seed, err := os.ReadFile(cfg.natsSeed)
	if err != nil {
		return fmt.Errorf("read -nats-seed: %w", err)
	}
	st, err := store.Open(filepath.Join(cfg.dataDir, "state.db"), time.Second)
	if err != nil {
		return err
	}
	defer st.Close()
	inbox, err := subject.InboxPrefix(id.ID)
	if err != nil {
		return err
	}
	log.Info("connecting to the bus", "nats", cfg.natsURL)
	conn, err := bus.Connect(ctx, cfg.natsURL, bus.ClientConfig{
		Name: id.ID, Source: "/godwit/vma/" + id.ID, NKeySeed: []byte(strings.TrimSpace(string(seed))),
		InboxPrefix: inbox, Logger: log,
	})
	if err != nil {
		return err
	}
	defer func() { _ = conn.Drain() }()

	w := worker.New(conn, worker.Config{Identity: id, Version: version, Heartbeat: cfg.heartbeat,
		VCenterCAFile: cfg.vcenterCA, VCenterInsecure: cfg.vcenterInsecure, Logger: log})
	l, err := net.Listen("tcp", cfg.apiAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.apiAddr, err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	workerErr := make(chan error, 1)
	go func() { workerErr <- w.Run(wctx) }()
	log.Info("vma ready", "api", l.Addr().String(), "public_key", id.PublicKey())
	a := api.New(conn, st, api.Config{Identity: id, Version: version, DiscoverTimeout: cfg.discoverTimeout, Logger: log})
	apiCtx, stopAPI := context.WithCancel(ctx)
	defer stopAPI()
	apiErr := make(chan error, 1)
	go func() { apiErr <- a.Serve(apiCtx, l) }()
	select {
	case err = <-apiErr:
		stopWorker()
		if werr := <-workerErr; err == nil {
			err = werr
		}
	case err = <-workerErr:
		stopAPI()
		aerr := <-apiErr
		if ctx.Err() != nil {
			err = aerr
		} else {
			err = fmt.Errorf("worker stopped: %v", err)
		}
	}
	log.Info("vma stopped")
	return err
}
