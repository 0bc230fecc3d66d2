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
// the same paths. A VM of Config.Extra may have independent disks and raw
// device mappings (VM.IndependentDisks, VM.RDMDisks): a mapping is a
// descriptor and a flat file like any disk, its backing a
// VirtualDiskRawDiskMappingVer1BackingInfo with a made-up LUN.
//
// # Change tracking
//
// The simulator models vSphere's changed block tracking (CBT) on the
// disks' flat files, and adds QueryChangedDiskAreas, which govmomi's
// simulator lacks.
//
// Change ids. When a snapshot of a VM with change tracking on
// (config.changeTrackingEnabled) is created, by CreateSnapshot_Task or
// CreateSnapshotEx_Task, each of its disks gets a new changeId, which the
// VM's disk backing and the snapshot's (config.hardware.device[].backing)
// then report. A changeId is shaped like vSphere's: a uuid part per disk,
// random, 16 bytes in hex separated by spaces with a dash in the middle,
// then "/" and a sequence number that counts the disk's snapshots from 1:
// "52 de c0 d7 b1 d5 a3 f3-c2 b7 36 da 1b 95 e4 5e/2". A disk has no
// changeId before its first snapshot with tracking on. Under each changeId
// the simulator records a block map of the disk: a 128-bit hash (two
// maphash sums) of each ChangeBlock (64 KiB) that holds anything but zeros;
// only the allocated extents are read (SEEK_DATA/SEEK_HOLE), so a big
// sparse disk is cheap, and its map is as large as its data (24 bytes a
// block). A snapshot of a disk that holds gigabytes of data takes the
// time to read and hash them (about 1-2 GB/s).
// Each disk remembers its last Config.ChangeIDs change ids with their
// maps. They live in memory: a simulator started again knows none of the
// change ids from before (and gives new uuid parts, so they never match).
//
// Turning change tracking off (ReconfigVM_Task, changeTrackingEnabled
// false) resets it: the VM's disks forget their change ids, and their
// backings report none. Turned on again, or on for the first time, tracking
// starts at the next snapshot, with a new uuid part, from "/1". A disk
// whose backing file or capacity changed starts afresh too.
//
// QueryChangedDiskAreas with changeId "*" answers the areas of the disk in
// use, as on vSphere: here the allocated extents of the flat file, so what
// a test writes into a disk shows up. With another changeId, it answers
// the ChangeBlocks whose content differs between the map recorded under
// that changeId and the map of the snapshot's own changeId, merged into
// areas, in offset order, clipped to the disk's capacity: a write of zeros
// over data is a change, a write of the same bytes is not. An answer covers
// at most Config.ChangedAreasWindow bytes from startOffset and holds at
// most Config.ChangedAreasMax areas; DiskChangeInfo.Length says how far it
// got, and callers continue from StartOffset+Length, as with vCenter, which
// also answers in parts. govmomi's object.VirtualMachine.QueryChangedDiskAreas
// works (it sends the base snapshot's changeId); it cannot send "*", for
// which use methods.QueryChangedDiskAreas.
//
// Faults: no snapshot, or one of another VM (InvalidArgument); a snapshot
// that does not exist (ManagedObjectNotFound); a device key that is not a
// disk of the snapshot (InvalidArgument); a disk whose snapshot backing
// has no changeId, change tracking being off (NotSupported); a startOffset
// outside the disk (InvalidArgument, startOffset); a changeId the disk does
// not know (unknown, another disk's, from before a reset or a restart, or
// older than the last Config.ChangeIDs), or a snapshot whose own changeId
// the disk no longer knows: InvalidArgument with InvalidProperty
// "changeId", which vSphere answers for a changeId from before a CBT reset.
//
// Not modelled: change ids move only at snapshots, not with every write as
// on vSphere, and writes are seen by content, not as they happen (the same
// bytes written again are no change; vSphere would report them). A
// changeId newer than the snapshot is answered like an older one (the
// blocks that differ). Resizing a disk does not reset tracking until the
// next snapshot; deleting a VM does not free its maps. Snapshots do not
// make delta disks (see the Disks section): a snapshot's content is the
// flat file, read when the snapshot is taken for its map and when queried
// for "*". The disk backings are the only ones with change tracking:
// VirtualDiskFlatVer2BackingInfo.
package vcsim
