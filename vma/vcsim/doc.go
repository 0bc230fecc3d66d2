// Package vcsim runs a simulated vCenter for development and tests, on
// govmomi's simulator, with the seed's inventory: datacenter DatabanxDC, VM
// PGWINTESTBIOS at /DatabanxDC/vm/PGWINTESTBIOS, and generated VMs with one
// to three disks of different sizes, powered on and off, some in a
// subfolder.
//
// # Disks
//
// The VMs' files live on the datastore LocalDS_0, in <dir>/<VM name>, where
// dir is a directory of the caller's choice (Config.Datastore) or a
// temporary one that Close removes. A disk is a small descriptor
// (<VM>_<n>.vmdk) and a flat file (<VM>_<n>-flat.vmdk) holding its content,
// which tests may read and write (Simulator.DiskFile). A new disk's flat
// file is sparse: Config.DiskData bytes of content derived from the VM's
// name and the disk's key, at its start, a third and two thirds in
// (pseudo-random, with one allocated block of zeros) and at its very end
// (DiskPattern); the rest are holes. Started again on the same directory,
// the simulator attaches the disks it finds there, with their content, at
// the same paths.
//
// # Change tracking
//
// Disks of VMs with change tracking on report a changeId (shaped like
// vSphere's, never changing), which their snapshots copy. The simulator
// adds QueryChangedDiskAreas, which govmomi's simulator lacks.
//
// Modelled: the initial query, changeId "*", which on vSphere answers the
// areas of the disk in use. Here those are the allocated extents of the
// disk's flat file (SEEK_DATA/SEEK_HOLE), so what a test writes into a disk
// shows up. An answer covers at most Config.ChangedAreasWindow bytes from
// startOffset and holds at most Config.ChangedAreasMax areas;
// DiskChangeInfo.Length says how far it got, and callers continue from
// StartOffset+Length, as with vCenter, which also answers in parts. Faults:
// no snapshot, or one of another VM (InvalidArgument); a snapshot that does
// not exist (ManagedObjectNotFound); a device key that is not a disk of the
// snapshot (InvalidArgument); a disk whose snapshot backing has no changeId,
// change tracking being off (NotSupported); a startOffset outside the disk
// (InvalidArgument).
//
// Not modelled: incremental queries. Any changeId other than "*" gets a
// NotSupported fault saying so. govmomi's
// object.VirtualMachine.QueryChangedDiskAreas always sends the snapshot's
// changeId, so it gets that fault; ask for "*" with
// methods.QueryChangedDiskAreas.
package vcsim
