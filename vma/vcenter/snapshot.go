package vcenter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// VM is a virtual machine found by its inventory path, as a replication
// job needs it.
type VM struct {
	// Ref is the VM's managed object reference (vm-42).
	Ref types.ManagedObjectReference
	// Path is the inventory path it was found at.
	Path string
	// InstanceUUID is vCenter's instance UUID (config.instanceUuid).
	InstanceUUID string
	// CBT says whether changed block tracking is on (config.changeTrackingEnabled).
	CBT bool
	// Datacenter holds the VM; datastore paths are resolved in it.
	Datacenter *object.Datacenter
	// DatacenterPath is the datacenter's inventory path without the
	// leading slash (the dcPath of datastore URLs).
	DatacenterPath string

	obj *object.VirtualMachine
}

// FindVM finds the VM at an inventory path such as
// /DatabanxDC/vm/PGWINTESTBIOS. A path that names nothing, or something
// other than a VM, wraps ErrNotFound.
func (s *Session) FindVM(ctx context.Context, path string) (*VM, error) {
	finder := find.NewFinder(s.Client, false)
	obj, err := finder.VirtualMachine(ctx, path)
	if err != nil {
		var nf *find.NotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("VM %s: %w", path, ErrNotFound)
		}
		return nil, fmt.Errorf("find VM %s: %w", path, err)
	}
	dcRef, dcPath, err := datacenterOf(ctx, s, obj.Reference())
	if err != nil {
		return nil, fmt.Errorf("find VM %s: %w", path, err)
	}
	var m mo.VirtualMachine
	if err := obj.Properties(ctx, obj.Reference(), []string{"config.instanceUuid", "config.changeTrackingEnabled"}, &m); err != nil {
		return nil, fmt.Errorf("VM %s: properties: %w", path, err)
	}
	vm := &VM{Ref: obj.Reference(), Path: path, Datacenter: object.NewDatacenter(s.Client, dcRef), DatacenterPath: dcPath, obj: obj}
	if m.Config != nil {
		vm.InstanceUUID = m.Config.InstanceUuid
		vm.CBT = m.Config.ChangeTrackingEnabled != nil && *m.Config.ChangeTrackingEnabled
	}
	return vm, nil
}

// datacenterOf walks up the inventory from ref to its datacenter, and
// returns it with its inventory path (such as "DatabanxDC", or
// "Folder/DC" in a folder), the dcPath of datastore URLs.
func datacenterOf(ctx context.Context, s *Session, ref types.ManagedObjectReference) (types.ManagedObjectReference, string, error) {
	pc := object.NewCommon(s.Client, ref)
	var dc types.ManagedObjectReference
	var names []string
	for range 64 { // inventory trees are shallow; this bounds a cycle
		var me mo.ManagedEntity
		if err := pc.Properties(ctx, ref, []string{"name", "parent"}, &me); err != nil {
			return dc, "", fmt.Errorf("parent of %s: %w", ref, err)
		}
		if ref.Type == "Datacenter" {
			dc = ref
		}
		if me.Parent == nil { // the root folder
			if dc.Value == "" {
				return dc, "", fmt.Errorf("%s is in no datacenter", ref)
			}
			slices.Reverse(names)
			return dc, strings.Join(names, "/"), nil
		}
		if dc.Value != "" {
			names = append(names, me.Name)
		}
		ref = *me.Parent
	}
	return dc, "", errors.New("inventory too deep")
}

// Snapshot is a snapshot of a VM and the disks it holds.
type Snapshot struct {
	Ref   types.ManagedObjectReference
	Name  string
	Disks []SnapshotDisk
}

// SnapshotDisk is one virtual disk as a snapshot holds it.
type SnapshotDisk struct {
	// Key is the device key, unique within the VM (such as 2000).
	Key   int32
	Label string
	// File is the backing file, such as "[datastore1] vm/vm.vmdk".
	File          string
	CapacityBytes int64
	// ChangeID is the disk's CBT change id at the snapshot; "" without CBT.
	ChangeID string
}

