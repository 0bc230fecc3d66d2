package vcenter

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/godwit/godwit/events"
)

// vmProperties are the only VM properties discovery asks for.
func vmProperties() []string {
	return []string{"name", "parent", "runtime.powerState", "config.uuid", "config.instanceUuid", "config.guestId", "config.hardware.numCPU",
		"config.hardware.memoryMB", "config.firmware", "config.changeTrackingEnabled", "config.hardware.device", "config.version", "snapshot", "runtime.host"}
}

// Discover lists the VMs of datacenter (every datacenter when "") whose
// name matches filter: a comma-separated list of case-insensitive name
// parts ("" matches all). An unknown datacenter wraps ErrNotFound.
func (s *Session) Discover(ctx context.Context, datacenter, filter string) (events.VCenterRef, []events.VM, error) {
	ref := events.VCenterRef{Host: s.cfg.Host, Datacenter: datacenter}
	finder := find.NewFinder(s.Client, false)
	var dcs []*object.Datacenter
	if datacenter == "" {
		all, err := finder.DatacenterList(ctx, "*")
		if err != nil {
			var nf *find.NotFoundError
			if errors.As(err, &nf) {
				return ref, []events.VM{}, nil
			}
			return ref, nil, fmt.Errorf("list datacenters: %w", err)
		}
		dcs = all
	} else {
		dc, err := finder.Datacenter(ctx, datacenter)
		if err != nil {
			var nf *find.NotFoundError
			if errors.As(err, &nf) {
				return ref, nil, fmt.Errorf("datacenter %q: %w", datacenter, ErrNotFound)
			}
			return ref, nil, fmt.Errorf("find datacenter %q: %w", datacenter, err)
		}
		dcs = []*object.Datacenter{dc}
	}
	matches := matcher(filter)
	vms := []events.VM{}
	for _, dc := range dcs {
		found, err := s.datacenterVMs(ctx, dc)
		if err != nil {
			return ref, nil, err
		}
		for _, vm := range found {
			if matches(vm.Name) {
				vms = append(vms, vm)
			}
		}
	}
	slices.SortFunc(vms, func(a, b events.VM) int { return strings.Compare(a.Path, b.Path) })
	return ref, vms, nil
}

// matcher returns whether a name matches a comma-separated filter.
func matcher(filter string) func(string) bool {
	var parts []string
	for _, p := range strings.Split(filter, ",") {
		if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
			parts = append(parts, p)
		}
	}
	return func(name string) bool {
		if len(parts) == 0 {
			return true
		}
		lower := strings.ToLower(name)
		for _, p := range parts {
			if strings.Contains(lower, p) {
				return true
			}
		}
		return false
	}
}

