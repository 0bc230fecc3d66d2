package vcsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	"golang.org/x/sys/unix"
)

// testData is Config.DiskData in tests: 64 KiB pieces.
const testData = 256 << 10

const seedPath = "/" + Datacenter + "/vm/" + SeedVM

// start starts a simulator (not from parallel tests: govmomi's simulator
// writes shared state when it starts) with the seed VM and two generated ones:
// gen-vm-001 (one 1 GiB disk, change tracking on, powered off) and
// gen-vm-002 (two disks, change tracking off, on).
func start(t testing.TB, cfg Config) *Simulator {
	t.Helper()
	cfg.VMs = 2
	if cfg.DiskData == 0 {
		cfg.DiskData = testData
	}
	sim, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start simulator: %v", err)
	}
	t.Cleanup(sim.Close)
	return sim
}

func login(t testing.TB, sim *Simulator) *govmomi.Client {
	t.Helper()
	u := *sim.URL
	u.User = url.UserPassword(sim.Username, sim.Password)
	c, err := govmomi.NewClient(t.Context(), &u, true)
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	t.Cleanup(func() { _ = c.Logout(context.Background()) })
	return c
}

func findVM(t testing.TB, c *govmomi.Client, path string) *object.VirtualMachine {
	t.Helper()
	vm, err := find.NewFinder(c.Client, false).VirtualMachine(t.Context(), path)
	if err != nil {
		t.Fatalf("find %s: %v", path, err)
	}
	return vm
}

func disks(t testing.TB, vm *object.VirtualMachine) []*types.VirtualDisk {
	t.Helper()
	devices, err := vm.Device(t.Context())
	if err != nil {
		t.Fatalf("devices: %v", err)
	}
	var ds []*types.VirtualDisk
	for _, d := range devices.SelectByType((*types.VirtualDisk)(nil)) {
		ds = append(ds, d.(*types.VirtualDisk))
	}
	return ds
}

func snapshot(t testing.TB, vm *object.VirtualMachine) types.ManagedObjectReference {
	t.Helper()
	task, err := vm.CreateSnapshot(t.Context(), "godwit", "", false, false)
	if err != nil {
		t.Fatalf("create snapshot: %v", err)
	}
	info, err := task.WaitForResult(t.Context())
	if err != nil {
		t.Fatalf("create snapshot: %v", err)
	}
	return info.Result.(types.ManagedObjectReference)
}

// extent is a byte range [off, off+n).
type extent struct{ off, n int64 }

// dataExtents scans a file's allocated extents.
func dataExtents(t testing.TB, file string) []extent {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var es []extent
	for off := int64(0); ; {
		data, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) {
			return es
		}
		if err != nil {
			t.Fatalf("seek data: %v", err)
		}
		hole, err := f.Seek(data, unix.SEEK_HOLE)
		if err != nil {
			t.Fatalf("seek hole: %v", err)
		}
		es = append(es, extent{data, hole - data})
		off = hole
	}
}

// merge joins adjacent extents.
func merge(es []extent) []extent {
	var out []extent
	for _, e := range es {
		if n := len(out); n > 0 && out[n-1].off+out[n-1].n == e.off {
			out[n-1].n += e.n
			continue
		}
		out = append(out, e)
	}
	return out
}

func readAt(t testing.TB, file string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read %s at %d: %v", file, off, err)
	}
	return b
}

func writeAt(t testing.TB, file string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatalf("write %s at %d: %v", file, off, err)
	}
}

