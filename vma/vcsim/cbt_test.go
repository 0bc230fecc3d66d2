package vcsim

import (
	"bytes"
	"cmp"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// changeIDPattern is the shape of a change id: vSphere's.
var changeIDPattern = regexp.MustCompile(`^([0-9a-f]{2} ){7}[0-9a-f]{2}-([0-9a-f]{2} ){7}[0-9a-f]{2}/[1-9][0-9]*$`)

// snapshotDisks reads the disks of the snapshot snap of vm.
func snapshotDisks(t testing.TB, vm *object.VirtualMachine, snap types.ManagedObjectReference) []*types.VirtualDisk {
	t.Helper()
	var s mo.VirtualMachineSnapshot
	if err := vm.Properties(t.Context(), snap, []string{"config.hardware"}, &s); err != nil {
		t.Fatalf("snapshot devices: %v", err)
	}
	var ds []*types.VirtualDisk
	for _, d := range object.VirtualDeviceList(s.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
		ds = append(ds, d.(*types.VirtualDisk))
	}
	return ds
}

// changeIDs lists the changeIds of disks' backings.
func changeIDs(t testing.TB, disks []*types.VirtualDisk) []string {
	t.Helper()
	var ids []string
	for _, d := range disks {
		ids = append(ids, d.Backing.(*types.VirtualDiskFlatVer2BackingInfo).ChangeId)
	}
	return ids
}

// uuidPart is a change id without its sequence number.
func uuidPart(id string) string {
	u, _, _ := strings.Cut(id, "/")
	return u
}

// setCBT turns vm's change tracking on or off, and checks that
// config.changeTrackingEnabled says so.
func setCBT(t testing.TB, vm *object.VirtualMachine, on bool) {
	t.Helper()
	task, err := vm.Reconfigure(t.Context(), types.VirtualMachineConfigSpec{ChangeTrackingEnabled: &on})
	if err := wait(t.Context(), task, err); err != nil {
		t.Fatalf("reconfigure changeTrackingEnabled=%v: %v", on, err)
	}
	var o mo.VirtualMachine
	if err := vm.Properties(t.Context(), vm.Reference(), []string{"config.changeTrackingEnabled"}, &o); err != nil {
		t.Fatal(err)
	}
	if got := o.Config.ChangeTrackingEnabled; got == nil || *got != on {
		t.Fatalf("after reconfigure to %v, changeTrackingEnabled = %v", on, got)
	}
}

// query asks for the first answer about disk at snap since changeID.
func query(t testing.TB, vm *object.VirtualMachine, snap types.ManagedObjectReference, key int32, changeID string) (types.DiskChangeInfo, error) {
	t.Helper()
	res, err := methods.QueryChangedDiskAreas(t.Context(), vm.Client(), &types.QueryChangedDiskAreas{
		This: vm.Reference(), Snapshot: &snap, DeviceKey: key, ChangeId: changeID})
	if err != nil {
		return types.DiskChangeInfo{}, err
	}
	return res.Returnval, nil
}

// wantChangeIDFault checks that err is an InvalidArgument fault naming
// changeId, which vma/vcenter takes for a CBT reset.
func wantChangeIDFault(t testing.TB, what string, err error) {
	t.Helper()
	var ia *types.InvalidArgument
	if _, ok := fault.As(err, &ia); !ok || ia.InvalidProperty != "changeId" {
		t.Errorf("%s: %v, want InvalidArgument changeId", what, err)
	}
}

// TestIncremental checks that the areas changed between two snapshots are
// exactly the 64 KiB blocks whose content changed in between: random
// writes, zeros over data, the disk's very last byte, but not identical
// bytes nor zeros over a hole, in answers of various sizes.
func TestIncremental(t *testing.T) {
	// Not a multiple of ChangeBlock: the last block is cut by the capacity.
	const capacity = 1<<30 + 5<<10
	for _, tc := range []struct {
		name     string
		window   int64
		maxAreas int
	}{
		{"defaults", 0, 0},
		{"one area per answer", 0, 1},
		{"small windows", 100<<20 + 512, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := start(t, Config{ChangedAreasWindow: tc.window, ChangedAreasMax: tc.maxAreas,
				Extra: []VM{{Name: "cbt-vm", Disks: []int64{capacity}, CBT: true}}})
			window, maxAreas := cmpOr(tc.window, DefaultChangedAreasWindow), cmpOr(tc.maxAreas, DefaultChangedAreasMax)
			c := login(t, sim)
			const path = "/" + Datacenter + "/vm/cbt-vm"
			vm := findVM(t, c, path)
			disk := disks(t, vm)[0]
			file, err := sim.DiskFile(t.Context(), path, disk.Key)
			if err != nil {
				t.Fatal(err)
			}

			snap1 := snapshot(t, vm)
			id1 := changeIDs(t, snapshotDisks(t, vm, snap1))[0]
			if !changeIDPattern.MatchString(id1) || !strings.HasSuffix(id1, "/1") {
				t.Fatalf("first snapshot's changeId %q, want <uuid>/1", id1)
			}
			if got := changeIDs(t, disks(t, vm))[0]; got != id1 {
				t.Errorf("the VM's changeId %q, the snapshot's %q", got, id1)
			}

			// The writes; the blocks they touch, as they were before.
			rng := rand.New(rand.NewPCG(1, uint64(len(tc.name))))
			before := make(map[int64][]byte)
			write := func(off int64, b []byte) {
				for blk := off / ChangeBlock; blk <= (off+int64(len(b))-1)/ChangeBlock; blk++ {
					if _, ok := before[blk]; !ok {
						before[blk] = readAt(t, file, blk*ChangeBlock, min(ChangeBlock, capacity-blk*ChangeBlock))
					}
				}
				writeAt(t, file, off, b)
			}
			pieces := diskLayout(capacity, testData)
			for range 25 {
				off := rng.Int64N(capacity)
				b := make([]byte, min(1+rng.Int64N(300<<10), capacity-off))
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				write(off, b)
			}
			// Zeros over a block of data: a change.
			zeroed := pieces[1].off
			if bytes.Equal(readAt(t, file, zeroed, ChangeBlock), make([]byte, ChangeBlock)) {
				t.Fatalf("block at %d holds no data", zeroed)
			}
			write(zeroed, make([]byte, ChangeBlock))
			// Zeros over a hole: no change.
			hole := pieces[1].off - 10*ChangeBlock
			write(hole, make([]byte, 2*ChangeBlock))
			// The same bytes again over a block of data: no change.
			same := pieces[2].off
			write(same, readAt(t, file, same, ChangeBlock))
			// The very last byte.
			last := readAt(t, file, capacity-1, 1)
			write(capacity-1, []byte{last[0] ^ 0xff})

			var want []extent
			for blk, b := range before {
				if !bytes.Equal(b, readAt(t, file, blk*ChangeBlock, int64(len(b)))) {
					want = append(want, extent{blk * ChangeBlock, int64(len(b))})
				}
			}
			slices.SortFunc(want, func(a, b extent) int { return cmp.Compare(a.off, b.off) })
			want = merge(want)
			changed := func(off int64) bool {
				for _, e := range want {
					if e.off <= off && off < e.off+e.n {
						return true
					}
				}
				return false
			}
			for _, off := range []int64{hole, hole + ChangeBlock, same} {
				if changed(off) {
					t.Fatalf("block at %d is among the changes: the test's writes overlap", off)
				}
			}
			if !changed(zeroed) || len(want) < 10 {
				t.Fatalf("changes %v: want the zeroed block at %d and more", want, zeroed)
			}
			if e := want[len(want)-1]; e.off+e.n != capacity {
				t.Fatalf("the last block is not among the changes %v", want)
			}

			snap2 := snapshot(t, vm)
			id2 := changeIDs(t, snapshotDisks(t, vm, snap2))[0]
			if !changeIDPattern.MatchString(id2) || !strings.HasSuffix(id2, "/2") || uuidPart(id2) != uuidPart(id1) {
				t.Fatalf("second snapshot's changeId %q after %q, want the same uuid, /2", id2, id1)
			}
			if got := changeIDs(t, disks(t, vm))[0]; got != id2 {
				t.Errorf("the VM's changeId %q, the snapshot's %q", got, id2)
			}

			got, _ := queryAll(t, c, vm, snap2, disk, id1, window, maxAreas)
			if !slices.Equal(got, want) {
				t.Errorf("changed areas since %q:\n got %v\nwant %v", id1, got, want)
			}
			for _, e := range got {
				if e.off%ChangeBlock != 0 || (e.n%ChangeBlock != 0 && e.off+e.n != capacity) {
					t.Errorf("area %v is not made of 64 KiB blocks", e)
				}
			}
			// Each snapshot since its own change id: nothing.
			for _, s := range []struct {
				snap types.ManagedObjectReference
				id   string
			}{{snap1, id1}, {snap2, id2}} {
				if got, _ := queryAll(t, c, vm, s.snap, disk, s.id, window, maxAreas); len(got) != 0 {
					t.Errorf("changes at %s since its own change id %q: %v", s.snap.Value, s.id, got)
				}
			}
			// govmomi's method, which sends the base snapshot's change id.
			info, err := vm.QueryChangedDiskAreas(t.Context(), &snap1, &snap2, disk, 0)
			if err != nil || len(info.ChangedArea) == 0 || info.ChangedArea[0].Start != want[0].off {
				t.Errorf("VirtualMachine.QueryChangedDiskAreas(snap1, snap2) = %+v, %v", info, err)
			}
			// "*" still answers the allocated extents.
			if all, _ := queryAll(t, c, vm, snap2, disk, "*", window, maxAreas); !slices.Equal(all, merge(dataExtents(t, file))) {
				t.Errorf("areas since \"*\" %v, want the allocated extents", all)
			}
		})
	}
}

