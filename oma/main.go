// Command oma runs the godwit OMA appliance, the cloud-side hub.
//
// So far it runs the event backbone: the embedded NATS server with
// JetStream, its streams, and two NKey identities for the nats CLI, created
// on first start in the data dir (mode 0600): observer.nk (read-only) and
// admin.nk (full access, for operators). The REST API, state and NBD
// exports follow.
//
// Usage:
//
//	oma [-data DIR] [-nats-addr HOST:PORT] [-nats-monitor-port N]
//	    [-stream-max-age D] [-stream-max-bytes N]
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
	"strconv"
	"syscall"
	"time"

	"github.com/godwit/godwit/bus"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "oma:", err)
		os.Exit(1)
	}
}

// run parses args, runs the OMA until ctx ends, and shuts it down cleanly.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("oma", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", envOr("GODWIT_OMA_DATA", filepath.Join("data", "oma")), "data directory ($GODWIT_OMA_DATA)")
	natsAddr := fs.String("nats-addr", envOr("GODWIT_NATS_ADDR", "127.0.0.1:4222"), "NATS listen address, loopback by default ($GODWIT_NATS_ADDR)")
	monitorPort := fs.Int("nats-monitor-port", 0, "NATS HTTP monitoring port on the NATS host; 0 turns it off")
	maxAge := fs.Duration("stream-max-age", 30*24*time.Hour, "how long streams keep events")
	maxBytes := fs.Int64("stream-max-bytes", 1<<30, "how many bytes each stream keeps at most")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, portStr, err := net.SplitHostPort(*natsAddr)
	if err != nil {
		return fmt.Errorf("-nats-addr %q: %w", *natsAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("-nats-addr %q: port: %w", *natsAddr, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	observer, err := loadOrCreateUser(filepath.Join(*dataDir, "observer.nk"))
	if err != nil {
		return err
	}
	admin, err := loadOrCreateUser(filepath.Join(*dataDir, "admin.nk"))
	if err != nil {
		return err
	}
	srv, err := bus.StartServer(ctx, bus.ServerConfig{
		StoreDir:    filepath.Join(*dataDir, "jetstream"),
		Host:        host,
		Port:        port,
		MonitorPort: *monitorPort,
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
			log.Error("shutdown", "err", err)
		}
	}()
	conn, err := srv.Connect(ctx, bus.ClientConfig{Name: "oma", Source: "/godwit/oma", Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		if err := conn.Drain(); err != nil {
			log.Error("drain", "err", err)
		}
	}()
	if err := conn.EnsureStreams(ctx, bus.StreamLimits{MaxAge: *maxAge, MaxBytes: *maxBytes}); err != nil {
		return err
	}
	log.Info("oma ready", "nats", srv.ClientURL(), "observer_nkey", observer.path, "admin_nkey", admin.path,
		"try", fmt.Sprintf("nats --server %s --nkey %s stream ls", srv.ClientURL(), observer.path))
	<-ctx.Done()
	log.Info("oma stopping")
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