// CreateSnapshot takes a snapshot called name of vm, without memory and
// without quiescing, and returns it with its disks.
func (s *Session) CreateSnapshot(ctx context.Context, vm *VM, name, description string) (*Snapshot, error) {
	task, err := vm.obj.CreateSnapshot(ctx, name, description, false, false)
	if err != nil {
		return nil, fmt.Errorf("create snapshot %s of %s: %w", name, vm.Path, err)
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		return nil, fmt.Errorf("create snapshot %s of %s: %w", name, vm.Path, err)
	}
	if info == nil {
		// govmomi answers so when the task went away before the wait saw
		// it end (seen with the simulator under load): whether the
		// snapshot was taken, the VM's snapshot tree says.
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("create snapshot %s of %s: %w", name, vm.Path, err)
		}
		all, err := s.Snapshots(ctx, vm, name)
		if err != nil {
			return nil, fmt.Errorf("create snapshot %s of %s: the task ended with no result, and: %w", name, vm.Path, err)
		}
		found := slices.DeleteFunc(all, func(f SnapshotRef) bool { return f.Name != name })
		if len(found) != 1 {
			return nil, fmt.Errorf("create snapshot %s of %s: the task ended with no result, and the VM has %d snapshots of that name", name, vm.Path, len(found))
		}
		return s.OpenSnapshot(ctx, found[0])
	}
	ref, ok := info.Result.(types.ManagedObjectReference)
	if !ok {
		return nil, fmt.Errorf("create snapshot %s of %s: the task returned %T, not a snapshot", name, vm.Path, info.Result)
	}
	return s.snapshot(ctx, ref, name)
}

// snapshot reads the disks of the snapshot ref.
func (s *Session) snapshot(ctx context.Context, ref types.ManagedObjectReference, name string) (*Snapshot, error) {
	var m mo.VirtualMachineSnapshot
	if err := object.NewCommon(s.Client, ref).Properties(ctx, ref, []string{"config.hardware.device"}, &m); err != nil {
		return nil, fmt.Errorf("snapshot %s: devices: %w", name, err)
	}
	snap := &Snapshot{Ref: ref, Name: name}
	for _, d := range object.VirtualDeviceList(m.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
		disk := d.(*types.VirtualDisk)
		sd := SnapshotDisk{Key: disk.Key, CapacityBytes: disk.CapacityInBytes}
		if sd.CapacityBytes == 0 {
			sd.CapacityBytes = disk.CapacityInKB * 1024
		}
		if info := disk.DeviceInfo; info != nil {
			sd.Label = info.GetDescription().Label
		}
		if b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
			sd.File = b.GetVirtualDeviceFileBackingInfo().FileName
		}
		switch b := disk.Backing.(type) {
		case *types.VirtualDiskFlatVer2BackingInfo:
			sd.ChangeID = b.ChangeId
		case *types.VirtualDiskSparseVer2BackingInfo:
			sd.ChangeID = b.ChangeId
		case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
			sd.ChangeID = b.ChangeId
		case *types.VirtualDiskSeSparseBackingInfo:
			sd.ChangeID = b.ChangeId
		}
		snap.Disks = append(snap.Disks, sd)
	}
	return snap, nil
}

// RemoveSnapshot removes the snapshot ref (not its children), consolidating
// the disks. A snapshot that is gone already is not an error.
func (s *Session) RemoveSnapshot(ctx context.Context, ref types.ManagedObjectReference) error {
	consolidate := true
	res, err := methods.RemoveSnapshot_Task(ctx, s.Client, &types.RemoveSnapshot_Task{This: ref, RemoveChildren: false, Consolidate: &consolidate})
	if err == nil {
		err = object.NewTask(s.Client, res.Returnval).Wait(ctx)
	}
	if err != nil && isManagedObjectNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove snapshot %s: %w", ref.Value, err)
	}
	return nil
}

