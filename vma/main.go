// Command vma runs the godwit VMA appliance, the worker next to vCenter:
// its REST API (127.0.0.1:8081, which the OMA reaches as
// http://localhost:9081 through the tunnel), discovery through govmomi,
// and its side of the bus.
//
// Usage:
//
//	vma [flags]              run the VMA
//	vma -version             print the version
//	vma help                 print the usage
//	vma pubkey [-ssh]        print the VMA's X25519 public key (creating its identity on first use);
//	                         with -ssh its SSH public key, for oma vma add -ssh-key
//	vma copy [flags] SRC DST copy an NBD export or a file to another, like nbdcopy
//	vma compare A B          tell whether two NBD exports or files hold the same bytes (never reading holes)
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
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/godwit/godwit/bytesize"
	"github.com/godwit/godwit/flagconf"
	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/version"
	"github.com/godwit/godwit/vma/api"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/identity"
	"github.com/godwit/godwit/vma/jobs"
	"github.com/godwit/godwit/vma/source"
	"github.com/godwit/godwit/vma/tunnel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := exitStatus(dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr), os.Stderr)
	stop()
	os.Exit(code)
}

// exitStatus reports err on stderr and returns the exit status: 0 for no
// error or for -h (the usage was printed), else 1.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "vma:", err)
	return 1
}

// subcommands are the vma's commands.
const subcommands = `Usage:
  vma [flags]               run the VMA
  vma -version              print the version
  vma help                  print this
  vma pubkey                print the VMA's X25519 public key (creating its identity on first use)
  vma pubkey -ssh           print the VMA's SSH public key (made on first use), for oma vma add -ssh-key
  vma copy [flags] SRC DST  copy an NBD export or a file to another, like nbdcopy (vma copy -h)
  vma compare A B           tell whether two NBD exports or files hold the same bytes, never reading holes (vma compare -h)
`

// dispatch runs the subcommand named by args: flags alone run the VMA.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-version" || args[0] == "--version" || args[0] == "version") {
		_, err := fmt.Fprintln(stdout, version.Line("vma"))
		return err
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return run(ctx, args, stderr)
	}
	switch args[0] {
	case "help":
		flags("vma", &config{}, stdout).Usage()
		return nil
	case "pubkey":
		return pubkey(args[1:], stdout, stderr)
	case "copy":
		return copyCmd(ctx, args[1:], stdout, stderr)
	case "compare":
		return compareCmd(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown command %q: the commands are `vma [flags]`, `vma pubkey`, `vma copy` and `vma compare` (vma help)", args[0])
}

// config is the VMA's command line.
type config struct {
	dataDir, id, apiAddr, natsURL, natsSeed, omaURL, vcenterCA  string
	metricsAddr                                                 string
	allowOrigins, tokenFile, vcenterAllow                       string
	source, vddkLibDir, rate, linkRate                          string
	tunnelURL, tunnelKnownHosts, tunnelListen, tunnelSockbuf    string
	tunnelInsecure, tunnelNoSession                             bool
	vcenterInsecure                                             bool
	heartbeat, discoverTimeout, checkpointInterval, exportRetry time.Duration
	maxJobs, diskParallelism, nbdConnections, tunnelConnections int
	apiBodyTimeout                                              time.Duration
	apiMaxConns                                                 int
}

// flags declares the flags every vma command has; its usage lists the
// subcommands before the flags.
func flags(name string, cfg *config, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), subcommands)
		fmt.Fprintf(fs.Output(), "\nFlags of %s (also $GODWIT_<FLAG> and -config FILE):\n", name)
		fs.PrintDefaults()
	}
	fs.String("config", "", "JSON config file; keys are flag names")
	fs.StringVar(&cfg.dataDir, "data", filepath.Join("data", "vma"), "data directory: identity, state")
	fs.StringVar(&cfg.id, "id", "", "VMA id on first start (letters, digits, '-', '_'); later it must match")
	return fs
}

// pubkey implements `vma pubkey`.
func pubkey(args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := flags("vma pubkey", &cfg, stderr)
	sshKey := fs.Bool("ssh", false, "print the VMA's SSH public key (for oma vma add -ssh-key), made on first use, instead of its X25519 key")
	if err := flagconf.Parse(fs, args); err != nil {
		return err
	}
	if *sshKey {
		key, err := tunnel.LoadOrCreateKey(cfg.dataDir)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, tunnel.AuthorizedKey(key))
		return err
	}
	id, err := identity.LoadOrCreate(cfg.dataDir, cfg.id)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, id.PublicKey())
	return err
}