// TestDiskContent checks that new disks are sparse, have the layout's
// content, and that two simulators, one on a temporary datastore and one
// on a directory, give them the same content.
func TestDiskContent(t *testing.T) {
	simA := start(t, Config{})
	simB := start(t, Config{Datastore: filepath.Join(t.TempDir(), "ds")})
	if !strings.HasPrefix(simB.DatastoreDir, filepath.Dir(simB.DatastoreDir)) || simA.DatastoreDir == simB.DatastoreDir {
		t.Fatalf("datastore dirs %q and %q", simA.DatastoreDir, simB.DatastoreDir)
	}
	c := login(t, simA)
	for _, tc := range []struct {
		name, vm string
		disk     int
	}{
		{"seed disk 1", seedPath, 0},
		{"seed disk 2", seedPath, 1},
		{"generated", "/" + Datacenter + "/vm/gen-vm-001", 0},
		{"generated, in folder", "/" + Datacenter + "/vm/Linux/gen-vm-002", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk := disks(t, findVM(t, c, tc.vm))[tc.disk]
			fileA, err := simA.DiskFile(t.Context(), tc.vm, disk.Key)
			if err != nil {
				t.Fatalf("DiskFile(%q, %d) = %v", tc.vm, disk.Key, err)
			}
			fileB, err := simB.DiskFile(t.Context(), tc.vm, disk.Key)
			if err != nil {
				t.Fatalf("DiskFile(%q, %d) = %v", tc.vm, disk.Key, err)
			}
			if !strings.HasPrefix(fileB, simB.DatastoreDir+"/") || !strings.HasSuffix(fileB, "-flat.vmdk") {
				t.Errorf("DiskFile(%q, %d) = %q, not a flat file in %s", tc.vm, disk.Key, fileB, simB.DatastoreDir)
			}
			st, err := os.Stat(fileA)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != disk.CapacityInBytes {
				t.Errorf("size %d, want capacity %d", st.Size(), disk.CapacityInBytes)
			}
			if used := st.Sys().(*syscall.Stat_t).Blocks * 512; used > 2*testData {
				t.Errorf("%d bytes allocated, want at most %d", used, 2*testData)
			}
			esA, esB := merge(dataExtents(t, fileA)), merge(dataExtents(t, fileB))
			if len(esA) == 0 || len(esA) != len(esB) {
				t.Fatalf("extents %v and %v", esA, esB)
			}
			for i, e := range esA {
				if esB[i] != e {
					t.Fatalf("extent %d: %v and %v", i, e, esB[i])
				}
				if a, b := readAt(t, fileA, e.off, e.n), readAt(t, fileB, e.off, e.n); !bytes.Equal(a, b) {
					t.Fatalf("content of extent %v differs", e)
				}
			}
			name := filepath.Base(tc.vm)
			pieces := diskLayout(disk.CapacityInBytes, testData)
			for _, p := range pieces {
				b := readAt(t, fileA, p.off, p.n)
				if bytes.Count(b, []byte{0}) == len(b) {
					t.Errorf("piece %+v is all zeros", p)
				}
			}
			last := disk.CapacityInBytes - SectorSize
			if got, want := readAt(t, fileA, last, SectorSize), DiskPattern(name, disk.Key, last); !bytes.Equal(got, want) {
				t.Errorf("last sector %q, want %q", got, want)
			}
			if z := readAt(t, fileA, pieces[0].n/2/4096*4096, 4096); !bytes.Equal(z, make([]byte, 4096)) {
				t.Errorf("the zero block of the first piece is not zero")
			}
		})
	}
}

// TestRestart checks that a simulator started again on the same directory
// keeps the disks' paths and content, and that Close leaves the directory.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	files := func(sim *Simulator) map[string]string {
		c := login(t, sim)
		m := make(map[string]string)
		for _, p := range []string{seedPath, "/" + Datacenter + "/vm/gen-vm-001", "/" + Datacenter + "/vm/Linux/gen-vm-002"} {
			for _, d := range disks(t, findVM(t, c, p)) {
				m[d.Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName] = p
			}
		}
		return m
	}
	sim1, err := Start(ctx, Config{VMs: 2, DiskData: testData, Datastore: dir})
	if err != nil {
		t.Fatal(err)
	}
	before := files(sim1)
	key := disks(t, findVM(t, login(t, sim1), seedPath))[0].Key
	file1, err := sim1.DiskFile(ctx, seedPath, key)
	if err != nil {
		t.Fatal(err)
	}
	const off = 5 << 30
	writeAt(t, file1, off, []byte("written by the test"))
	sim1.Close()

	sim2 := start(t, Config{Datastore: dir})
	after := files(sim2)
	if len(before) != 5 || len(after) != len(before) {
		t.Fatalf("disk files %v, then %v", before, after)
	}
	for f := range before {
		if _, ok := after[f]; !ok || strings.Contains(f, "(") {
			t.Errorf("disk file %s: after restart %v", f, after)
		}
	}
	file2, err := sim2.DiskFile(ctx, seedPath, key)
	if err != nil {
		t.Fatal(err)
	}
	if file2 != file1 {
		t.Errorf("DiskFile after restart = %q, want %q", file2, file1)
	}
	if got := readAt(t, file2, off, 19); string(got) != "written by the test" {
		t.Errorf("after restart %q", got)
	}
	last := int64(40<<30) - SectorSize
	if got, want := readAt(t, file2, last, SectorSize), DiskPattern(SeedVM, key, last); !bytes.Equal(got, want) {
		t.Errorf("last sector after restart %q", got)
	}
}

