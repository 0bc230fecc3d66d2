package control_test

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/control"
	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/secret"
	"github.com/godwit/godwit/testkit"
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
	_, err := conn.Publish(ctx, &events.DiscoverResult{RequestID: bustest.AskDiscovery(h.t, conn, vmaID, "vcenter.test"), VMAID: vmaID,
		VCenter: events.VCenterRef{Host: "vcenter.test", Datacenter: "DatabanxDC"}, VMs: vms})
	if err != nil {
		h.t.Fatal(err)
	}
	testkit.Eventually(h.t, "inventory", func() bool {
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
	testkit.Eventually(t, "the VMA's key", func() bool {
		vmas, _ := h.ctl.VMAs()
		return len(vmas) == 1 && vmas[0].PublicKey != ""
	})
	j, err := h.ctl.CreateJob(ctx, jobs.CreateRequest{VM: events.VMRef{ID: "vm-1"}, ReplicationType: events.ReplicationInitial})
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
	started, err := ctl.Start(ctx, j.ID, vmas.VCenterCredentials{Username: "u", Password: secret.New("p")}, jobs.StartOptions{})
	if err != nil || started.State != events.JobQueued {
		t.Fatalf("Start with the bus down = %s, %v; want queued", started.State, err)
	}
	_ = st.Close()
	if n := commands(t, h.conn, "vma-1"); n != 0 {
		t.Fatalf("%d commands published through a closed connection", n)
	}

	h.start() // the restarted OMA publishes what its outbox holds
	testkit.Eventually(t, "the command published", func() bool { return commands(t, h.conn, "vma-1") == 1 })
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
		j, err := h.ctl.CreateJob(ctx, jobs.CreateRequest{VM: events.VMRef{ID: "vm-1"}, ReplicationType: events.ReplicationInitial})
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

// TestCancelKeepsTheExportForTheVMA: cancelling a pending job releases its
// export at once; cancelling a started one keeps the export up until the
// VMA reports that the job stopped, or until the grace period ends.
func TestCancelKeepsTheExportForTheVMA(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.stop()
	h.grace = 500 * time.Millisecond
	h.start()
	conn, kp := h.vma("vma-1")
	heartbeat(t, conn, "vma-1", kp, h.clock.Now())
	h.learn(conn, "vma-1", testVM("vm-1", 1<<20), testVM("vm-2", 1<<20), testVM("vm-3", 1<<20))
	testkit.Eventually(t, "the VMA's key", func() bool {
		vmas, _ := h.ctl.VMAs()
		return len(vmas) == 1 && vmas[0].PublicKey != ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	serving := func(j store.Job) bool {
		d := j.Disks[0]
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		defer pcancel()
		_, err := exports.Probe(pctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(d.Export.Port)), d.Export.Name)
		return err == nil
	}
	job := func(vm string, start bool) store.Job {
		j, err := h.ctl.CreateJob(ctx, jobs.CreateRequest{VM: events.VMRef{ID: vm}, ReplicationType: events.ReplicationInitial})
		if err != nil {
			t.Fatal(err)
		}
		if start {
			if _, err := h.ctl.Start(ctx, j.ID, vmas.VCenterCredentials{Username: "u", Password: secret.New("p")}, jobs.StartOptions{}); err != nil {
				t.Fatal(err)
			}
			// Sent to its VMA by the queue: from then on the VMA may write.
			testkit.Eventually(t, "the job dispatched", func() bool {
				cur, err := h.ctl.Job(j.ID)
				return err == nil && cur.DispatchedAt != nil
			})
		}
		if _, err := h.ctl.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		return j
	}

	pending := job("vm-1", false)
	if serving(pending) {
		t.Error("a cancelled pending job's export is still served")
	}

	reported := job("vm-2", true)
	if !serving(reported) {
		t.Fatal("a cancelled started job's export was released before its VMA stopped")
	}
	if _, err := conn.Publish(ctx, &events.ReplicationStatus{JobID: reported.ID, VMAID: "vma-1", Seq: 1, State: events.StatusCancelled,
		Error: &events.Failure{Code: events.FailureCancelled, Message: "cancelled through the OMA API"}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the export released once the VMA reported the job stopped", func() bool { return !serving(reported) })

	silent := job("vm-3", true)
	testkit.Eventually(t, "the export released after the grace period", func() bool { return !serving(silent) })
	if got, _ := h.ctl.Job(silent.ID); got.State != events.JobCancelled {
		t.Errorf("job = %s, want cancelled", got.State)
	}
}

// TestIncrementalAfterDiskChanges: an incremental job builds on each disk's
// change id; a disk added since the base gets a fresh volume and no base (a
// full copy), and a disk removed since is reported.
func TestIncrementalAfterDiskChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	conn, kp := h.vma("vma-1")
	heartbeat(t, conn, "vma-1", kp, h.clock.Now())
	vm := testVM("vm-1", 1<<20, 2<<20)
	h.learn(conn, "vma-1", vm)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testkit.Eventually(t, "the VMA's key", func() bool {
		vmas, _ := h.ctl.VMAs()
		return len(vmas) == 1 && vmas[0].PublicKey != ""
	})
	initial, err := h.ctl.CreateJob(ctx, jobs.CreateRequest{VM: events.VMRef{ID: "vm-1"}, ReplicationType: events.ReplicationInitial})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.ctl.Start(ctx, initial.ID, vmas.VCenterCredentials{Username: "u", Password: secret.New("p")}, jobs.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Publish(ctx, &events.ReplicationStatus{JobID: initial.ID, VMAID: "vma-1", Seq: 1, State: events.StatusCompleted,
		Disks: []events.DiskChange{{Key: 2000, ChangeID: "52 aa/1"}, {Key: 2001, ChangeID: "52 bb/1"}}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the initial job completed", func() bool {
		j, _ := h.ctl.Job(initial.ID)
		return j.State == events.JobCompleted
	})

	// Disk 2001 is gone, disk 2002 is new.
	vm.Disks = []events.Disk{vm.Disks[0], {Key: 2002, Label: "Hard disk 3", CapacityBytes: 3 << 20}}
	h.learn(conn, "vma-1", vm)
	testkit.Eventually(t, "the new disk in the inventory", func() bool {
		inv, _ := h.ctl.Inventory()
		return len(inv) == 1 && len(inv[0].Disks) == 2 && inv[0].Disks[1].Key == 2002
	})
	inc, err := h.ctl.CreateJob(ctx, jobs.CreateRequest{VM: events.VMRef{ID: "vm-1"}, ReplicationType: events.ReplicationIncremental})
	if err != nil {
		t.Fatal(err)
	}
	if len(inc.Disks) != 2 || inc.BaseJobID != initial.ID || inc.Generation != initial.Generation {
		t.Fatalf("incremental = %+v, want two disks on %s's generation", inc, initial.ID)
	}
	if d := inc.Disks[0]; d.Key != 2000 || d.BaseChangeID != "52 aa/1" || d.Volume != initial.Disks[0].Volume {
		t.Errorf("kept disk = %+v, want the base's change id and volume", d)
	}
	if d := inc.Disks[1]; d.Key != 2002 || d.BaseChangeID != "" || d.Volume == "" || d.Volume == initial.Disks[1].Volume {
		t.Errorf("new disk = %+v, want no base and a volume of its own", d)
	}
	if len(inc.RemovedDisks) != 1 || inc.RemovedDisks[0] != 2001 {
		t.Errorf("removed disks = %v, want [2001]", inc.RemovedDisks)
	}
}