// run runs the VMA with the flags in args until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	var cfg config
	fs := flags("vma", &cfg, stderr)
	fs.StringVar(&cfg.apiAddr, "api-addr", api.DefaultAddr, "REST API listen address (loopback: the OMA reaches it through the tunnel)")
	fs.StringVar(&cfg.metricsAddr, "metrics-addr", "", "a second listen address serving GET /metrics without a token, for Prometheus (such as 127.0.0.1:9109); the API serves it to its token either way")
	fs.StringVar(&cfg.allowOrigins, "api-allow-origin", "", "comma-separated browser origins (scheme://host[:port]) allowed to call the API besides its own")
	fs.StringVar(&cfg.tokenFile, "api-token-file", "", "file holding the bearer token every API endpoint but health needs (default: no token)")
	fs.DurationVar(&cfg.apiBodyTimeout, "api-body-timeout", httpserver.DefaultBodyTimeout, "how long a request body may take to arrive; a slower one is cut (408)")
	fs.IntVar(&cfg.apiMaxConns, "api-max-conns", httpserver.DefaultMaxConns, "API connections held at once; one more is answered 503")
	fs.StringVar(&cfg.vcenterAllow, "vcenter-allow", "", "comma-separated vCenters (host or host:port) the VMA may log in to (default: any)")
	fs.StringVar(&cfg.natsURL, "nats-url", "nats://127.0.0.1:4222", "the OMA's NATS URL")
	fs.StringVar(&cfg.natsSeed, "nats-seed", "", "file holding this VMA's NATS NKey seed (from oma vma add), mode 0600")
	fs.StringVar(&cfg.omaURL, "oma-url", "http://localhost:8082", "the OMA API URL")
	fs.StringVar(&cfg.vcenterCA, "vcenter-ca", "", "PEM file of CA certificates to trust for vCenter, besides the system's")
	fs.BoolVar(&cfg.vcenterInsecure, "vcenter-insecure", false, "skip vCenter certificate verification (development only)")
	fs.DurationVar(&cfg.heartbeat, "heartbeat", 10*time.Second, "heartbeat period: well under the OMA's -vma-heartbeat-timeout (30s), after which it gives this VMA no more jobs")
	fs.DurationVar(&cfg.discoverTimeout, "discover-timeout", 60*time.Second, "how long POST /api/v1/discover waits")
	fs.IntVar(&cfg.maxJobs, "max-jobs", jobs.DefaultMaxJobs, "replication jobs that run at once; the rest wait in order")
	fs.IntVar(&cfg.diskParallelism, "disk-parallelism", jobs.DefaultDiskParallelism, "disks of a job copied at once")
	fs.IntVar(&cfg.nbdConnections, "nbd-connections", 0, "NBD connections (SSH channels through the tunnel) each disk's copy opens to its export: more fill a long link; 0 chooses them from the tunnel's measured RTT and -link-rate")
	fs.StringVar(&cfg.linkRate, "link-rate", "125M", "bytes per second the link to the OMA carries (K, M, G suffixes; 125M is about 1 Gbit/s): sizes -nbd-connections 0")
	fs.StringVar(&cfg.source, "source", source.Auto, "disk transport: auto (vddk when installed, else datastore), datastore or vddk")
	fs.StringVar(&cfg.vddkLibDir, "vddk-libdir", "", "VMware VDDK directory (holding lib64/libvixDiskLib.so) for the vddk transport")
	fs.DurationVar(&cfg.checkpointInterval, "checkpoint-interval", jobs.DefaultCheckpointInterval, "most time between two recorded checkpoints of a copying disk (also every 64 MiB): what a crash can cost")
	fs.DurationVar(&cfg.exportRetry, "export-retry", jobs.DefaultExportRetry, "how long a copy keeps trying to reach an export that went away (the OMA restarts) before the job fails")
	fs.StringVar(&cfg.tunnelURL, "tunnel", "", "ssh://user@oma[:port]: reach the OMA only through one SSH connection to its sshd (bus, exports, and the API forwarded back); several comma-separated (an OMA and its standby) are tried in turn; empty: direct")
	fs.StringVar(&cfg.tunnelKnownHosts, "tunnel-known-hosts", "", "known_hosts file with the OMA's SSH host key")
	fs.IntVar(&cfg.tunnelConnections, "tunnel-connections", 0, fmt.Sprintf("SSH connections to the OMA's sshd (its one port, the same key): one for the bus and the API, the rest carry the copies' NBD channels; 0: chosen from the round trip time (1 on a LAN, up to 5 on a long link), at most %d", tunnel.MaxConnections))
	fs.BoolVar(&cfg.tunnelInsecure, "tunnel-insecure", false, "accept any SSH host key (development only)")
	fs.StringVar(&cfg.tunnelSockbuf, "tunnel-sockbuf", "", "set the tunnel's TCP socket buffers to this many bytes (K, M, G suffixes; the kernel caps them at net.core.wmem_max/rmem_max) and turn the kernel's autotuning off; empty: autotuning up to net.ipv4.tcp_wmem's maximum, usually better (README: Long links)")
	fs.BoolVar(&cfg.tunnelNoSession, "tunnel-no-session", false, "do not run the one session command per SSH connection (the key's forced /bin/false) that makes an OpenSSH sshd before 10.1 set TCP_NODELAY")
	fs.StringVar(&cfg.tunnelListen, "tunnel-listen", "", "Unix socket on the OMA that the tunnel forwards to the VMA API; the OMA holds the API port (9081...) and forwards into it (default: "+appliance.DefaultTunnelDir+"/<id>.sock, as oma vma add -tunnel prints)")
	fs.StringVar(&cfg.rate, "rate", "", "bandwidth limit of all jobs' copies together, bytes per second (K, M, G suffixes); empty: none")
	if err := flagconf.Parse(fs, args); err != nil {
		return err
	}
	if cfg.natsSeed == "" {
		return errors.New("-nats-seed is required: the file with the NKey seed `oma vma add` printed")
	}
	seed, err := os.ReadFile(cfg.natsSeed)
	if err != nil {
		return fmt.Errorf("read -nats-seed: %w", err)
	}
	var copyCfg copier.Config
	if cfg.rate != "" {
		r, err := bytesize.Parse(cfg.rate)
		if err != nil || r <= 0 {
			return fmt.Errorf("-rate %q: want bytes per second, such as 100M", cfg.rate)
		}
		copyCfg.Limiter = copier.NewLimiter(r, nil)
	}
	linkRate, err := bytesize.Parse(cfg.linkRate)
	if err != nil || linkRate <= 0 {
		return fmt.Errorf("-link-rate %q: want bytes per second, such as 125M for about 1 Gbit/s", cfg.linkRate)
	}
	var sockbuf int64
	if cfg.tunnelSockbuf != "" {
		if sockbuf, err = bytesize.Parse(cfg.tunnelSockbuf); err != nil || sockbuf < 0 || sockbuf > 1<<30 {
			return fmt.Errorf("-tunnel-sockbuf %q: want bytes up to 1G, such as 32M", cfg.tunnelSockbuf)
		}
	}
	if cfg.apiBodyTimeout <= 0 || cfg.apiMaxConns < 1 {
		return errors.New("-api-body-timeout and -api-max-conns must be positive")
	}
	var ac api.Config
	ac.AllowOrigins = flagconf.List(cfg.allowOrigins)
	ac.HTTP.BodyTimeout, ac.HTTP.MaxConns = cfg.apiBodyTimeout, cfg.apiMaxConns
	if cfg.tokenFile != "" {
		if ac.TokenSHA256, err = api.ReadTokenFile(cfg.tokenFile); err != nil {
			return err
		}
	}
	v, err := appliance.New(appliance.Config{
		API: ac, VCenterAllow: flagconf.List(cfg.vcenterAllow),
		DataDir: cfg.dataDir, ID: cfg.id, APIAddr: cfg.apiAddr, MetricsAddr: cfg.metricsAddr, NATSURL: cfg.natsURL,
		NATSSeed: []byte(strings.TrimSpace(string(seed))), OMAURL: cfg.omaURL,
		VCenterCAFile: cfg.vcenterCA, VCenterInsecure: cfg.vcenterInsecure,
		Heartbeat: cfg.heartbeat, DiscoverTimeout: cfg.discoverTimeout,
		MaxJobs: cfg.maxJobs, DiskParallelism: cfg.diskParallelism, NBDConnections: cfg.nbdConnections, LinkRate: linkRate, Source: cfg.source, VDDKLibDir: cfg.vddkLibDir, Copy: copyCfg,
		CheckpointInterval: cfg.checkpointInterval, ExportRetry: cfg.exportRetry,
		Tunnel: cfg.tunnelURL, TunnelKnownHosts: cfg.tunnelKnownHosts, TunnelInsecure: cfg.tunnelInsecure, TunnelListen: cfg.tunnelListen,
		TunnelConnections: cfg.tunnelConnections, TunnelSocketBuffer: int(sockbuf), TunnelNoSession: cfg.tunnelNoSession,
		Logger: slog.New(slog.NewTextHandler(stderr, nil)),
	})
	if err != nil {
		return err
	}
	return v.Run(ctx)
}
