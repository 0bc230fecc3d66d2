package vcsim

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"golang.org/x/sys/unix"
)

// Paging of QueryChangedDiskAreas (Config.ChangedAreasWindow and
// Config.ChangedAreasMax).
const (
	DefaultChangedAreasWindow = 4 << 30
	DefaultChangedAreasMax    = 64
)

// cbtHook answers QueryChangedDiskAreas, a method the simulator lacks, and
// hooks the VM methods that change tracking follows: snapshot creation and
// reconfiguration. The simulator dispatches a logged-in call to the object
// its session registry holds for the reference, else to the global one;
// the hook, installed as the global registry's Handler, puts a cbtVM with
// the VM's reference into the calling session's registry for the duration
// of the call. The global registry keeps its *simulator.VirtualMachine,
// which the simulator's own code casts to.
type cbtHook struct {
	window   int64
	maxAreas int
	tracking *tracking
	// beforeSnapshot is Config.BeforeSnapshot.
	beforeSnapshot func(vm string)
	// guestShutdown is Config.GuestShutdown.
	guestShutdown func(vm string) bool

	mu   sync.Mutex
	refs map[cbtKey]int // calls in flight per session registry and VM
}

type cbtKey struct {
	reg *simulator.Registry
	vm  types.ManagedObjectReference
}

// newCBTHook makes the hook: window and maxAreas bound an answer of
// QueryChangedDiskAreas, keep is how many change ids each disk remembers.
func newCBTHook(window int64, maxAreas, keep int) *cbtHook {
	return &cbtHook{window: window, maxAreas: maxAreas, tracking: newTracking(keep), refs: make(map[cbtKey]int)}
}

// before calls Config.BeforeSnapshot for vm, if set.
func (h *cbtHook) before(vm *simulator.VirtualMachine) {
	if h.beforeSnapshot != nil {
		h.beforeSnapshot(vm.Name)
	}
}

// hooked reports whether cbtVM answers the VM method name.
func hooked(name string) bool {
	switch name {
	case "QueryChangedDiskAreas", "CreateSnapshot_Task", "CreateSnapshotEx_Task", "ReconfigVM_Task", "ShutdownGuest":
		return true
	}
	return false
}

// handle is the global registry's Handler: for the hooked methods on a
// VM, it puts a cbtVM into the session's registry (once per session and VM,
// however many such calls are in flight) and returns it.
func (h *cbtHook) handle(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
	if !hooked(m.Name) || m.This.Type != "VirtualMachine" || ctx.Session == nil {
		return nil, nil
	}
	vm, ok := ctx.Map.Get(m.This).(*simulator.VirtualMachine)
	if !ok {
		return nil, nil // the simulator answers ManagedObjectNotFound
	}
	w := &cbtVM{VirtualMachine: vm, hook: h}
	key := cbtKey{ctx.Session.Registry, m.This}
	// Under the VM's lock: putting an entity into a registry writes its
	// status fields. release takes the same locks in the same order.
	// Registry.Put, not Session.Put: the latter sets Self again by
	// reflection, through the embedded pointer into the shared VM, a write
	// racing with the simulator's lock lookup, which reads Self unlocked.
	ctx.Map.WithLock(ctx, vm, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.refs[key]++
		if h.refs[key] == 1 {
			ctx.Session.Registry.Put(w)
		}
	})
	return w, nil
}

// release undoes handle when the call returns, under the VM's lock: the
// last call in flight removes the wrapper from the session's registry.
func (h *cbtHook) release(ctx *simulator.Context, ref types.ManagedObjectReference) {
	if ctx.Session == nil {
		return
	}
	key := cbtKey{ctx.Session.Registry, ref}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refs[key]--
	if h.refs[key] <= 0 {
		delete(h.refs, key)
		ctx.Session.Registry.Remove(ctx, ref)
	}
}

// cbtVM stands for a VM in a session's registry while that session calls
// a hooked method on it: the VM's other methods and properties are the
// VM's own, for the session's other calls meanwhile. The VM is the first
// field, where the property collector looks for it. Its methods run under
// the VM's lock, as the simulator calls them.
type cbtVM struct {
	*simulator.VirtualMachine
	hook *cbtHook
}

// QueryChangedDiskAreas answers vSphere's method of that name: the
// package doc says what is modelled. It runs under the VM's lock.
func (w *cbtVM) QueryChangedDiskAreas(ctx *simulator.Context, req *types.QueryChangedDiskAreas) soap.HasFault {
	defer w.hook.release(ctx, w.Self)
	info, msg, fault := w.hook.changedAreas(ctx, w.Self, req)
	if fault != nil {
		return &methods.QueryChangedDiskAreasBody{Fault_: simulator.Fault(msg, fault)}
	}
	return &methods.QueryChangedDiskAreasBody{Res: &types.QueryChangedDiskAreasResponse{Returnval: info}}
}