// queryAll pages through QueryChangedDiskAreas since changeID, checking
// each answer, and returns the areas and how many answers it took.
func queryAll(t testing.TB, c *govmomi.Client, vm *object.VirtualMachine, snap types.ManagedObjectReference, disk *types.VirtualDisk, changeID string, window int64, maxAreas int) ([]extent, int) {
	t.Helper()
	var areas []extent
	calls := 0
	for off := int64(0); off < disk.CapacityInBytes; {
		res, err := methods.QueryChangedDiskAreas(t.Context(), c.Client, &types.QueryChangedDiskAreas{
			This: vm.Reference(), Snapshot: &snap, DeviceKey: disk.Key, StartOffset: off, ChangeId: changeID})
		if err != nil {
			t.Fatalf("QueryChangedDiskAreas(%d, %d, %q) = %v", disk.Key, off, changeID, err)
		}
		calls++
		info := res.Returnval
		if info.StartOffset != off || info.Length <= 0 || info.Length > window || off+info.Length > disk.CapacityInBytes ||
			len(info.ChangedArea) > maxAreas {
			t.Fatalf("QueryChangedDiskAreas(%d, %d) = start %d length %d, %d areas", disk.Key, off, info.StartOffset, info.Length, len(info.ChangedArea))
		}
		prev := off
		for _, a := range info.ChangedArea {
			if a.Start < prev || a.Length <= 0 || a.Start+a.Length > off+info.Length {
				t.Fatalf("area %+v outside [%d, %d)", a, prev, off+info.Length)
			}
			areas = append(areas, extent{a.Start, a.Length})
			prev = a.Start + a.Length
		}
		off += info.Length
	}
	return merge(areas), calls
}

// TestQueryChangedDiskAreas checks that the initial query answers exactly
// the flat file's allocated extents, in pages.
func TestQueryChangedDiskAreas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		window   int64
		maxAreas int
		minCalls int // for the seed's first disk, 40 GiB
	}{
		{"defaults", 0, 0, 10},
		{"one area per answer", 0, 1, 6},
		{"small windows", 1 << 30, 3, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := start(t, Config{ChangedAreasWindow: tc.window, ChangedAreasMax: tc.maxAreas})
			window, maxAreas := cmpOr(tc.window, DefaultChangedAreasWindow), cmpOr(tc.maxAreas, DefaultChangedAreasMax)
			c := login(t, sim)
			vm := findVM(t, c, seedPath)
			disk := disks(t, vm)[0]
			file, err := sim.DiskFile(t.Context(), seedPath, disk.Key)
			if err != nil {
				t.Fatal(err)
			}
			// Data across a window's end, and at an odd place.
			writeAt(t, file, 4<<30-8192, bytes.Repeat([]byte{1}, 16384))
			writeAt(t, file, 7<<30+12345, []byte("x"))
			snap := snapshot(t, vm)
			got, calls := queryAll(t, c, vm, snap, disk, "*", window, maxAreas)
			want := merge(dataExtents(t, file))
			if len(got) != len(want) {
				t.Fatalf("areas %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("areas %v, want %v", got, want)
				}
			}
			if calls < tc.minCalls {
				t.Errorf("%d answers, want at least %d", calls, tc.minCalls)
			}
		})
	}
}

