package vcenter

import (
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/godwit/godwit/events"
)

// TestToDiskBackings maps each kind of disk backing, those the simulator
// cannot make too: raw disks report their capacity, file and datastore as
// well as the backing allows.
func TestToDiskBackings(t *testing.T) {
	t.Parallel()
	ds := types.ManagedObjectReference{Type: "Datastore", Value: "datastore-1"}
	names := map[types.ManagedObjectReference]string{ds: "datastore1"}
	file := types.VirtualDeviceFileBackingInfo{FileName: "[datastore1] vm/vm_1.vmdk", Datastore: &ds}
	rawDisk := types.VirtualDiskRawDiskVer2BackingInfo{
		VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: "/vmfs/devices/disks/naa.600"},
		DescriptorFileName:             "[san1] vm/vm_raw.vmdk",
	}
	tests := []struct {
		name    string
		backing types.BaseVirtualDeviceBackingInfo
		want    events.Disk
	}{
		{"flat", &types.VirtualDiskFlatVer2BackingInfo{VirtualDeviceFileBackingInfo: file, DiskMode: "persistent", ThinProvisioned: types.NewBool(true)},
			events.Disk{File: file.FileName, Datastore: "datastore1", Thin: true, Mode: "persistent"}},
		{"flat independent", &types.VirtualDiskFlatVer2BackingInfo{VirtualDeviceFileBackingInfo: file, DiskMode: "independent_nonpersistent"},
			events.Disk{File: file.FileName, Datastore: "datastore1", Mode: "independent_nonpersistent"}},
		{"sesparse", &types.VirtualDiskSeSparseBackingInfo{VirtualDeviceFileBackingInfo: file, DiskMode: "independent_persistent"},
			events.Disk{File: file.FileName, Datastore: "datastore1", Mode: "independent_persistent"}},
		{"sparse v2", &types.VirtualDiskSparseVer2BackingInfo{VirtualDeviceFileBackingInfo: file, DiskMode: "nonpersistent"},
			events.Disk{File: file.FileName, Datastore: "datastore1", Mode: "nonpersistent"}},
		{"rdm physical", &types.VirtualDiskRawDiskMappingVer1BackingInfo{VirtualDeviceFileBackingInfo: file,
			CompatibilityMode: "physicalMode", DeviceName: "/vmfs/devices/disks/naa.600", LunUuid: "0200"},
			events.Disk{File: file.FileName, Datastore: "datastore1", RDM: true}},
		{"rdm virtual", &types.VirtualDiskRawDiskMappingVer1BackingInfo{VirtualDeviceFileBackingInfo: file,
			CompatibilityMode: "virtualMode", DiskMode: "independent_persistent"},
			events.Disk{File: file.FileName, Datastore: "datastore1", Mode: "independent_persistent", RDM: true}},
		{"raw disk", &rawDisk,
			events.Disk{File: "[san1] vm/vm_raw.vmdk", Datastore: "san1", RDM: true}},
		{"partitioned raw disk", &types.VirtualDiskPartitionedRawDiskVer2BackingInfo{VirtualDiskRawDiskVer2BackingInfo: rawDisk, Partition: []int32{1}},
			events.Disk{File: "[san1] vm/vm_raw.vmdk", Datastore: "san1", RDM: true}},
		{"no backing", nil, events.Disk{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := &types.VirtualDisk{VirtualDevice: types.VirtualDevice{Key: 2001, Backing: tt.backing}, CapacityInKB: 4 << 20}
			want := tt.want
			want.Key, want.CapacityBytes = 2001, 4<<30
			if got := toDisk(d, object.VirtualDeviceList{d}, names); got != want {
				t.Errorf("toDisk(%T) = %+v, want %+v", tt.backing, got, want)
			}
		})
	}
}

func TestHardwareVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		version string
		want    int
	}{
		{"vmx-13", 13}, {"vmx-04", 4}, {"vmx-21", 21}, {"VMX-19", 19}, {"", 0}, {"vmx-", 0}, {"esx-13", 0}, {"vmx-999", 0},
	}
	for _, tt := range tests {
		if got := hardwareVersion(tt.version); got != tt.want {
			t.Errorf("hardwareVersion(%q) = %d, want %d", tt.version, got, tt.want)
		}
	}
}

// TestSnapshotCounts counts snapshot trees: the depth is the current
// snapshot's, or the tree's greatest without a current one.
func TestSnapshotCounts(t *testing.T) {
	t.Parallel()
	ref := func(n string) types.ManagedObjectReference {
		return types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: n}
	}
	node := func(n string, children ...types.VirtualMachineSnapshotTree) types.VirtualMachineSnapshotTree {
		return types.VirtualMachineSnapshotTree{Snapshot: ref(n), ChildSnapshotList: children}
	}
	current := func(n string) *types.ManagedObjectReference { r := ref(n); return &r }
	// s1 - s2 - s3 - s4
	//    \ s5
	// s6
	tree := []types.VirtualMachineSnapshotTree{node("s1", node("s2", node("s3", node("s4"))), node("s5")), node("s6")}
	tests := []struct {
		name         string
		info         *types.VirtualMachineSnapshotInfo
		count, depth int
	}{
		{"no snapshot info", nil, 0, 0},
		{"empty tree", &types.VirtualMachineSnapshotInfo{}, 0, 0},
		{"one", &types.VirtualMachineSnapshotInfo{RootSnapshotList: []types.VirtualMachineSnapshotTree{node("s1")}, CurrentSnapshot: current("s1")}, 1, 1},
		{"current deepest", &types.VirtualMachineSnapshotInfo{RootSnapshotList: tree, CurrentSnapshot: current("s4")}, 6, 4},
		{"current on a branch", &types.VirtualMachineSnapshotInfo{RootSnapshotList: tree, CurrentSnapshot: current("s5")}, 6, 2},
		{"current a second root", &types.VirtualMachineSnapshotInfo{RootSnapshotList: tree, CurrentSnapshot: current("s6")}, 6, 1},
		{"no current", &types.VirtualMachineSnapshotInfo{RootSnapshotList: tree}, 6, 4},
		{"current not in the tree", &types.VirtualMachineSnapshotInfo{RootSnapshotList: tree, CurrentSnapshot: current("s9")}, 6, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if count, depth := snapshotCounts(tt.info); count != tt.count || depth != tt.depth {
				t.Errorf("snapshotCounts = %d, %d; want %d, %d", count, depth, tt.count, tt.depth)
			}
		})
	}
}
