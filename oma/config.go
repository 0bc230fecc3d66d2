package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/godwit/godwit/flagconf"
)

// config is the OMA's configuration.
type config struct {
	dataDir         string
	apiAddr         string
	apiURL          string
	natsAddr        string
	natsMonitorPort int
	nbdPorts        string
	exportAddr      string
	exportHost      string
	discoverTimeout time.Duration
	streamMaxAge    time.Duration
	streamMaxBytes  int64

	firstPort, lastPort int
	natsHost            string
	natsPort            int
}

// newFlagSet declares the flags of cfg with their defaults, taken from the
// environment when set there.
func newFlagSet(name string, cfg *config, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.dataDir, "data", filepath.Join("data", "oma"), "data directory: state, volumes, exports, keys")
	fs.String("config", "", "JSON config file; keys are flag names")
	return fs
}

func declareRunFlags(fs *flag.FlagSet, cfg *config) {
	fs.StringVar(&cfg.apiAddr, "api-addr", ":8082", "REST API listen address")
	fs.StringVar(&cfg.apiURL, "api-url", "http://localhost:8082", "OMA API URL given to VMAs")
	fs.StringVar(&cfg.natsAddr, "nats-addr", "127.0.0.1:4222", "NATS listen address (loopback by default)")
	fs.IntVar(&cfg.natsMonitorPort, "nats-monitor-port", 0, "NATS HTTP monitoring port on the NATS host; 0 turns it off")
	fs.StringVar(&cfg.nbdPorts, "nbd-ports", "10100-10199", "NBD export port pool, FIRST-LAST")
	fs.StringVar(&cfg.exportAddr, "export-addr", "127.0.0.1", "address nbdkit listens on")
	fs.StringVar(&cfg.exportHost, "export-host", "", "host VMAs are told to reach exports at (default: -export-addr)")
	fs.DurationVar(&cfg.discoverTimeout, "discover-timeout", 60*time.Second, "how long POST /api/v1/discover waits for a VMA")
	fs.DurationVar(&cfg.streamMaxAge, "stream-max-age", 30*24*time.Hour, "how long streams keep events")
	fs.Int64Var(&cfg.streamMaxBytes, "stream-max-bytes", 1<<30, "bytes each stream keeps at most")
}

// parse parses args over the environment and the config file.
func parse(fs *flag.FlagSet, args []string) error { return flagconf.Parse(fs, args) }

// check validates cfg and fills its derived fields.
func (cfg *config) check() error {
	first, last, ok := strings.Cut(cfg.nbdPorts, "-")
	var err1, err2 error
	cfg.firstPort, err1 = strconv.Atoi(first)
	cfg.lastPort, err2 = strconv.Atoi(last)
	if !ok || err1 != nil || err2 != nil || cfg.firstPort < 1 || cfg.lastPort > 65535 || cfg.firstPort > cfg.lastPort {
		return fmt.Errorf("-nbd-ports %q: want FIRST-LAST, such as 10100-10199", cfg.nbdPorts)
	}
	host, port, err := net.SplitHostPort(cfg.natsAddr)
	if err != nil {
		return fmt.Errorf("-nats-addr %q: %w", cfg.natsAddr, err)
	}
	if cfg.natsPort, err = strconv.Atoi(port); err != nil {
		return fmt.Errorf("-nats-addr %q: port: %w", cfg.natsAddr, err)
	}
	cfg.natsHost = host
	if cfg.exportHost == "" {
		cfg.exportHost = cfg.exportAddr
	}
	return nil
}