func cmpOr[T int | int64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// TestQueryChangedDiskAreasFaults checks the faults of what is not
// modelled or wrong.
func TestQueryChangedDiskAreasFaults(t *testing.T) {
	sim := start(t, Config{})
	c := login(t, sim)
	seed := findVM(t, c, seedPath)
	gen2 := findVM(t, c, "/"+Datacenter+"/vm/Linux/gen-vm-002")
	seedSnap, genSnap := snapshot(t, seed), snapshot(t, gen2)
	seedDisk, genDisk := disks(t, seed)[0], disks(t, gen2)[0]
	devices, err := seed.Device(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	nic := devices.SelectByType((*types.VirtualVmxnet3)(nil))[0].GetVirtualDevice().Key
	for _, tc := range []struct {
		name string
		req  types.QueryChangedDiskAreas
		want string // in the fault's message
	}{
		{"unknown change id", types.QueryChangedDiskAreas{This: seed.Reference(), Snapshot: &seedSnap, DeviceKey: seedDisk.Key,
			ChangeId: "52 aa/1"}, "not a change id of disk"},
		{"no such key", types.QueryChangedDiskAreas{This: seed.Reference(), Snapshot: &seedSnap, DeviceKey: 9999,
			ChangeId: "*"}, "no disk with key 9999"},
		{"a NIC's key", types.QueryChangedDiskAreas{This: seed.Reference(), Snapshot: &seedSnap, DeviceKey: nic,
			ChangeId: "*"}, "no disk with key"},
		{"change tracking off", types.QueryChangedDiskAreas{This: gen2.Reference(), Snapshot: &genSnap, DeviceKey: genDisk.Key,
			ChangeId: "*"}, "change tracking is not enabled"},
		{"another VM's snapshot", types.QueryChangedDiskAreas{This: seed.Reference(), Snapshot: &genSnap, DeviceKey: seedDisk.Key,
			ChangeId: "*"}, "is not a snapshot of"},
		{"no snapshot", types.QueryChangedDiskAreas{This: seed.Reference(), DeviceKey: seedDisk.Key,
			ChangeId: "*"}, "snapshot is required"},
		{"past the end", types.QueryChangedDiskAreas{This: seed.Reference(), Snapshot: &seedSnap, DeviceKey: seedDisk.Key,
			StartOffset: seedDisk.CapacityInBytes, ChangeId: "*"}, "outside disk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := methods.QueryChangedDiskAreas(t.Context(), c.Client, &tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("QueryChangedDiskAreas = %v, want a fault with %q", err, tc.want)
			}
		})
	}

	// govmomi's own method sends the base snapshot's changeId: since
	// itself, nothing changed.
	info, err := seed.QueryChangedDiskAreas(t.Context(), &seedSnap, &seedSnap, seedDisk, 0)
	if err != nil || len(info.ChangedArea) != 0 || info.Length <= 0 {
		t.Errorf("VirtualMachine.QueryChangedDiskAreas(snapshot since itself) = %+v, %v, want no areas", info, err)
	}
	_, err = gen2.QueryChangedDiskAreas(t.Context(), &genSnap, &genSnap, genDisk, 0)
	if err == nil || !strings.Contains(err.Error(), "CBT is not enabled") {
		t.Errorf("VirtualMachine.QueryChangedDiskAreas without CBT = %v", err)
	}
}

