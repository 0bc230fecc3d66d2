package control_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/control"
	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/testkit"
)

// harness is a Control on real parts (embedded NATS, bbolt, nbdkit) with
// an injected clock. start and stop may be called again on the same data.
type harness struct {
	t     testing.TB
	dir   string
	clock *testkit.Clock
	srv   *bus.Server
	conn  *bus.Conn
	st    *store.Store
	exp   *exports.Manager
	ctl   *control.Control
	first int
	last  int
	// nbdkit is the nbdkit binary the exports run; "" is nbdkit on PATH.
	nbdkit string
	// grace is the Control's CancelGrace; 0 is its default.
	grace time.Duration

	cancel context.CancelFunc
	done   chan error
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clock: testkit.NewClock()}
	h.first, h.last = testkit.FreePorts(t, 3)
	h.boot()
	return h
}

// boot starts the bus and the Control of a harness made by hand.
func (h *harness) boot() {
	h.t.Helper()
	h.srv = bustest.StartServer(h.t, "", bus.Access{})
	h.conn = bustest.ConnectOMA(h.t, h.srv)
	h.start()
	h.t.Cleanup(h.stop)
}

// start opens the store and runs the Control; a failing Restore fails the test.
func (h *harness) start() {
	h.t.Helper()
	if err := h.open(); err != nil {
		h.t.Fatal(err)
	}
	h.run()
}

// open opens the store and restores the Control, without running it.
func (h *harness) open() error {
	var err error
	h.st, err = store.Open(filepath.Join(h.dir, "state.db"), time.Second)
	if err != nil {
		return err
	}
	h.exp = exports.New(exports.Config{FirstPort: h.first, LastPort: h.last, Nbdkit: h.nbdkit})
	h.ctl = control.New(control.Config{DataDir: h.dir, Now: h.clock.Now, CancelGrace: h.grace}, h.st, h.conn, h.exp, h.srv)
	return h.ctl.Restore(context.Background())
}

func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.ctl.Run(ctx) }()
}

// stop stops the Control as the OMA does; stopping twice is harmless.
func (h *harness) stop() {
	if h.st == nil {
		return
	}
	if h.cancel != nil {
		h.cancel()
		if err := <-h.done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
		h.cancel = nil
	}
	h.exp.StopAll()
	_ = h.st.Close()
	h.st = nil
}

// vma registers a VMA and connects it; its heartbeats come from a clock of
// its own.
func (h *harness) vma(id string) (*bus.Conn, seal.KeyPair) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cred, err := h.ctl.AddVMA(ctx, vmas.Registration{ID: id})
	if err != nil {
		h.t.Fatal(err)
	}
	conn := bustest.ConnectVMA(h.t, h.srv.ClientURL(), id, []byte(cred.NKeySeed))
	kp, err := seal.NewKeyPair()
	if err != nil {
		h.t.Fatal(err)
	}
	return conn, kp
}

// heartbeat publishes a heartbeat stamped at vmaTime.
func heartbeat(t *testing.T, conn *bus.Conn, id string, kp seal.KeyPair, vmaTime time.Time) {
	t.Helper()
	ev, err := events.New("/godwit/vma/"+id, &events.Heartbeat{VMAID: id, Version: "test",
		PublicKey: seal.EncodeKey(kp.Public), StartedAt: vmaTime.UTC()}, vmaTime)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.PublishEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
}

// TestHeartbeatUsesTheOMAClock: a VMA whose clock is off by a year either
// way is connected while its heartbeats come, and disconnected 90 s of the
// OMA's clock after the last one.
func TestHeartbeatUsesTheOMAClock(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		skew time.Duration
	}{
		{"a year ahead", 365 * 24 * time.Hour},
		{"a year behind", -365 * 24 * time.Hour},
		{"in step", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			conn, kp := h.vma("vma-1")
			heartbeat(t, conn, "vma-1", kp, h.clock.Now().Add(tt.skew))
			testkit.Eventually(t, "heartbeat applied", func() bool {
				ids, _ := h.ctl.Connected()
				return len(ids) == 1
			})
			list, _ := h.ctl.VMAs()
			if seen := list[0].LastSeen; seen == nil || !seen.Equal(h.clock.Now()) {
				t.Errorf("last seen = %v, want the OMA's now %v", seen, h.clock.Now())
			}
			h.clock.Add(60 * time.Second)
			heartbeat(t, conn, "vma-1", kp, h.clock.Now().Add(tt.skew)) // one more, later
			testkit.Eventually(t, "second heartbeat applied", func() bool {
				list, _ := h.ctl.VMAs()
				return list[0].LastSeen != nil && list[0].LastSeen.Equal(h.clock.Now())
			})
			h.clock.Add(vmas.HeartbeatFresh) // the default -vma-heartbeat-timeout
			if ids, _ := h.ctl.Connected(); len(ids) != 1 {
				t.Errorf("%s after the last heartbeat: connected = %v, want vma-1", vmas.HeartbeatFresh, ids)
			}
			h.clock.Add(time.Second)
			if ids, _ := h.ctl.Connected(); len(ids) != 0 {
				t.Errorf("%s after the last heartbeat: connected = %v, want none", vmas.HeartbeatFresh+time.Second, ids)
			}
		})
	}
}