// datacenterVMs retrieves the VMs of one datacenter, with the folders,
// networks and datastores needed to name paths and backings, in one
// PropertyCollector call.
func (s *Session) datacenterVMs(ctx context.Context, dc *object.Datacenter) ([]events.VM, error) {
	dcName := dc.Name()
	m := view.NewManager(s.Client)
	v, err := m.CreateContainerView(ctx, dc.Reference(), []string{"VirtualMachine", "Folder", "Network", "Datastore", "HostSystem"}, true)
	if err != nil {
		return nil, fmt.Errorf("datacenter %s: create view: %w", dcName, err)
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	var content []types.ObjectContent
	err = v.Retrieve(ctx, []string{"VirtualMachine"}, vmProperties(), &content,
		types.PropertySpec{Type: "Folder", PathSet: []string{"name", "parent"}},
		types.PropertySpec{Type: "Network", PathSet: []string{"name"}},
		types.PropertySpec{Type: "Datastore", PathSet: []string{"name"}},
		types.PropertySpec{Type: "HostSystem", PathSet: []string{"name"}})
	if err != nil {
		return nil, fmt.Errorf("datacenter %s: retrieve: %w", dcName, err)
	}
	type folder struct {
		name   string
		parent types.ManagedObjectReference
	}
	folders := map[types.ManagedObjectReference]folder{}
	names := map[types.ManagedObjectReference]string{} // networks, datastores and ESXi hosts
	var vmContent []types.ObjectContent
	for _, oc := range content {
		switch oc.Obj.Type {
		case "VirtualMachine":
			vmContent = append(vmContent, oc)
		case "Folder":
			var f folder
			for _, p := range oc.PropSet {
				switch p.Name {
				case "name":
					f.name, _ = p.Val.(string)
				case "parent":
					f.parent, _ = p.Val.(types.ManagedObjectReference)
				}
			}
			folders[oc.Obj] = f
		default: // networks of every kind, datastores, ESXi hosts
			for _, p := range oc.PropSet {
				if p.Name == "name" {
					names[oc.Obj], _ = p.Val.(string)
				}
			}
		}
	}
	var mvms []mo.VirtualMachine
	if err := mo.LoadObjectContent(vmContent, &mvms); err != nil {
		return nil, fmt.Errorf("datacenter %s: decode VMs: %w", dcName, err)
	}
	dcPath := dc.InventoryPath
	if dcPath == "" {
		dcPath = "/" + dcName
	}
	path := func(parent *types.ManagedObjectReference, name string) string {
		parts := []string{name}
		for p := parent; p != nil; {
			f, ok := folders[*p]
			if !ok {
				break // reached the datacenter
			}
			parts = append(parts, f.name)
			next := f.parent
			p = &next
		}
		slices.Reverse(parts)
		return dcPath + "/" + strings.Join(parts, "/")
	}
	out := make([]events.VM, 0, len(mvms))
	for _, mvm := range mvms {
		out = append(out, toVM(mvm, dcName, path(mvm.Parent, mvm.Name), names))
	}
	return out, nil
}

// toVM maps a retrieved VM to its event form.
func toVM(mvm mo.VirtualMachine, dc, path string, names map[types.ManagedObjectReference]string) events.VM {
	vm := events.VM{ID: mvm.Self.Value, Name: mvm.Name, Path: path, Datacenter: dc, PowerState: string(mvm.Runtime.PowerState),
		Firmware: "bios", Disks: []events.Disk{}, Networks: []events.Network{}}
	if h := mvm.Runtime.Host; h != nil {
		vm.ESXiHost = names[*h]
	}
	c := mvm.Config
	if c == nil {
		return vm // not yet configured (being created): no hardware to report
	}
	vm.UUID, vm.InstanceUUID, vm.GuestOS = c.Uuid, c.InstanceUuid, c.GuestId
	vm.NumCPU, vm.MemoryMB = int(c.Hardware.NumCPU), int(c.Hardware.MemoryMB)
	if c.Firmware != "" {
		vm.Firmware = c.Firmware
	}
	if c.ChangeTrackingEnabled != nil {
		vm.CBTEnabled = *c.ChangeTrackingEnabled
	}
	vm.HardwareVersion = hardwareVersion(c.Version)
	vm.Snapshots, vm.SnapshotDepth = snapshotCounts(mvm.Snapshot)
	devices := object.VirtualDeviceList(c.Hardware.Device)
	for _, d := range devices {
		switch dev := d.(type) {
		case *types.VirtualDisk:
			vm.Disks = append(vm.Disks, toDisk(dev, devices, names))
		case types.BaseVirtualEthernetCard:
			vm.Networks = append(vm.Networks, toNetwork(d, dev.GetVirtualEthernetCard(), names))
		}
	}
	return vm
}

func toDisk(d *types.VirtualDisk, devices object.VirtualDeviceList, names map[types.ManagedObjectReference]string) events.Disk {
	disk := events.Disk{Key: d.Key, CapacityBytes: d.CapacityInBytes}
	if disk.CapacityBytes == 0 {
		disk.CapacityBytes = d.CapacityInKB * 1024
	}
	if info := d.GetVirtualDevice().DeviceInfo; info != nil {
		disk.Label = info.GetDescription().Label
	}
	if ctl := devices.FindByKey(d.ControllerKey); ctl != nil {
		if info := ctl.GetVirtualDevice().DeviceInfo; info != nil {
			disk.Controller = info.GetDescription().Label
		}
	}
	if d.UnitNumber != nil {
		disk.UnitNumber = *d.UnitNumber
	}
	if b, ok := d.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
		fb := b.GetVirtualDeviceFileBackingInfo()
		disk.File = fb.FileName
		if fb.Datastore != nil {
			disk.Datastore = names[*fb.Datastore]
		}
		if disk.Datastore == "" {
			var p object.DatastorePath
			if p.FromString(fb.FileName) {
				disk.Datastore = p.Datastore
			}
		}
	}
	switch b := d.Backing.(type) {
	case *types.VirtualDiskFlatVer2BackingInfo:
		disk.Mode = b.DiskMode
		if b.ThinProvisioned != nil {
			disk.Thin = *b.ThinProvisioned
		}
	case *types.VirtualDiskFlatVer1BackingInfo:
		disk.Mode = b.DiskMode
	case *types.VirtualDiskSeSparseBackingInfo:
		disk.Mode = b.DiskMode
	case *types.VirtualDiskSparseVer1BackingInfo:
		disk.Mode = b.DiskMode
	case *types.VirtualDiskSparseVer2BackingInfo:
		disk.Mode = b.DiskMode
	case *types.VirtualDiskLocalPMemBackingInfo:
		disk.Mode = b.DiskMode
	case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
		// The file is the mapping's descriptor, on a datastore; the
		// capacity is the LUN's, reported by the device.
		disk.Mode, disk.RDM = b.DiskMode, true
	case types.BaseVirtualDiskRawDiskVer2BackingInfo: // and PartitionedRawDiskVer2
		// A raw disk has no file backing and no disk mode: its
		// descriptor stands for the file.
		disk.RDM = true
		if disk.File == "" {
			disk.File = b.GetVirtualDiskRawDiskVer2BackingInfo().DescriptorFileName
			var p object.DatastorePath
			if p.FromString(disk.File) {
				disk.Datastore = p.Datastore
			}
		}
	}
	return disk
}