// CreateSnapshotTask is vSphere's CreateSnapshot_Task: with change
// tracking on, the disks get new change ids first (tracking.snapshot),
// which the snapshot copies. The simulator's CreateSnapshotTask calls its
// own CreateSnapshotExTask, not the hooked one.
func (w *cbtVM) CreateSnapshotTask(ctx *simulator.Context, req *types.CreateSnapshot_Task) soap.HasFault {
	defer w.hook.release(ctx, w.Self)
	w.hook.before(w.VirtualMachine)
	if msg, fault := w.hook.tracking.snapshot(ctx, w.VirtualMachine); fault != nil {
		return &methods.CreateSnapshot_TaskBody{Fault_: simulator.Fault(msg, fault)}
	}
	return w.VirtualMachine.CreateSnapshotTask(ctx, req)
}

// CreateSnapshotExTask is vSphere's CreateSnapshotEx_Task, hooked as
// CreateSnapshotTask is.
func (w *cbtVM) CreateSnapshotExTask(ctx *simulator.Context, req *types.CreateSnapshotEx_Task) soap.HasFault {
	defer w.hook.release(ctx, w.Self)
	w.hook.before(w.VirtualMachine)
	if msg, fault := w.hook.tracking.snapshot(ctx, w.VirtualMachine); fault != nil {
		return &methods.CreateSnapshotEx_TaskBody{Fault_: simulator.Fault(msg, fault)}
	}
	return w.VirtualMachine.CreateSnapshotExTask(ctx, req)
}

// ReconfigVMTask is vSphere's ReconfigVM_Task: a spec that turns change
// tracking off resets it first (the disks' change ids are forgotten and
// cleared from their backings), then the simulator reconfigures the VM,
// which sets config.changeTrackingEnabled. Turned on, tracking starts at
// the next snapshot.
func (w *cbtVM) ReconfigVMTask(ctx *simulator.Context, req *types.ReconfigVM_Task) soap.HasFault {
	defer w.hook.release(ctx, w.Self)
	if on := req.Spec.ChangeTrackingEnabled; on != nil && !*on && !w.Config.Template {
		w.hook.tracking.reset(ctx, w.VirtualMachine)
	}
	return w.VirtualMachine.ReconfigVMTask(ctx, req)
}

// ShutdownGuest is vSphere's method of that name: the simulator's, unless
// Config.GuestShutdown says the guest ignores it, as a hung guest (or one
// that asks its user first) does: then the call succeeds and the VM stays
// on.
func (w *cbtVM) ShutdownGuest(ctx *simulator.Context, req *types.ShutdownGuest) soap.HasFault {
	defer w.hook.release(ctx, w.Self)
	if w.hook.guestShutdown == nil || w.hook.guestShutdown(w.Name) || w.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		return w.VirtualMachine.ShutdownGuest(ctx, req)
	}
	return &methods.ShutdownGuestBody{Res: new(types.ShutdownGuestResponse)}
}