// TestSnapshotsAndPower checks that snapshots report the disks' changeIds
// and can be removed, and that power operations work, alongside queries
// from the same session.
func TestSnapshotsAndPower(t *testing.T) {
	sim := start(t, Config{})
	c := login(t, sim)
	ctx := t.Context()
	seed := findVM(t, c, seedPath)
	gen1 := findVM(t, c, "/"+Datacenter+"/vm/gen-vm-001")
	var o mo.VirtualMachine
	if err := seed.Properties(ctx, seed.Reference(), []string{"config.changeTrackingEnabled"}, &o); err != nil {
		t.Fatal(err)
	}
	if o.Config.ChangeTrackingEnabled == nil || !*o.Config.ChangeTrackingEnabled {
		t.Errorf("changeTrackingEnabled = %v", o.Config.ChangeTrackingEnabled)
	}
	snap := snapshot(t, seed)
	vmIDs := changeIDs(t, disks(t, seed))
	for i, id := range changeIDs(t, snapshotDisks(t, seed, snap)) {
		if !changeIDPattern.MatchString(id) || !strings.HasSuffix(id, "/1") || id != vmIDs[i] {
			t.Errorf("snapshot disk %d changeId %q (the VM's %q), want <uuid>/1, the same", i, id, vmIDs[i])
		}
	}

	// Queries on both disks and power operations on both VMs at once, all
	// in one session.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for _, d := range disks(t, seed) {
		wg.Go(func() {
			for range 5 {
				_, err := methods.QueryChangedDiskAreas(ctx, c.Client, &types.QueryChangedDiskAreas{
					This: seed.Reference(), Snapshot: &snap, DeviceKey: d.Key, ChangeId: "*"})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	power := func(vm *object.VirtualMachine, ops ...func(context.Context) (*object.Task, error)) error {
		for _, op := range ops {
			task, err := op(ctx)
			if err := wait(ctx, task, err); err != nil {
				return err
			}
		}
		return nil
	}
	wg.Go(func() {
		if err := power(gen1, gen1.PowerOn, gen1.Suspend, gen1.PowerOn, gen1.PowerOff); err != nil {
			errs <- err
		}
	})
	wg.Go(func() {
		if err := power(seed, seed.PowerOff, seed.PowerOn); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent operation: %v", err)
	}

	// After the queries, the session sees the VM as before.
	if err := power(seed, seed.PowerOff); err != nil {
		t.Errorf("power off after queries: %v", err)
	}
	task, err := seed.RemoveAllSnapshot(ctx, nil)
	if err := wait(ctx, task, err); err != nil {
		t.Fatalf("remove snapshots: %v", err)
	}
	snapshot(t, seed)
	task, err = seed.RemoveSnapshot(ctx, "godwit", false, nil)
	if err := wait(ctx, task, err); err != nil {
		t.Fatalf("remove snapshot: %v", err)
	}
	if err := power(seed, seed.PowerOn); err != nil {
		t.Errorf("power on: %v", err)
	}
}

// TestExtraVMOptions checks what VM's options make, as the simulator
// reports it: the hardware version, a chain of snapshots taken through
// CreateSnapshot_Task (with change ids, as a client's would have), each
// disk's mode and backing, and a raw device mapping's content.
func TestExtraVMOptions(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	sim := start(t, Config{
		BeforeSnapshot: func(vm string) { mu.Lock(); asked = append(asked, vm); mu.Unlock() },
		Extra: []VM{
			{Name: "plain", Disks: []int64{1 << 30}},
			{Name: "hw4", Disks: []int64{1 << 30}, HardwareVersion: 4},
			{Name: "snapped", Disks: []int64{1 << 30, 2 << 30}, Snapshots: 3, CBT: true, On: true},
			{Name: "modes", Disks: []int64{1 << 30, 2 << 30, 3 << 30}, IndependentDisks: []int{1, 2}, RDMDisks: []int{2}},
		},
	})
	c := login(t, sim)
	ctx := t.Context()
	props := func(name string) mo.VirtualMachine {
		t.Helper()
		vm := findVM(t, c, "/"+Datacenter+"/vm/"+name)
		var o mo.VirtualMachine
		if err := vm.Properties(ctx, vm.Reference(), []string{"config.version", "config.hardware.device", "snapshot", "runtime.powerState"}, &o); err != nil {
			t.Fatal(err)
		}
		return o
	}

	for _, tt := range []struct{ vm, version string }{{"plain", "vmx-13"}, {"hw4", "vmx-04"}, {"modes", "vmx-13"}} {
		if o := props(tt.vm); o.Config.Version != tt.version || o.Snapshot != nil {
			t.Errorf("%s: config.version %q, snapshot %+v; want %q, none", tt.vm, o.Config.Version, o.Snapshot, tt.version)
		}
	}
	if DefaultHardwareVersion != 13 {
		t.Errorf("DefaultHardwareVersion = %d, want the simulator's 13", DefaultHardwareVersion)
	}

	// snapped: vcsim-1 <- vcsim-2 <- vcsim-3 (current), taken powered on,
	// each moving the disks' change ids.
	o := props("snapped")
	if o.Config.Version != "vmx-13" || o.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn || o.Snapshot == nil || o.Snapshot.CurrentSnapshot == nil {
		t.Fatalf("snapped: config.version %q, power %s, snapshot %+v", o.Config.Version, o.Runtime.PowerState, o.Snapshot)
	}
	tree := o.Snapshot.RootSnapshotList
	for i := range 3 {
		if len(tree) != 1 || tree[0].Name != fmt.Sprintf("vcsim-%d", i+1) {
			t.Fatalf("snapped: level %d of the snapshot tree = %+v, want one vcsim-%d", i+1, tree, i+1)
		}
		if i == 2 && tree[0].Snapshot != *o.Snapshot.CurrentSnapshot {
			t.Errorf("snapped: current snapshot %v, want the last, %v", *o.Snapshot.CurrentSnapshot, tree[0].Snapshot)
		}
		snapDisks := snapshotDisks(t, findVM(t, c, "/"+Datacenter+"/vm/snapped"), tree[0].Snapshot)
		for _, id := range changeIDs(t, snapDisks) {
			if !changeIDPattern.MatchString(id) || !strings.HasSuffix(id, fmt.Sprintf("/%d", i+1)) {
				t.Errorf("snapped: snapshot %d changeId %q, want <uuid>/%d", i+1, id, i+1)
			}
		}
		tree = tree[0].ChildSnapshotList
	}
	if len(tree) != 0 {
		t.Errorf("snapped: a fourth level %+v", tree)
	}
	mu.Lock()
	if strings.Join(asked, ",") != "snapped,snapped,snapped" {
		t.Errorf("BeforeSnapshot called for %v, want snapped three times", asked)
	}
	mu.Unlock()

	// modes: persistent flat, independent flat, independent RDM.
	var got []string
	for _, d := range object.VirtualDeviceList(props("modes").Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
		switch b := d.(*types.VirtualDisk).Backing.(type) {
		case *types.VirtualDiskFlatVer2BackingInfo:
			got = append(got, "flat "+b.DiskMode)
		case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
			got = append(got, "rdm "+b.DiskMode+" "+b.CompatibilityMode)
			if !strings.HasPrefix(b.DeviceName, "/vmfs/devices/disks/naa.") || b.LunUuid == "" || b.FileName != "[LocalDS_0] modes/modes_2.vmdk" {
				t.Errorf("modes: RDM backing %+v", b)
			}
			file, err := sim.DiskFile(ctx, "/"+Datacenter+"/vm/modes", d.GetVirtualDevice().Key)
			if err != nil {
				t.Fatal(err)
			}
			if st, err := os.Stat(file); err != nil || st.Size() != 3<<30 {
				t.Errorf("modes: RDM flat file %v, %v; want 3 GiB", st, err)
			}
		default:
			got = append(got, "other")
		}
	}
	want := "flat persistent,flat independent_persistent,rdm independent_persistent virtualMode"
	if strings.Join(got, ",") != want {
		t.Errorf("modes: disks %v, want %s", got, want)
	}
}

// TestExtraVMOptionsRefused: disk indexes outside Disks are refused.
func TestExtraVMOptionsRefused(t *testing.T) {
	for _, x := range []VM{
		{Name: "bad", Disks: []int64{1 << 30}, IndependentDisks: []int{1}},
		{Name: "bad", Disks: []int64{1 << 30}, RDMDisks: []int{-1}},
		{Name: "bad", Disks: []int64{1 << 30}, Snapshots: -1},
	} {
		sim, err := Start(t.Context(), Config{VMs: 1, DiskData: -1, Extra: []VM{x}})
		if err == nil {
			sim.Close()
			t.Errorf("Start with Extra %+v succeeded, want an error", x)
		}
	}
}
