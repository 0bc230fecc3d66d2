package vcsim

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// DefaultChangeIDs is Config.ChangeIDs's default: how many change ids, the
// newest, the simulator remembers per disk.
const DefaultChangeIDs = 8

// tracking models vSphere's changed block tracking: per disk of a VM, the
// change ids given at its snapshots and the block maps recorded under
// them. It lives in memory only.
type tracking struct {
	keep   int // change ids remembered per disk
	hasher blockHasher

	mu    sync.Mutex
	disks map[diskID]*diskTrack
}

// diskID names a disk: its VM and device key.
type diskID struct {
	vm  types.ManagedObjectReference
	key int32
}

// diskTrack is the tracking of one disk since change tracking started on
// it (or was last reset).
type diskTrack struct {
	file     string // the backing's descriptor: another one starts afresh
	capacity int64  // a resize starts afresh, as on vSphere
	uuid     string // the change ids' first part
	n        int    // the last change id's sequence number
	ids      []string
	maps     map[string]*blockMap // by change id, those in ids
}

func newTracking(keep int) *tracking {
	return &tracking{keep: keep, hasher: newBlockHasher(), disks: make(map[diskID]*diskTrack)}
}

// snapshot is called as a snapshot of vm is about to be taken, under the
// VM's lock: when change tracking is on, it records the block map of each
// of the VM's disks under a new change id and sets that id on the VM's
// disk backings, which the snapshot then copies. A fault comes with its
// message.
func (t *tracking) snapshot(ctx *simulator.Context, vm *simulator.VirtualMachine) (string, types.BaseMethodFault) {
	if vm.Config == nil || vm.Config.ChangeTrackingEnabled == nil || !*vm.Config.ChangeTrackingEnabled {
		return "", nil
	}
	ids := make(map[int32]string)
	for _, d := range object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
		disk := d.(*types.VirtualDisk)
		backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue // not modelled
		}
		capacity := diskCapacity(disk)
		file, err := localFile(ctx, vm.Self, backing.FileName)
		if err != nil {
			return fmt.Sprintf("change tracking of disk %d: %v", disk.Key, err), &types.FileNotFound{FileFault: types.FileFault{File: backing.FileName}}
		}
		m, err := readBlockMap(file, capacity, t.hasher)
		if err != nil {
			return fmt.Sprintf("change tracking of disk %d: %v", disk.Key, err), &types.FileFault{File: backing.FileName}
		}
		ids[disk.Key] = t.record(diskID{vm.Self, disk.Key}, backing.FileName, capacity, m)
	}
	setChangeIDs(ctx, vm, ids)
	return "", nil
}

// record keeps m as the disk's content under a new change id, which it
// returns, and forgets the oldest beyond t.keep.
func (t *tracking) record(id diskID, file string, capacity int64, m *blockMap) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.disks[id]
	if d == nil || d.file != file || d.capacity != capacity {
		d = &diskTrack{file: file, capacity: capacity, uuid: newChangeUUID(), maps: make(map[string]*blockMap)}
		t.disks[id] = d
	}
	if n := len(d.ids); n > 0 {
		if prev := d.maps[d.ids[n-1]]; prev.equal(m) {
			m = prev // unchanged: share the memory
		}
	}
	d.n++
	changeID := fmt.Sprintf("%s/%d", d.uuid, d.n)
	d.ids = append(d.ids, changeID)
	d.maps[changeID] = m
	for len(d.ids) > t.keep {
		delete(d.maps, d.ids[0])
		d.ids = slices.Delete(d.ids, 0, 1)
	}
	return changeID
}

// lookup returns the block map recorded under changeID for the disk, or
// nil when the disk has no such change id remembered.
func (t *tracking) lookup(id diskID, changeID string) *blockMap {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.disks[id]; d != nil {
		return d.maps[changeID]
	}
	return nil
}

// reset forgets the change ids of all of vm's disks, as turning change
// tracking off does, and clears them from the VM's disk backings. The
// caller holds the VM's lock.
func (t *tracking) reset(ctx *simulator.Context, vm *simulator.VirtualMachine) {
	t.mu.Lock()
	for id := range t.disks {
		if id.vm == vm.Self {
			delete(t.disks, id)
		}
	}
	t.mu.Unlock()
	ids := make(map[int32]string)
	for _, d := range object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
		if b, ok := d.(*types.VirtualDisk).Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok && b.ChangeId != "" {
			ids[d.GetVirtualDevice().Key] = ""
		}
	}
	setChangeIDs(ctx, vm, ids)
}

// setChangeIDs sets the changeId of the VM's disk backings, by device key,
// through a property update (so that property collectors see it): the
// changed disks are copies, never the devices a reader may hold. The
// caller holds the VM's lock.
func setChangeIDs(ctx *simulator.Context, vm *simulator.VirtualMachine, ids map[int32]string) {
	if len(ids) == 0 {
		return
	}
	devices := slices.Clone(vm.Config.Hardware.Device)
	for i, d := range devices {
		disk, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		id, ok := ids[disk.Key]
		backing, flat := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok || !flat {
			continue
		}
		nd, nb := *disk, *backing
		nb.ChangeId = id
		nd.Backing = &nb
		devices[i] = &nd
	}
	ctx.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: devices}})
}

// diskCapacity is a disk's capacity in bytes.
func diskCapacity(disk *types.VirtualDisk) int64 {
	if disk.CapacityInBytes != 0 {
		return disk.CapacityInBytes
	}
	return disk.CapacityInKB * 1024
}

// newChangeUUID is the first part of a disk's change ids, random, shaped
// like vSphere's: 16 bytes in hex, separated by spaces, with a dash in
// the middle ("52 de c0 d7 b1 d5 a3 f3-c2 b7 36 da 1b 95 e4 5e").
func newChangeUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	return formatChangeUUID(b)
}

// formatChangeUUID writes b as the first part of a change id.
func formatChangeUUID(b [16]byte) string {
	var s strings.Builder
	for i, c := range b {
		switch {
		case i == 8:
			s.WriteByte('-')
		case i > 0:
			s.WriteByte(' ')
		}
		fmt.Fprintf(&s, "%02x", c)
	}
	return s.String()
}
