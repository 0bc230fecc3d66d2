package standby_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/standby"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/testkit"
)

// connect starts a server with the buckets and connects as the OMA.
func connect(t *testing.T) *bus.Conn {
	t.Helper()
	srv := bustest.StartServer(t, "", bus.Access{})
	conn := bustest.ConnectOMA(t, srv)
	if err := standby.EnsureBuckets(testkit.Context(t), conn.JetStream(), 1); err != nil {
		t.Fatal(err)
	}
	return conn
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// TestLease: one OMA holds the lease while it renews it; another takes it
// only after the first stopped renewing, and the first, renewing again,
// learns it lost it; a lease released is taken at once.
func TestLease(t *testing.T) {
	conn := connect(t)
	ctx := testkit.Context(t)
	const ttl = time.Second
	newLease := func(name string) *standby.Lease {
		l, err := standby.NewLease(ctx, conn.JetStream(), standby.LeaseConfig{Holder: standby.Holder{Name: name}, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b := newLease("oma-a"), newLease("oma-b")
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	holdCtx, stopHolding := context.WithCancel(ctx)
	held := make(chan error, 1)
	go func() { held <- a.Hold(holdCtx) }()

	// While a renews, b waits; three TTLs.
	bctx, cancel := context.WithTimeout(ctx, 3*ttl)
	err := b.Acquire(bctx)
	cancel()
	if err == nil {
		// Only a machine too busy for a to renew in time lets b in; a must
		// then have stopped acting first.
		select {
		case herr := <-held:
			if !errors.Is(herr, standby.ErrLeaseLost) {
				t.Fatalf("b took the lease while a held it (a's Hold: %v)", herr)
			}
			t.Logf("the machine was too busy for a to renew in time: a stopped (%v), then b took over", herr)
		default:
			t.Fatal("b took the lease while a was still holding it")
		}
	} else {
		if h, ok, err := b.Current(ctx); err != nil || !ok || h.Name != "oma-a" {
			t.Fatalf("the lease names %+v (%v, %v), want oma-a", h, ok, err)
		}
		// a stops renewing, as if killed: b takes over, not before the
		// TTL has passed since a's last renewal (at most TTL/5 before it stopped).
		stopped := time.Now()
		stopHolding()
		if err := <-held; err != nil {
			t.Fatalf("a's Hold = %v after its context ended", err)
		}
		if err := b.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(stopped); waited < ttl-ttl/5 {
			t.Errorf("b took the lease %s after a stopped renewing, before the TTL of %s", waited, ttl)
		}
	}
	stopHolding()
	if err := a.Hold(ctx); !errors.Is(err, standby.ErrLeaseLost) {
		t.Errorf("a renewing after b took over: %v, want ErrLeaseLost", err)
	}

	// b releases: a takes it at once.
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithTimeout(ctx, ttl/2)
	defer cancel()
	if err := a.Acquire(actx); err != nil {
		t.Errorf("a after b released: %v", err)
	}
}

// TestStateFollowsTheActiveStore: the active store's changes, made before
// and after its journal is on, reach a standby's store through the bucket,
// a large inventory in chunks; a write waits until its change is copied.
func TestStateFollowsTheActiveStore(t *testing.T) {
	conn := connect(t)
	ctx := testkit.Context(t)
	active, copyOf := openStore(t), openStore(t)
	now := time.Now().UTC()
	put := func(i int) {
		t.Helper()
		err := active.Update(func(tx *bbolt.Tx) error {
			if err := store.PutJob(tx, store.Job{ID: fmt.Sprintf("job-%d", i), VM: events.VMRef{ID: "vm-1"}, State: "pending", CreatedAt: now}); err != nil {
				return err
			}
			return store.PutVMA(tx, store.VMA{ID: fmt.Sprintf("vma-%d", i), NKey: "U"})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	put(1)
	if err := active.EnableJournal(); err != nil {
		t.Fatal(err)
	}
	// ship starts a shipper; it returns a func that stops it.
	ship := func() func() {
		shipper := standby.NewShipper(active, conn.JetStream(), standby.ShipperConfig{})
		active.SetCommitHook(shipper.Wait)
		sctx, stopShipping := context.WithCancel(ctx)
		shipped := make(chan error, 1)
		go func() { shipped <- shipper.Run(sctx) }()
		return func() {
			stopShipping()
			if err := <-shipped; err != nil {
				t.Error(err)
			}
		}
	}
	stopShipping := ship()
	defer func() { stopShipping() }()

	put(2)
	var vms []events.VM
	for i := range 3000 { // about 1.3 MB of JSON: six chunks
		vms = append(vms, events.VM{ID: fmt.Sprintf("vm-%05d", i), Name: strings.Repeat("n", 300), Path: "/dc/vm/x"})
	}
	if err := active.Update(func(tx *bbolt.Tx) error {
		if err := store.PutInventory(tx, store.Inventory{VMAID: "vma-1", Result: events.DiscoverResult{VMAID: "vma-1", VCenter: events.VCenterRef{Host: "vc"}, VMs: vms}}); err != nil {
			return err
		}
		return store.DeleteVMA(tx, "vma-1")
	}); err != nil {
		t.Fatal(err)
	}

	follower := standby.NewFollower(copyOf, conn.JetStream(), nil)
	fctx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan error, 1)
	go func() { followed <- follower.Run(fctx) }()
	if err := follower.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	put(3) // after the catch-up: followed live
	testkit.Eventually(t, "job-3 copied", func() bool {
		return copyOf.View(func(tx *bbolt.Tx) error { _, err := store.GetJob(tx, "job-3"); return err }) == nil
	})
	if n := chunksHeld(t, conn); n != 6 {
		t.Errorf("the bucket holds %d chunks, want the inventory's 6", n)
	}
	// The inventory shrinks to two chunks, then to none, and grows again:
	// the chunks it no longer uses are purged, also by a new shipper
	// (which learns them from the bucket), and the copy follows.
	for _, c := range []struct {
		vms, chunks int
		restart     bool
	}{{1000, 2, false}, {10, 0, false}, {3000, 6, false}, {10, 0, true}, {3000, 6, false}} {
		if c.restart {
			stopShipping()
			stopShipping = ship()
		}
		if err := active.Update(func(tx *bbolt.Tx) error {
			return store.PutInventory(tx, store.Inventory{VMAID: "vma-1", Result: events.DiscoverResult{VMAID: "vma-1", VCenter: events.VCenterRef{Host: "vc"}, VMs: vms[:c.vms]}})
		}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, fmt.Sprintf("the inventory of %d VMs copied", c.vms), func() bool {
			var n int
			_ = copyOf.View(func(tx *bbolt.Tx) error {
				inv, err := store.GetInventory(tx, "vma-1", "vc")
				n = len(inv.Result.VMs)
				return err
			})
			return n == c.vms
		})
		if n := chunksHeld(t, conn); n != c.chunks {
			t.Errorf("an inventory of %d VMs leaves %d chunks in the bucket, want %d", c.vms, n, c.chunks)
		}
	}
	stopFollowing()
	if err := <-followed; err != nil {
		t.Fatal(err)
	}
	_ = copyOf.View(func(tx *bbolt.Tx) error {
		jobs, err := store.Jobs(tx)
		if err != nil || len(jobs) != 3 {
			t.Errorf("the copy has %d jobs (%v), want 3", len(jobs), err)
		}
		vmas, err := store.VMAs(tx)
		if err != nil || len(vmas) != 2 || vmas[0].ID != "vma-2" {
			t.Errorf("the copy's VMAs: %+v (%v), want vma-2 and vma-3", vmas, err)
		}
		inv, err := store.GetInventory(tx, "vma-1", "vc")
		if err != nil || len(inv.Result.VMs) != len(vms) || inv.Result.VMs[2999].ID != "vm-02999" {
			t.Errorf("the copied inventory: %d VMs (%v), want %d", len(inv.Result.VMs), err, len(vms))
		}
		return nil
	})
}

// chunksHeld counts the chunks in the state bucket.
func chunksHeld(t *testing.T, conn *bus.Conn) int {
	t.Helper()
	ctx := testkit.Context(t)
	str, err := conn.JetStream().Stream(ctx, "KV_"+standby.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx, jetstream.WithSubjectFilter("$KV."+standby.StateBucket+".*.*.c.*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(info.State.Subjects)
}