// hardwareVersion is the number of a config.version such as "vmx-13"; 0
// when it is empty or not of that shape.
func hardwareVersion(version string) int {
	v, err := types.ParseHardwareVersion(version)
	if err != nil {
		return 0
	}
	return int(v)
}

// snapshotCounts counts the snapshots of a VM's snapshot tree and the
// depth of its current snapshot: how many snapshots the chain from a root
// to it holds, the current one included (see events.VM). Without a current
// snapshot in the tree, the depth is the tree's greatest. Both are 0 when
// info is nil or holds no snapshot.
func snapshotCounts(info *types.VirtualMachineSnapshotInfo) (count, depth int) {
	if info == nil {
		return 0, 0
	}
	maxDepth, currentDepth := 0, 0
	var walk func(trees []types.VirtualMachineSnapshotTree, level int)
	walk = func(trees []types.VirtualMachineSnapshotTree, level int) {
		for _, t := range trees {
			count++
			maxDepth = max(maxDepth, level)
			if info.CurrentSnapshot != nil && t.Snapshot == *info.CurrentSnapshot {
				currentDepth = level
			}
			walk(t.ChildSnapshotList, level+1)
		}
	}
	walk(info.RootSnapshotList, 1)
	if currentDepth == 0 {
		return count, maxDepth
	}
	return count, currentDepth
}

func toNetwork(d types.BaseVirtualDevice, card *types.VirtualEthernetCard, names map[types.ManagedObjectReference]string) events.Network {
	n := events.Network{MACAddress: card.MacAddress, AdapterType: adapterType(d)}
	if info := card.DeviceInfo; info != nil {
		n.Label = info.GetDescription().Label
	}
	if card.Connectable != nil {
		n.Connected = card.Connectable.Connected
	}
	switch b := card.Backing.(type) {
	case *types.VirtualEthernetCardNetworkBackingInfo:
		n.Network = b.DeviceName
		if b.Network != nil && names[*b.Network] != "" {
			n.Network = names[*b.Network]
		}
	case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
		n.Network = names[types.ManagedObjectReference{Type: "DistributedVirtualPortgroup", Value: b.Port.PortgroupKey}]
		if n.Network == "" {
			n.Network = b.Port.PortgroupKey
		}
	case *types.VirtualEthernetCardOpaqueNetworkBackingInfo:
		n.Network = b.OpaqueNetworkId
	}
	return n
}

// adapterType names an ethernet card's type the way vSphere does: vmxnet3, e1000e, ...
func adapterType(d types.BaseVirtualDevice) string {
	name := reflect.TypeOf(d).Elem().Name() // VirtualVmxnet3, VirtualE1000e, ...
	return strings.ToLower(strings.TrimPrefix(name, "Virtual"))
}
