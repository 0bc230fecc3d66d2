// Package testbed starts whole appliances on real parts for tests: an OMA
// through oma/appliance (embedded NATS, bbolt, nbdkit, the REST API over
// real HTTP), the same wiring the oma binary runs, and a VMA through
// vma/appliance. Everything it starts is stopped when the test ends. The
// small helpers that need no appliance are in testkit.
package testbed

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/testkit"
)

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
	// MetricsURL is the base URL of the metrics listener (such as
	// http://127.0.0.1:41235), when the configuration sets one.
	MetricsURL string
	// FirstPort and LastPort bound its NBD port pool.
	FirstPort, LastPort int
	// Token is the initial API token the OMA created.
	Token string
	// AdminSeed is the seed of the admin NKey the OMA created.
	AdminSeed []byte
	// Admin is a connection with the admin NKey, valid until the next Restart.
	Admin *bus.Conn
	// Logs holds everything the OMA logged.
	Logs *testkit.Buffer

	run running
}

// StartOMA starts an OMA in a temporary data dir, on free ports.
func StartOMA(tb testing.TB, ext OMAConfig) *OMA {
	tb.Helper()
	if ext.Ports == 0 {
		ext.Ports = 2
	}
	first, last := testkit.FreePorts(tb, 8*ext.Ports)
	o := &OMA{tb: tb, ext: ext, Dir: tb.TempDir(), Logs: &testkit.Buffer{}, FirstPort: first, LastPort: last}
	o.cfg = appliance.Config{
		DataDir: o.Dir, APIAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", FirstPort: first, LastPort: last, NBDPortsPerVMA: ext.Ports,
		DiscoverTimeout: testkit.Wait(tb), // as long as the test may take: a loaded machine discovers slowly
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
	o.URL, o.NATSURL, o.MetricsURL = "http://"+addrs.API, addrs.NATS, ""
	if addrs.Metrics != "" {
		o.MetricsURL = "http://" + addrs.Metrics
	}
	if cfg.API.HTTP.TLSCertFile != "" {
		o.URL = "https://" + addrs.API
	}
	// The next start keeps the NATS port, so that clients reconnect (an
	// OMA of a cluster run by others has none).
	if cfg.NATSURL == "" {
		o.cfg.NATSAddr = strings.TrimPrefix(addrs.NATS, "nats://")
	}
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
	cctx, ccancel := context.WithTimeout(context.Background(), testkit.Wait(tb))
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
// the test, with the logs, when run ends first or takes testkit.Wait.
func (r *running) start(tb testing.TB, what string, run func(context.Context) error, ready <-chan struct{}, logs *testkit.Buffer) {
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
	case <-time.After(testkit.Wait(tb)):
		tb.Fatalf("%s not ready:\n%s", what, logs.String())
	}
}

// stop cancels run and waits for it to return; it fails the test if run
// returned an error or took more than testkit.Wait.
func (r *running) stop(tb testing.TB, what string) {
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			tb.Errorf("%s run: %v", what, err)
		}
	case <-time.After(testkit.Wait(tb)):
		tb.Errorf("%s did not stop", what)
	}
}

// StreamEvent is one event read back from a stream: its type and
// payload, and when the stream stored it.
type StreamEvent struct {
	Type   string
	Data   json.RawMessage
	Stored time.Time
}

// StreamEvents reads every event of stream on subjects matching filter,
// oldest first, through the admin connection.
func (o *OMA) StreamEvents(tb testing.TB, stream, filter string) []StreamEvent {
	tb.Helper()
	ctx := testkit.Context(tb)
	c, err := o.Admin.JetStream().OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		tb.Fatal(err)
	}
	var out []StreamEvent
	for {
		batch, err := c.FetchNoWait(500)
		if err != nil {
			tb.Fatal(err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			var ev struct {
				Type string          `json:"type"`
				Data json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(msg.Data(), &ev); err != nil {
				tb.Fatal(err)
			}
			se := StreamEvent{Type: ev.Type, Data: ev.Data}
			if md, err := msg.Metadata(); err == nil {
				se.Stored = md.Timestamp
			}
			out = append(out, se)
		}
		if n == 0 {
			return out
		}
	}
}