// SnapshotRef is a snapshot's name and reference.
type SnapshotRef struct {
	Name string
	Ref  types.ManagedObjectReference
}

// Snapshots lists vm's snapshots whose names start with prefix.
func (s *Session) Snapshots(ctx context.Context, vm *VM, prefix string) ([]SnapshotRef, error) {
	var m mo.VirtualMachine
	if err := vm.obj.Properties(ctx, vm.Ref, []string{"snapshot"}, &m); err != nil {
		return nil, fmt.Errorf("snapshots of %s: %w", vm.Path, err)
	}
	var found []SnapshotRef
	if m.Snapshot == nil {
		return found, nil
	}
	var walk func([]types.VirtualMachineSnapshotTree)
	walk = func(trees []types.VirtualMachineSnapshotTree) {
		for _, t := range trees {
			if strings.HasPrefix(t.Name, prefix) {
				found = append(found, SnapshotRef{Name: t.Name, Ref: t.Snapshot})
			}
			walk(t.ChildSnapshotList)
		}
	}
	walk(m.Snapshot.RootSnapshotList)
	return found, nil
}

// Area is a stretch of a disk: [Offset, Offset+Length).
type Area struct{ Offset, Length int64 }

// maxAreaPages bounds the QueryChangedDiskAreas calls for one disk, so that
// a server answering without progress cannot loop forever.
const maxAreaPages = 1 << 20

// AllocatedAreas returns the areas of disk that hold data at snap, as CBT
// reports them (QueryChangedDiskAreas with change id "*"), in offset order.
// Without CBT on the VM or the disk it returns the whole disk.
func (s *Session) AllocatedAreas(ctx context.Context, vm *VM, snap *Snapshot, disk SnapshotDisk) ([]Area, error) {
	if !vm.CBT || disk.ChangeID == "" {
		return []Area{{0, disk.CapacityBytes}}, nil
	}
	return s.ChangedAreas(ctx, vm, snap, disk, "*")
}

// ChangedAreas returns the areas of disk changed at snap since changeID
// ("*": every allocated area), paging through QueryChangedDiskAreas by
// offset as vCenter answers in parts.
func (s *Session) ChangedAreas(ctx context.Context, vm *VM, snap *Snapshot, disk SnapshotDisk, changeID string) ([]Area, error) {
	var areas []Area
	snapRef := snap.Ref
	for off, pages := int64(0), 0; off < disk.CapacityBytes; pages++ {
		if pages == maxAreaPages {
			return nil, fmt.Errorf("changed areas of disk %d: more than %d answers", disk.Key, maxAreaPages)
		}
		res, err := methods.QueryChangedDiskAreas(ctx, s.Client, &types.QueryChangedDiskAreas{
			This: vm.Ref, Snapshot: &snapRef, DeviceKey: disk.Key, StartOffset: off, ChangeId: changeID})
		if err != nil && changeID != "*" && refusesChangeID(err) {
			return nil, fmt.Errorf("changed areas of disk %d since %q: %w: %v", disk.Key, changeID, ErrCBTReset, err)
		}
		if err != nil {
			return nil, fmt.Errorf("changed areas of disk %d from %d: %w", disk.Key, off, err)
		}
		info := res.Returnval
		end := info.StartOffset + info.Length
		if info.StartOffset > off || end <= off {
			return nil, fmt.Errorf("changed areas of disk %d from %d: vCenter answered [%d, %d)", disk.Key, off, info.StartOffset, end)
		}
		for _, a := range info.ChangedArea {
			lo, hi := max(a.Start, off), min(a.Start+a.Length, end, disk.CapacityBytes)
			if hi <= lo {
				continue
			}
			if n := len(areas); n > 0 && areas[n-1].Offset+areas[n-1].Length > lo {
				return nil, fmt.Errorf("changed areas of disk %d: area at %d overlaps or goes back", disk.Key, lo)
			}
			if n := len(areas); n > 0 && areas[n-1].Offset+areas[n-1].Length == lo {
				areas[n-1].Length += hi - lo
				continue
			}
			areas = append(areas, Area{lo, hi - lo})
		}
		off = end
	}
	return areas, nil
}

