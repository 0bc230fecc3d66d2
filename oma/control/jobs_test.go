package control_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/control"
	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/testbed"
)

func testVM(id string, sizes ...int64) events.VM {
	vm := events.VM{ID: id, Name: "VM-" + id, Path: "/DatabanxDC/vm/VM-" + id, Datacenter: "DatabanxDC",
		PowerState: "poweredOn", Firmware: "bios", Networks: []events.Network{}}
	for i, size := range sizes {
		vm.Disks = append(vm.Disks, events.Disk{Key: int32(2000 + i), Label: "Hard disk", CapacityBytes: size})
	}
	return vm
}

// learn publishes a discovery of vms from the VMA and waits until the
// inventory holds them all.
func (h *harness) learn(conn *bus.Conn, vmaID string, vms ...events.VM) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := conn.Publish(ctx, &events.DiscoverResult{RequestID: events.NewID(), VMAID: vmaID,
		VCenter: events.VCenterRef{Host: "vcenter.test", Datacenter: "DatabanxDC"}, VMs: vms})
	if err != nil {
		h.t.Fatal(err)
	}
	testbed.Eventually(h.t, "inventory", func() bool {
		inv, _ := h.ctl.Inventory()
		return len(inv) >= len(vms)
	})
}

// commands counts the replicate commands stored for a VMA.
func commands(t *testing.T, conn *bus.Conn, vmaID string) uint64 {
	t.Helper()
	return bustest.Count(t, conn, bus.StreamCommands, "godwit.replicate.command."+vmaID)
}

// TestStartCommandSurvivesACrash: Start moves the job to queued and writes
// the replicate command to the outbox together; with the bus down it still
// queues the job, and after a crash and a restart the command is published
// exactly once.
func TestStartCommandSurvivesACrash(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	conn, kp := h.vma("vma-1")
	heartbeat(t, conn, "vma-1", kp, h.clock.Now())
	h.learn(conn, "vma-1", testVM("vm-1", 1<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testbed.Eventually(t, "the VMA's key", func() bool {
		vmas, _ := h.ctl.VMAs()
		return len(vmas) == 1 && vmas[0].PublicKey != ""
	})
	j, err := h.ctl.CreateJob(ctx, control.CreateRequest{VM: events.VMRef{ID: "vm-1"}, ReplicationType: events.ReplicationInitial})
	if err != nil {
		t.Fatal(err)
	}
	h.stop()

	// An OMA whose bus connection is gone starts the job, then crashes.
	st, err := store.Open(filepath.Join(h.dir, "state.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	dead := bustest.ConnectOMA(t, h.srv)
	dead.Close()
	ctl := control.New(control.Config{DataDir: h.dir, Now: h.clock.Now}, st, dead, exports.New(exports.Config{FirstPort: h.first, LastPort: h.last}), h.srv)
	started, err := ctl.Start(ctx, j.ID, control.Credentials{Username: "u", Password: "p"})
	if err != nil || started.State != events.JobQueued {
		t.Fatalf("Start with the bus down = %s, %v; want queued", started.State, err)
	}
	_ = st.Close()
	if n := commands(t, h.conn, "vma-1"); n != 0 {
		t.Fatalf("%d commands published through a closed connection", n)
	}

	h.start() // the restarted OMA publishes what its outbox holds
	testbed.Eventually(t, "the command published", func() bool { return commands(t, h.conn, "vma-1") == 1 })
	h.stop()
	h.start()
	h.stop()
	if n := commands(t, h.conn, "vma-1"); n != 1 {
		t.Errorf("after two restarts %d commands were published, want 1", n)
	}
	h.start()
	if got, _ := h.ctl.Job(j.ID); got.State != events.JobQueued {
		t.Errorf("job = %s, want queued", got.State)
	}
}

// TestJobIDsInOneSecond: jobs of one VM created in the same second of the
// clock get ids naming that second, told apart by a suffix.
func TestJobIDsInOneSecond(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	conn, _ := h.vma("vma-1")
	h.learn(conn, "vma-1", testVM("vm-1", 1<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sec := strconv.FormatInt(h.clock.Now().Unix(), 10)
	for _, want := range []string{"repl-vm-1-" + sec, "repl-vm-1-" + sec + "-2", "repl-vm-1-" + sec + "-3"} {
		j, err := h.ctl.CreateJob(ctx, control.CreateRequest{VM: events.VMRef{ID: "vm-1"}, ReplicationType: events.ReplicationInitial})
		if err != nil {
			t.Fatal(err)
		}
		if j.ID != want {
			t.Errorf("job id = %q, want %q", j.ID, want)
		}
		if _, err := h.ctl.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
	}
}