// changedAreas checks the request and reads the disk's allocated areas
// (changeId "*") or the areas changed since changeId; a fault comes with
// its message. The caller holds the VM's lock.
func (h *cbtHook) changedAreas(ctx *simulator.Context, vm types.ManagedObjectReference, req *types.QueryChangedDiskAreas) (types.DiskChangeInfo, string, types.BaseMethodFault) {
	var none types.DiskChangeInfo
	if req.Snapshot == nil {
		return none, "snapshot is required", &types.InvalidArgument{InvalidProperty: "snapshot"}
	}
	snap, ok := ctx.Map.Get(*req.Snapshot).(*simulator.VirtualMachineSnapshot)
	if !ok {
		return none, fmt.Sprintf("snapshot %s not found", req.Snapshot.Value), &types.ManagedObjectNotFound{Obj: *req.Snapshot}
	}
	// A snapshot's Config is a copy made when it was taken and not changed
	// afterwards; the simulator reads it without the snapshot's lock too.
	if snap.Vm != vm {
		return none, fmt.Sprintf("snapshot %s is not a snapshot of %s", req.Snapshot.Value, vm.Value),
			&types.InvalidArgument{InvalidProperty: "snapshot"}
	}
	disk, ok := object.VirtualDeviceList(snap.Config.Hardware.Device).FindByKey(req.DeviceKey).(*types.VirtualDisk)
	if !ok {
		return none, fmt.Sprintf("snapshot %s has no disk with key %d", req.Snapshot.Value, req.DeviceKey),
			&types.InvalidArgument{InvalidProperty: "deviceKey"}
	}
	backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok {
		return none, fmt.Sprintf("disk %d: backing %T is not modelled", req.DeviceKey, disk.Backing), &types.NotSupported{}
	}
	if backing.ChangeId == "" {
		return none, fmt.Sprintf("change tracking is not enabled on disk %d", req.DeviceKey), &types.NotSupported{}
	}
	capacity := diskCapacity(disk)
	if req.StartOffset < 0 || req.StartOffset >= capacity {
		return none, fmt.Sprintf("startOffset %d is outside disk %d (%d bytes)", req.StartOffset, req.DeviceKey, capacity),
			&types.InvalidArgument{InvalidProperty: "startOffset"}
	}
	end := min(capacity, req.StartOffset+h.window)
	if req.ChangeId != "*" {
		id := diskID{vm, req.DeviceKey}
		base := h.tracking.lookup(id, req.ChangeId)
		if base == nil {
			return none, fmt.Sprintf("changeId %q is not a change id of disk %d that the simulator knows (another disk's, or from before a reset, a restart, or the last %d snapshots)",
				req.ChangeId, req.DeviceKey, h.tracking.keep), &types.InvalidArgument{InvalidProperty: "changeId"}
		}
		cur := h.tracking.lookup(id, backing.ChangeId)
		if cur == nil {
			return none, fmt.Sprintf("the snapshot's changeId %q of disk %d is no longer known (from before a reset, a restart, or the last %d snapshots)",
				backing.ChangeId, req.DeviceKey, h.tracking.keep), &types.InvalidArgument{InvalidProperty: "changeId"}
		}
		areas, next := changedAreas(base, cur, req.StartOffset, end, h.maxAreas)
		return types.DiskChangeInfo{StartOffset: req.StartOffset, Length: next - req.StartOffset, ChangedArea: areas}, "", nil
	}
	file, err := localFile(ctx, snap.Vm, backing.FileName)
	if err != nil {
		return none, err.Error(), &types.FileNotFound{FileFault: types.FileFault{File: backing.FileName}}
	}
	areas, next, err := allocatedAreas(file, req.StartOffset, end, h.maxAreas)
	if err != nil {
		return none, err.Error(), &types.FileFault{File: backing.FileName}
	}
	return types.DiskChangeInfo{StartOffset: req.StartOffset, Length: next - req.StartOffset, ChangedArea: areas}, "", nil
}

// localFile is the local path of the flat file of a disk whose descriptor
// is the datastore path name, on a datastore of vm.
func localFile(ctx *simulator.Context, vm types.ManagedObjectReference, name string) (string, error) {
	var p object.DatastorePath
	if !p.FromString(name) {
		return "", fmt.Errorf("disk file %q is no datastore path", name)
	}
	v, ok := ctx.Map.Get(vm).(*simulator.VirtualMachine)
	if !ok {
		return "", fmt.Errorf("VM %s not found", vm.Value)
	}
	// The caller holds the VM's lock.
	ds, ok := ctx.Map.FindByName(p.Datastore, v.Datastore).(*simulator.Datastore)
	if !ok {
		return "", fmt.Errorf("datastore %s of %s not found", p.Datastore, name)
	}
	// A local datastore's URL is its directory; it does not change, and the
	// simulator reads it without the datastore's lock too.
	return flatFile(ds.Summary.Url, p.Path), nil
}

// flatFile is the local path of the flat file that holds the disk whose
// descriptor is at path rel in the datastore directory dir, named as the
// simulator names it.
func flatFile(dir, rel string) string {
	return simulator.VirtualDiskBackingFileName(dir + "/" + strings.TrimPrefix(rel, "/"))
}

// allocatedAreas lists the allocated extents of file within [start, end),
// at most maxAreas of them (clipped to the range). next is where they end: end,
// or the end of the last area when there may be more.
func allocatedAreas(file string, start, end int64, maxAreas int) (areas []types.DiskChangeExtent, next int64, err error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, 0, fmt.Errorf("open disk: %w", err)
	}
	defer f.Close()
	off := start
	for off < end {
		if len(areas) == maxAreas {
			return areas, off, nil
		}
		data, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) {
			break // no data from off to the end of the file
		}
		if err != nil {
			return nil, 0, fmt.Errorf("seek data from %d: %w", off, err)
		}
		if data >= end {
			break
		}
		hole, err := f.Seek(data, unix.SEEK_HOLE)
		if err != nil {
			return nil, 0, fmt.Errorf("seek hole from %d: %w", data, err)
		}
		hole = min(hole, end)
		areas = append(areas, types.DiskChangeExtent{Start: data, Length: hole - data})
		off = hole
	}
	return areas, end, nil
}
