// Package testbed starts whole appliances on real parts for tests: an OMA
// through oma/appliance (embedded NATS, bbolt, nbdkit, the REST API over
// real HTTP), the same wiring the oma binary runs, and small helpers that
// tests of several packages share. Everything it starts is stopped when the
// test ends.
package testbed

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/logtest"
	"github.com/godwit/godwit/oma/appliance"
)

// Eventually calls cond every 10 ms until it returns true, and fails the
// test after 15 seconds, naming what it waited for.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FreePorts finds n consecutive free loopback ports below the kernel's
// ephemeral range, from a random start, so that parallel tests get
// different ranges and no outgoing connection of another test takes one of
// them as its local port between the check and the listen (as the NBD
// pool of a real OMA lies below that range too).
func FreePorts(tb testing.TB, n int) (first, last int) {
	tb.Helper()
	low, _ := ephemeralRange()
	for range 1000 {
		base := 10000 + rand.IntN(low-10000-n)
		ok := true
		for p := base; ok && p < base+n; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base, base + n - 1
		}
	}
	tb.Fatal("no free port range")
	return 0, 0
}

// ephemeralRange returns the kernel's range of local ports for outgoing
// connections (Linux's ip_local_port_range), or Linux's default.
func ephemeralRange() (low, high int) {
	low, high = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return low, high
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return low, high
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l <= 11000 {
		return low, high
	}
	return l, h
}

// OMAConfig changes the OMA StartOMA starts; the zero value is a usable OMA
// with two NBD ports.
type OMAConfig struct {
	// Ports is the size of each VMA's share of the NBD port pool (the
	// ports its jobs' exports may take at once); 0 means 2. The pool holds
	// eight shares.
	Ports int
	// Configure, when set, edits the appliance's configuration before each
	// start (the data dir, addresses and ports are already set).
	Configure func(*appliance.Config)
}

// OMA is a running OMA appliance. Restart stops it and starts it again on
// the same data dir and NATS port, like a restart of the process.
type OMA struct {
	tb  testing.TB
	cfg appliance.Config
	ext OMAConfig

	// Dir is the data dir.
	Dir string
	// URL is the REST API's base URL, such as http://127.0.0.1:41234.
	URL string
	// NATSURL is the embedded NATS server's client URL.
	NATSURL string
	// FirstPort and LastPort bound its NBD port pool.
	FirstPort, LastPort int
	// Token is the initial API token the OMA created.
	Token string
	// AdminSeed is the seed of the admin NKey the OMA created.
	AdminSeed []byte
	// Admin is a connection with the admin NKey, valid until the next Restart.
	Admin *bus.Conn
	// Logs holds everything the OMA logged.
	Logs *logtest.Buffer

	run running
}

// StartOMA starts an OMA in a temporary data dir, on free ports.
func StartOMA(tb testing.TB, ext OMAConfig) *OMA {
	tb.Helper()
	if ext.Ports == 0 {
		ext.Ports = 2
	}
	first, last := FreePorts(tb, 8*ext.Ports)
	o := &OMA{tb: tb, ext: ext, Dir: tb.TempDir(), Logs: &logtest.Buffer{}, FirstPort: first, LastPort: last}
	o.cfg = appliance.Config{
		DataDir: o.Dir, APIAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", FirstPort: first, LastPort: last, NBDPortsPerVMA: ext.Ports,
		DiscoverTimeout: 20 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(o.Logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	o.Start()
	tb.Cleanup(o.Stop)
	return o
}

// Start starts the OMA again after Stop; StartOMA already started it.
func (o *OMA) Start() {
	tb := o.tb
	tb.Helper()
	cfg := o.cfg
	if o.ext.Configure != nil {
		o.ext.Configure(&cfg)
	}
	a, err := appliance.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	o.run.start(tb, "oma", a.Run, a.Ready(), o.Logs)
	addrs := a.Addrs()
	o.URL, o.NATSURL = "http://"+addrs.API, addrs.NATS
	if cfg.API.HTTP.TLSCertFile != "" {
		o.URL = "https://" + addrs.API
	}
	// The next start keeps the NATS port, so that clients reconnect.
	o.cfg.NATSAddr = strings.TrimPrefix(addrs.NATS, "nats://")
	files := a.Files()
	if o.Token == "" {
		tok, err := os.ReadFile(files.InitialToken)
		if err != nil {
			tb.Fatal(err)
		}
		o.Token = strings.TrimSpace(string(tok))
	}
	if o.AdminSeed, err = os.ReadFile(filepath.Clean(files.Admin)); err != nil {
		tb.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if o.Admin, err = bus.Connect(cctx, o.NATSURL, bus.ClientConfig{Name: "test-admin", Source: "/godwit/test", NKeySeed: o.AdminSeed}); err != nil {
		tb.Fatalf("connect as admin: %v", err)
	}
}

// Stop stops the OMA and waits until everything it started has stopped;
// stopping twice is harmless. It fails the test if Run returned an error.
func (o *OMA) Stop() {
	if o.run.cancel == nil {
		return
	}
	o.Admin.Close()
	o.run.stop(o.tb, "oma")
}

// Restart stops the OMA and starts it again on the same data.
func (o *OMA) Restart() {
	o.tb.Helper()
	o.Stop()
	o.Start()
}

// running is an appliance's Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start calls run in a goroutine and waits until ready is closed; it fails
// the test, with the logs, when run ends first or takes 30 s.
func (r *running) start(tb testing.TB, what string, run func(context.Context) error, ready <-chan struct{}, logs *logtest.Buffer) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- run(ctx) }()
	select {
	case <-ready:
	case err := <-r.done:
		cancel()
		r.cancel = nil
		tb.Fatalf("%s did not start: %v\n%s", what, err, logs.String())
	case <-time.After(30 * time.Second):
		tb.Fatalf("%s not ready after 30s:\n%s", what, logs.String())
	}
}

// stop cancels run and waits for it to return; it fails the test if run
// returned an error or took more than 60 s.
func (r *running) stop(tb testing.TB, what string) {
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			tb.Errorf("%s run: %v", what, err)
		}
	case <-time.After(60 * time.Second):
		tb.Errorf("%s did not stop in 60s", what)
	}
}
