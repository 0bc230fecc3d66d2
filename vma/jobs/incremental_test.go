package jobs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/godwit/godwit/events"
)

// cbtBlock is the granularity of the simulator's change tracking.
const cbtBlock = 64 << 10

// createIncremental creates an incremental job for the VM called name.
func (b *bed) createIncremental(t *testing.T, name string) job {
	t.Helper()
	var j job
	if code := b.o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": b.vms[name].ID},
		"replication_type": "incremental"}, &j); code != http.StatusCreated {
		t.Fatalf("create an incremental job for %s = %d %+v", name, code, j)
	}
	return j
}

// guestWrites writes into the VM's disk files as a guest would: random
// data at random offsets and sizes, some zeroes over data, and one byte at
// the very end of a disk. It returns how many bytes of 64 KiB blocks
// changed content.
func guestWrites(t *testing.T, b *bed, path string, rng *rand.Rand) int64 {
	t.Helper()
	var changed int64
	for _, d := range b.vms[threeDisks].Disks {
		file, err := b.sim.DiskFile(context.Background(), path, d.Key)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(file, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		size := d.CapacityBytes
		type write struct {
			off  int64
			data []byte
		}
		var writes []write
		for range 1 + rng.IntN(4) {
			n := int64(1 + rng.IntN(300<<10))
			off := rng.Int64N(size - n)
			data := make([]byte, n)
			if rng.IntN(4) > 0 {
				for i := range data {
					data[i] = byte(rng.Uint32())
				}
			}
			writes = append(writes, write{off, data})
		}
		if d.Key == b.vms[threeDisks].Disks[0].Key {
			writes = append(writes, write{size - 1, []byte{byte(1 + rng.IntN(255))}})
		}
		blocks := map[int64]bool{}
		for _, w := range writes {
			for blk := w.off / cbtBlock; blk <= (w.off+int64(len(w.data))-1)/cbtBlock; blk++ {
				blocks[blk] = true
			}
		}
		before := blockSums(t, f, blocks, size)
		for _, w := range writes {
			if _, err := f.WriteAt(w.data, w.off); err != nil {
				t.Fatal(err)
			}
		}
		after := blockSums(t, f, blocks, size)
		for blk, sum := range after {
			if sum != before[blk] {
				changed += min(cbtBlock, size-blk*cbtBlock)
			}
		}
		f.Close()
	}
	return changed
}

func blockSums(t *testing.T, f *os.File, blocks map[int64]bool, size int64) map[int64][32]byte {
	t.Helper()
	sums := map[int64][32]byte{}
	buf := make([]byte, cbtBlock)
	for blk := range blocks {
		n := min(cbtBlock, size-blk*cbtBlock)
		if _, err := f.ReadAt(buf[:n], blk*cbtBlock); err != nil {
			t.Fatal(err)
		}
		sums[blk] = sha256.Sum256(buf[:n])
	}
	return sums
}

// TestIncrementalCycles: an initial cycle of a three-disk VM, then five
// incremental ones, each after random guest writes: after each, every
// export equals its source disk, and the job copied exactly the 64 KiB
// blocks that changed.
func TestIncrementalCycles(t *testing.T) {
	b := newBed(t, bedConfig{})
	rng := rand.New(rand.NewPCG(7, 9))
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	if got := b.wait(t, j.JobID); got.State != events.JobCompleted {
		t.Fatalf("initial job = %s (%s)", got.State, got.LastError)
	}
	for cycle := 1; cycle <= 5; cycle++ {
		changed := guestWrites(t, b, threeDisksPath, rng)
		inc := b.createIncremental(t, threeDisks)
		b.startFromOMA(t, inc.JobID)
		got := b.wait(t, inc.JobID)
		if got.State != events.JobCompleted {
			t.Fatalf("cycle %d: job = %s (%s)", cycle, got.State, got.LastError)
		}
		b.assertCopied(t, threeDisksPath, got)
		if got.BytesTotal != changed {
			t.Errorf("cycle %d: the job copied %d bytes, the guest changed %d (in 64 KiB blocks)", cycle, got.BytesTotal, changed)
		}
	}
	b.assertNoSnapshot(t, threeDisksPath)
}

// TestCBTReset: after change tracking is reset on the VM, an incremental
// job fails saying so; with on_cbt_reset full it copies every disk whole
// over the last copy, byte-exact.
func TestCBTReset(t *testing.T) {
	b := newBed(t, bedConfig{})
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	if got := b.wait(t, j.JobID); got.State != events.JobCompleted {
		t.Fatalf("initial job = %s (%s)", got.State, got.LastError)
	}
	s := b.login(t)
	defer s.Close()
	ctx := context.Background()
	vm, err := s.FindVM(ctx, threeDisksPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{false, true} {
		task, err := object.NewVirtualMachine(s.Client, vm.Ref).Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: &on})
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	guestWrites(t, b, threeDisksPath, rand.New(rand.NewPCG(1, 2)))

	refused := b.createIncremental(t, threeDisks)
	b.startFromOMA(t, refused.JobID)
	if got := b.wait(t, refused.JobID); got.State != events.JobFailed || !strings.Contains(got.LastError, "change tracking was reset") ||
		!strings.Contains(got.LastError, "on_cbt_reset") {
		t.Fatalf("incremental after a reset = %s (%s), want failed saying so", got.State, got.LastError)
	}

	full := b.createIncremental(t, threeDisks)
	var out map[string]any
	if code := b.o.Do(http.MethodPost, "/api/v1/replications/"+full.JobID+"/start", map[string]any{"username": b.sim.Username,
		"password": b.sim.Password, "on_cbt_reset": "full"}, &out); code != http.StatusAccepted {
		t.Fatalf("start with on_cbt_reset full = %d %v", code, out)
	}
	got := b.wait(t, full.JobID)
	if got.State != events.JobCompleted {
		t.Fatalf("incremental with on_cbt_reset full = %s (%s)", got.State, got.LastError)
	}
	b.assertCopied(t, threeDisksPath, got)
	var view struct {
		Disks []struct {
			FullCopy bool `json:"full_copy"`
		} `json:"disks"`
	}
	b.o.Do(http.MethodGet, "/api/v1/replications/"+full.JobID, nil, &view)
	for i, d := range view.Disks {
		if !d.FullCopy {
			t.Errorf("disk %d not marked full_copy", i)
		}
	}
	var p struct {
		Field string `json:"field"`
	}
	if code := b.o.Do(http.MethodPost, "/api/v1/replications/"+full.JobID+"/start", map[string]any{"username": "u", "password": "p",
		"on_cbt_reset": "sometimes"}, &p); code != http.StatusBadRequest || p.Field != "on_cbt_reset" {
		t.Errorf("on_cbt_reset sometimes = %d %+v, want 400 naming it", code, p)
	}
}

// TestEnablesCBT: a VM without change tracking gets it turned on by its
// first job, which reports change ids; the next cycle is incremental. A
// job started with "verify": false is not verified.
func TestEnablesCBT(t *testing.T) {
	const name, path = "gen-vm-002", "/DatabanxDC/vm/Linux/gen-vm-002"
	b := newBed(t, bedConfig{})
	s := b.login(t)
	defer s.Close()
	ctx := context.Background()
	if vm, err := s.FindVM(ctx, path); err != nil || vm.CBT {
		t.Fatalf("%s: CBT %v, %v; the test needs a VM without", name, vm != nil && vm.CBT, err)
	}
	j := b.create(t, name)
	var out map[string]any
	if code := b.o.Do(http.MethodPost, "/api/v1/replications/"+j.JobID+"/start", map[string]any{"username": b.sim.Username,
		"password": b.sim.Password, "verify": false}, &out); code != http.StatusAccepted {
		t.Fatalf("start = %d %v", code, out)
	}
	got := b.wait(t, j.JobID)
	if got.State != events.JobCompleted {
		t.Fatalf("initial job = %s (%s)", got.State, got.LastError)
	}
	if vm, err := s.FindVM(ctx, path); err != nil || !vm.CBT {
		t.Errorf("after the job CBT is %v (%v), want on", vm != nil && vm.CBT, err)
	}
	if got.Verified || got.Disks[0].Verified || got.Disks[0].ChangeID == "" {
		t.Errorf("job with verify false: verified %v, disk %+v; want not verified, a change id", got.Verified, got.Disks[0])
	}
	b.assertCopied(t, path, got)

	f, err := b.sim.DiskFile(ctx, path, got.Disks[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(f, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(bytes.Repeat([]byte{0x5a}, 100<<10), 300<<20); err != nil {
		t.Fatal(err)
	}
	w.Close()
	inc := b.createIncremental(t, name)
	b.startFromOMA(t, inc.JobID)
	got = b.wait(t, inc.JobID)
	if got.State != events.JobCompleted || !got.Verified {
		t.Fatalf("incremental = %s (%s), verified %v", got.State, got.LastError, got.Verified)
	}
	// 100 KiB at 300 MiB (a multiple of 64 KiB) touch two 64 KiB blocks.
	if got.BytesTotal != 2*cbtBlock {
		t.Errorf("the incremental copied %d bytes, want the two 64 KiB blocks written", got.BytesTotal)
	}
	b.assertCopied(t, path, got)
}