// TestChangeTrackingReset checks the faults of change ids the simulator
// does not know: unknown, another disk's, forgotten, and from before
// change tracking was turned off and on again.
func TestChangeTrackingReset(t *testing.T) {
	sim := start(t, Config{ChangeIDs: 2})
	c := login(t, sim)
	seed := findVM(t, c, seedPath)
	snap1 := snapshot(t, seed)
	ids1 := changeIDs(t, snapshotDisks(t, seed, snap1))
	key := disks(t, seed)[0].Key
	if uuidPart(ids1[0]) == uuidPart(ids1[1]) {
		t.Errorf("both disks' change ids have the same uuid: %q", ids1)
	}
	if _, err := query(t, seed, snap1, key, ids1[0]); err != nil {
		t.Fatalf("query since %q: %v", ids1[0], err)
	}
	_, err := query(t, seed, snap1, key, ids1[1])
	wantChangeIDFault(t, "another disk's change id", err)
	_, err = query(t, seed, snap1, key, uuidPart(ids1[0])+"/7")
	wantChangeIDFault(t, "unknown change id", err)

	// With two change ids remembered, a third snapshot forgets the first.
	snapshot(t, seed)
	snap3 := snapshot(t, seed)
	ids3 := changeIDs(t, snapshotDisks(t, seed, snap3))
	if !strings.HasSuffix(ids3[0], "/3") || uuidPart(ids3[0]) != uuidPart(ids1[0]) {
		t.Errorf("third snapshot's change id %q after %q", ids3[0], ids1[0])
	}
	_, err = query(t, seed, snap3, key, ids1[0])
	wantChangeIDFault(t, "forgotten change id", err)
	_, err = query(t, seed, snap1, key, "*")
	if err != nil {
		t.Errorf("\"*\" at a snapshot whose change id is forgotten: %v", err)
	}

	// Off: the disks lose their change ids and the old ones are unknown.
	setCBT(t, seed, false)
	if ids := changeIDs(t, disks(t, seed)); ids[0] != "" || ids[1] != "" {
		t.Errorf("change tracking off: the VM's change ids %q", ids)
	}
	_, err = query(t, seed, snap3, key, ids3[0])
	wantChangeIDFault(t, "a change id after a reset", err)
	snap4 := snapshot(t, seed)
	if ids := changeIDs(t, snapshotDisks(t, seed, snap4)); ids[0] != "" {
		t.Errorf("change tracking off: a snapshot's change ids %q", ids)
	}
	// On again: a new uuid, counting from 1; the old ids stay unknown.
	setCBT(t, seed, true)
	snap5 := snapshot(t, seed)
	ids5 := changeIDs(t, snapshotDisks(t, seed, snap5))
	if !changeIDPattern.MatchString(ids5[0]) || !strings.HasSuffix(ids5[0], "/1") || uuidPart(ids5[0]) == uuidPart(ids1[0]) {
		t.Errorf("after a reset, change id %q (before %q)", ids5[0], ids1[0])
	}
	_, err = query(t, seed, snap5, key, ids3[0])
	wantChangeIDFault(t, "a change id from before a reset", err)
	if info, err := query(t, seed, snap5, key, ids5[0]); err != nil || len(info.ChangedArea) != 0 {
		t.Errorf("since its own change id = %+v, %v", info, err)
	}
}

