package vcenter_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/godwit/godwit/vma/vcenter"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestSnapshotLifecycle finds the seed VM by path, takes a snapshot, reads
// its disks, finds it by prefix, and removes it (twice: the second time it
// is gone, which is not an error).
func TestSnapshotLifecycle(t *testing.T) {
	sim := startSim(t)
	s := login(t, sim)
	ctx := context.Background()
	path := "/" + vcsim.Datacenter + "/vm/" + vcsim.SeedVM
	_, vms, err := s.Discover(ctx, vcsim.Datacenter, vcsim.SeedVM)
	if err != nil || len(vms) != 1 {
		t.Fatalf("Discover = %d VMs, %v", len(vms), err)
	}
	want := vms[0]
	vm, err := s.FindVM(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Ref.Value != want.ID || vm.InstanceUUID != want.InstanceUUID || vm.Path != path || vm.Datacenter == nil || vm.DatacenterPath != vcsim.Datacenter {
		t.Fatalf("FindVM = %+v, want the discovered %s (%s)", vm, want.ID, want.InstanceUUID)
	}
	byRef, err := s.VMByRef(ctx, vm.Ref.Value)
	if err != nil || byRef.InstanceUUID != vm.InstanceUUID || byRef.DatacenterPath != vm.DatacenterPath {
		t.Fatalf("VMByRef = %+v, %v; want %+v", byRef, err, vm)
	}
	if _, err := s.VMByRef(ctx, "vm-999999"); !errors.Is(err, vcenter.ErrNotFound) {
		t.Errorf("VMByRef(vm-999999) = %v, want ErrNotFound", err)
	}
	snap, err := s.CreateSnapshot(ctx, vm, "godwit-job-1", "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Disks) != len(want.Disks) {
		t.Fatalf("snapshot has %d disks, want %d", len(snap.Disks), len(want.Disks))
	}
	for i, d := range snap.Disks {
		w := want.Disks[i]
		if d.Key != w.Key || d.File != w.File || d.CapacityBytes != w.CapacityBytes || d.Label != w.Label {
			t.Errorf("snapshot disk %d = %+v, want %+v", i, d, w)
		}
		if !vm.CBT || d.ChangeID == "" {
			t.Fatalf("the seed VM's disk %d has no CBT (change id %q)", d.Key, d.ChangeID)
		}
		areas, err := s.AllocatedAreas(ctx, vm, snap, d)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for i, a := range areas {
			if a.Length <= 0 || a.Offset+a.Length > d.CapacityBytes || (i > 0 && a.Offset <= areas[i-1].Offset+areas[i-1].Length) {
				t.Errorf("disk %d: area %d %+v out of order, empty or past the end", d.Key, i, a)
			}
			sum += a.Length
		}
		if len(areas) == 0 || sum >= d.CapacityBytes/2 {
			t.Errorf("disk %d: CBT areas %v: want the few allocated MiB of a sparse disk", d.Key, areas)
		}
	}
	if _, err := s.CreateSnapshot(ctx, vm, "other", ""); err != nil {
		t.Fatal(err)
	}
	found, err := s.Snapshots(ctx, vm, "godwit-")
	if err != nil || len(found) != 1 || found[0].Name != "godwit-job-1" || found[0].Ref != snap.Ref {
		t.Fatalf("Snapshots(godwit-) = %+v, %v; want the one snapshot", found, err)
	}
	for range 2 {
		if err := s.RemoveSnapshot(ctx, snap.Ref); err != nil {
			t.Fatalf("RemoveSnapshot = %v", err)
		}
	}
	if found, err := s.Snapshots(ctx, vm, "godwit-"); err != nil || len(found) != 0 {
		t.Fatalf("Snapshots after removal = %+v, %v", found, err)
	}
}

func TestFindVMNotFound(t *testing.T) {
	sim := startSim(t)
	s := login(t, sim)
	for _, path := range []string{"/" + vcsim.Datacenter + "/vm/nope", "/NoDC/vm/x", "/" + vcsim.Datacenter + "/host"} {
		if _, err := s.FindVM(context.Background(), path); !errors.Is(err, vcenter.ErrNotFound) {
			t.Errorf("FindVM(%s) = %v, want ErrNotFound", path, err)
		}
	}
}

// TestThumbprint: the fingerprint is the SHA-1 of the certificate the
// simulator serves, the one in its CA file.
func TestThumbprint(t *testing.T) {
	sim := startSim(t)
	s := login(t, sim)
	pemBytes, err := os.ReadFile(sim.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("no PEM block in the simulator's CA file")
	}
	sum := sha1.Sum(block.Bytes)
	want := strings.ToUpper(hex.EncodeToString(sum[:]))
	got, err := s.Thumbprint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.ReplaceAll(got, ":", "") != want || len(got) != 59 {
		t.Errorf("Thumbprint = %s, want %s in colon-separated pairs", got, want)
	}
}

// TestAllocatedAreasWithoutCBT: a VM without change tracking is copied
// whole.
func TestAllocatedAreasWithoutCBT(t *testing.T) {
	sim := startSim(t)
	s := login(t, sim)
	ctx := context.Background()
	vm, err := s.FindVM(ctx, "/"+vcsim.Datacenter+"/vm/Linux/gen-vm-002")
	if err != nil {
		t.Fatal(err)
	}
	if vm.CBT {
		t.Fatal("gen-vm-002 has CBT on; the test needs a VM without")
	}
	snap, err := s.CreateSnapshot(ctx, vm, "godwit-job-2", "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.RemoveSnapshot(ctx, snap.Ref)
	for _, d := range snap.Disks {
		areas, err := s.AllocatedAreas(ctx, vm, snap, d)
		if err != nil || !slices.Equal(areas, []vcenter.Area{{Offset: 0, Length: d.CapacityBytes}}) {
			t.Errorf("disk %d without CBT: areas %v, %v; want the whole disk", d.Key, areas, err)
		}
	}
}