// isManagedObjectNotFound reports whether err is vCenter saying the object is gone.
func isManagedObjectNotFound(err error) bool {
	return fault.Is(err, &types.ManagedObjectNotFound{})
}

// VMByRef returns the VM with the managed object id ref (such as vm-42),
// found again after a restart. A VM that is gone wraps ErrNotFound.
func (s *Session) VMByRef(ctx context.Context, ref string) (*VM, error) {
	mref := types.ManagedObjectReference{Type: "VirtualMachine", Value: ref}
	obj := object.NewVirtualMachine(s.Client, mref)
	var m mo.VirtualMachine
	if err := obj.Properties(ctx, mref, []string{"name", "config.instanceUuid", "config.changeTrackingEnabled"}, &m); err != nil {
		if isManagedObjectNotFound(err) {
			return nil, fmt.Errorf("VM %s: %w", ref, ErrNotFound)
		}
		return nil, fmt.Errorf("VM %s: properties: %w", ref, err)
	}
	dcRef, dcPath, err := datacenterOf(ctx, s, mref)
	if err != nil {
		return nil, fmt.Errorf("VM %s: %w", ref, err)
	}
	vm := &VM{Ref: mref, Path: m.Name, Datacenter: object.NewDatacenter(s.Client, dcRef), DatacenterPath: dcPath, obj: obj}
	if m.Config != nil {
		vm.InstanceUUID = m.Config.InstanceUuid
		vm.CBT = m.Config.ChangeTrackingEnabled != nil && *m.Config.ChangeTrackingEnabled
	}
	return vm, nil
}

// ErrCBTReset: vCenter refuses a change id, as it does once change tracking
// was reset (turned off and on, a disk resized or moved): the areas changed
// since it are unknown, and only a full copy of the disk is safe.
var ErrCBTReset = errors.New("vCenter refuses the base change id: change tracking was reset")

// EnableCBT turns changed block tracking on for vm when it is off, and
// makes it take effect as vSphere needs: a snapshot created and removed
// (the disks pick the setting up at a stun-unstun cycle). It reports
// whether it had to.
func (s *Session) EnableCBT(ctx context.Context, vm *VM) (bool, error) {
	if vm.CBT {
		return false, nil
	}
	on := true
	task, err := vm.obj.Reconfigure(ctx, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: &on})
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return false, fmt.Errorf("enable CBT on %s: %w", vm.Path, err)
	}
	snap, err := s.CreateSnapshot(ctx, vm, "godwit-cbt-on", "makes change tracking take effect")
	if err != nil {
		return false, fmt.Errorf("enable CBT on %s: %w", vm.Path, err)
	}
	if err := s.RemoveSnapshot(ctx, snap.Ref); err != nil {
		return false, fmt.Errorf("enable CBT on %s: %w", vm.Path, err)
	}
	vm.CBT = true
	return true, nil
}

// refusesChangeID reports whether err is vCenter refusing the change id
// argument (an InvalidArgument fault naming changeId, or a FileFault: what
// QueryChangedDiskAreas answers for a change id from before a CBT reset).
func refusesChangeID(err error) bool {
	var ia *types.InvalidArgument
	if _, ok := fault.As(err, &ia); ok {
		return ia.InvalidProperty == "" || strings.EqualFold(ia.InvalidProperty, "changeId")
	}
	return fault.Is(err, &types.FileFault{})
}

// OpenSnapshot returns an existing snapshot with its disks.
func (s *Session) OpenSnapshot(ctx context.Context, ref SnapshotRef) (*Snapshot, error) {
	return s.snapshot(ctx, ref.Ref, ref.Name)
}