// TestChangeTrackingTurnedOn checks that a VM without change tracking
// gets change ids at the first snapshot after it is turned on (also by
// CreateSnapshotEx_Task), and that changes are tracked from there.
func TestChangeTrackingTurnedOn(t *testing.T) {
	sim := start(t, Config{})
	c := login(t, sim)
	const path = "/" + Datacenter + "/vm/Linux/gen-vm-002"
	vm := findVM(t, c, path)
	snapEx := func() types.ManagedObjectReference {
		t.Helper()
		res, err := methods.CreateSnapshotEx_Task(t.Context(), c.Client, &types.CreateSnapshotEx_Task{This: vm.Reference(), Name: "ex"})
		if err != nil {
			t.Fatalf("CreateSnapshotEx_Task: %v", err)
		}
		info, err := object.NewTask(c.Client, res.Returnval).WaitForResult(t.Context())
		if err != nil {
			t.Fatalf("CreateSnapshotEx_Task: %v", err)
		}
		return info.Result.(types.ManagedObjectReference)
	}
	snap0 := snapshot(t, vm)
	if ids := changeIDs(t, snapshotDisks(t, vm, snap0)); ids[0] != "" || ids[1] != "" {
		t.Fatalf("without change tracking, change ids %q", ids)
	}
	setCBT(t, vm, true)
	if ids := changeIDs(t, disks(t, vm)); ids[0] != "" {
		t.Errorf("before the next snapshot, change ids %q", ids)
	}
	snap1 := snapEx()
	ids1 := changeIDs(t, snapshotDisks(t, vm, snap1))
	for i, id := range ids1 {
		if !changeIDPattern.MatchString(id) || !strings.HasSuffix(id, "/1") {
			t.Errorf("disk %d: change id %q, want <uuid>/1", i, id)
		}
	}
	if got := changeIDs(t, disks(t, vm)); !slices.Equal(got, ids1) {
		t.Errorf("the VM's change ids %q, the snapshot's %q", got, ids1)
	}
	d := disks(t, vm)[1]
	file, err := sim.DiskFile(t.Context(), path, d.Key)
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, file, 5*ChangeBlock+7, []byte("changed"))
	snap2 := snapEx()
	ids2 := changeIDs(t, snapshotDisks(t, vm, snap2))
	if !strings.HasSuffix(ids2[1], "/2") {
		t.Errorf("second snapshot's change id %q", ids2[1])
	}
	got, _ := queryAll(t, c, vm, snap2, d, ids1[1], DefaultChangedAreasWindow, DefaultChangedAreasMax)
	if want := []extent{{5 * ChangeBlock, ChangeBlock}}; !slices.Equal(got, want) {
		t.Errorf("changes since %q: %v, want %v", ids1[1], got, want)
	}
	if got, _ := queryAll(t, c, vm, snap2, disks(t, vm)[0], ids1[0], DefaultChangedAreasWindow, DefaultChangedAreasMax); len(got) != 0 {
		t.Errorf("changes of the disk not written: %v", got)
	}
}
