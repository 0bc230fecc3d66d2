package vcenter_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/secret"
	"github.com/godwit/godwit/vma/vcenter"
	"github.com/godwit/godwit/vma/vcsim"
)

// startSim starts a simulator. Tests that use one do not run in parallel:
// govmomi's simulator keeps process-wide state while it builds a model.
func startSim(t *testing.T) *vcsim.Simulator {
	t.Helper()
	sim, err := vcsim.Start(context.Background(), vcsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

func login(t *testing.T, sim *vcsim.Simulator) *vcenter.Session {
	t.Helper()
	s, err := vcenter.Login(context.Background(), vcenter.Config{Host: sim.Host, Username: sim.Username, Password: secret.New(sim.Password), CAFile: sim.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func byName(vms []events.VM, name string) (events.VM, bool) {
	for _, vm := range vms {
		if vm.Name == name {
			return vm, true
		}
	}
	return events.VM{}, false
}

// TestDiscoverReturnsEveryField checks every field of the seed VM and of a
// generated one against what the simulator was built with, over HTTPS
// with the simulator's certificate trusted.
func TestDiscoverReturnsEveryField(t *testing.T) {
	sim := startSim(t)
	s := login(t, sim)
	ref, vms, err := s.Discover(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if ref.Host != sim.Host || ref.Datacenter != "" || len(vms) != 13 {
		t.Fatalf("Discover = %+v, %d VMs, want 13", ref, len(vms))
	}
	seed, ok := byName(vms, "PGWINTESTBIOS")
	if !ok {
		t.Fatal("no PGWINTESTBIOS")
	}
	if !strings.HasPrefix(seed.ID, "vm-") || seed.Path != "/DatabanxDC/vm/PGWINTESTBIOS" || seed.Datacenter != "DatabanxDC" ||
		len(seed.UUID) != 36 || len(seed.InstanceUUID) != 36 || seed.InstanceUUID == seed.UUID || seed.PowerState != "poweredOn" || seed.GuestOS != "windows2019srv_64Guest" ||
		seed.NumCPU != 4 || seed.MemoryMB != 8192 || seed.Firmware != "bios" || !seed.CBTEnabled ||
		seed.HardwareVersion != vcsim.DefaultHardwareVersion || seed.Snapshots != 0 || seed.SnapshotDepth != 0 {
		t.Errorf("seed VM = %+v", seed)
	}
	wantDisks := []events.Disk{
		{Label: "Hard disk 1", CapacityBytes: 40 << 30, Datastore: "LocalDS_0", File: "[LocalDS_0] PGWINTESTBIOS/PGWINTESTBIOS_0.vmdk", Thin: true, Controller: "SCSI controller 0", UnitNumber: 0, Mode: "persistent"},
		{Label: "Hard disk 2", CapacityBytes: 100 << 30, Datastore: "LocalDS_0", File: "[LocalDS_0] PGWINTESTBIOS/PGWINTESTBIOS_1.vmdk", Thin: false, Controller: "SCSI controller 0", UnitNumber: 1, Mode: "persistent"},
	}
	if len(seed.Disks) != 2 {
		t.Fatalf("seed disks = %+v", seed.Disks)
	}
	for i, d := range seed.Disks {
		want := wantDisks[i]
		want.Key = d.Key
		if d != want || d.Key <= 0 || (i == 1 && d.Key == seed.Disks[0].Key) {
			t.Errorf("disk %d = %+v, want %+v", i, d, want)
		}
	}
	if len(seed.Networks) != 1 {
		t.Fatalf("seed networks = %+v", seed.Networks)
	}
	n := seed.Networks[0]
	if n.Label != "Network adapter 1" || n.Network != "VM Network" || len(n.MACAddress) != 17 || n.AdapterType != "vmxnet3" || !n.Connected {
		t.Errorf("seed network = %+v", n)
	}

	// gen-vm-002: in the Linux folder, EFI, off CBT, a DVS port group too.
	g, ok := byName(vms, "gen-vm-002")
	if !ok {
		t.Fatal("no gen-vm-002")
	}
	if g.Path != "/DatabanxDC/vm/Linux/gen-vm-002" || g.Firmware != "efi" || g.CBTEnabled || g.NumCPU != 2 || g.MemoryMB != 2048 ||
		len(g.Disks) != 2 || g.Disks[0].CapacityBytes != 1<<30+256<<20 || g.Disks[1].CapacityBytes != 2<<30+256<<20 {
		t.Errorf("gen-vm-002 = %+v", g)
	}
	if len(g.Networks) != 2 || g.Networks[1].Network != "DC0_DVPG0" {
		t.Errorf("gen-vm-002 networks = %+v", g.Networks)
	}
	off, _ := byName(vms, "gen-vm-001")
	if off.PowerState != "poweredOff" {
		t.Errorf("gen-vm-001 power = %s", off.PowerState)
	}
}

// TestDiscoverHardwareSnapshotsAndDiskModes discovers VMs made with each of
// vcsim.VM's options and checks the facts a preflight and the OMA's queue
// need: the hardware version, the snapshots, each disk's mode and whether
// it is raw, and the ESXi host the VM runs on.
func TestDiscoverHardwareSnapshotsAndDiskModes(t *testing.T) {
	const gib = int64(1) << 30
	sim, err := vcsim.Start(context.Background(), vcsim.Config{VMs: 1, Hosts: 3, Extra: []vcsim.VM{
		{Name: "facts-plain", Disks: []int64{gib}},
		{Name: "facts-hw4", Disks: []int64{gib}, HardwareVersion: 4, Host: 1},
		{Name: "facts-snapshots", Disks: []int64{gib}, Snapshots: 2, CBT: true, On: true, Host: 2},
		{Name: "facts-independent", Disks: []int64{gib, 2 * gib}, IndependentDisks: []int{1}, Host: 2},
		{Name: "facts-rdm", Disks: []int64{gib, 2 * gib, 3 * gib}, RDMDisks: []int{1, 2}, IndependentDisks: []int{2}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	_, vms, err := login(t, sim).Discover(context.Background(), vcsim.Datacenter, "facts-")
	if err != nil {
		t.Fatal(err)
	}
	type disk struct {
		mode string
		rdm  bool
	}
	persistent := disk{mode: "persistent"}
	tests := []struct {
		name            string
		hardwareVersion int
		snapshots       int
		snapshotDepth   int
		disks           []disk
		host            string
	}{
		{"facts-plain", vcsim.DefaultHardwareVersion, 0, 0, []disk{persistent}, "DC0_C0_H0"},
		{"facts-hw4", 4, 0, 0, []disk{persistent}, "DC0_C0_H1"},
		{"facts-snapshots", vcsim.DefaultHardwareVersion, 2, 2, []disk{persistent}, "DC0_C0_H2"},
		{"facts-independent", vcsim.DefaultHardwareVersion, 0, 0, []disk{persistent, {mode: "independent_persistent"}}, "DC0_C0_H2"},
		{"facts-rdm", vcsim.DefaultHardwareVersion, 0, 0, []disk{persistent, {"persistent", true}, {"independent_persistent", true}}, "DC0_C0_H0"},
	}
	if len(vms) != len(tests) {
		t.Fatalf("Discover found %d VMs, want %d", len(vms), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm, ok := byName(vms, tt.name)
			if !ok {
				t.Fatalf("no VM %s", tt.name)
			}
			if vm.ESXiHost != tt.host {
				t.Errorf("%s: esxi_host %q, want %q", tt.name, vm.ESXiHost, tt.host)
			}
			if vm.HardwareVersion != tt.hardwareVersion || vm.Snapshots != tt.snapshots || vm.SnapshotDepth != tt.snapshotDepth {
				t.Errorf("%s: hardware_version %d, snapshots %d, snapshot_depth %d; want %d, %d, %d", tt.name,
					vm.HardwareVersion, vm.Snapshots, vm.SnapshotDepth, tt.hardwareVersion, tt.snapshots, tt.snapshotDepth)
			}
			if len(vm.Disks) != len(tt.disks) {
				t.Fatalf("%s: disks = %+v, want %d", tt.name, vm.Disks, len(tt.disks))
			}
			for i, d := range vm.Disks {
				if got := (disk{d.Mode, d.RDM}); got != tt.disks[i] {
					t.Errorf("%s disk %d: mode %q, rdm %v; want %q, %v", tt.name, i, d.Mode, d.RDM, tt.disks[i].mode, tt.disks[i].rdm)
				}
				// Raw or not, a disk reports its capacity and file.
				wantFile := fmt.Sprintf("[LocalDS_0] %s/%s_%d.vmdk", tt.name, tt.name, i)
				if d.CapacityBytes != int64(i+1)*gib || d.File != wantFile || d.Datastore != "LocalDS_0" {
					t.Errorf("%s disk %d = %+v, want file %s on LocalDS_0", tt.name, i, d, wantFile)
				}
			}
		})
	}
}

func TestDiscoverScoping(t *testing.T) {
	sim := startSim(t)
	s := login(t, sim)
	ctx := context.Background()
	tests := []struct {
		datacenter, filter string
		want               []string
	}{
		{"DatabanxDC", "pgwin", []string{"PGWINTESTBIOS"}},
		{"", "PGWIN, gen-vm-01", []string{"gen-vm-010", "PGWINTESTBIOS", "gen-vm-011", "gen-vm-012"}}, // by path
		{"DatabanxDC", " GEN-VM-003 ", []string{"gen-vm-003"}},
		{"DatabanxDC", "nothing-like-this", nil},
	}
	for _, tt := range tests {
		ref, vms, err := s.Discover(ctx, tt.datacenter, tt.filter)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, vm := range vms {
			got = append(got, vm.Name)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") || ref.Datacenter != tt.datacenter {
			t.Errorf("Discover(%q, %q) = %v (%+v), want %v", tt.datacenter, tt.filter, got, ref, tt.want)
		}
	}
	if _, _, err := s.Discover(ctx, "NoSuchDC", ""); !errors.Is(err, vcenter.ErrNotFound) {
		t.Errorf("unknown datacenter = %v, want ErrNotFound", err)
	}
}

func TestLoginFailures(t *testing.T) {
	sim := startSim(t)
	ctx := context.Background()
	_, err := vcenter.Login(ctx, vcenter.Config{Host: sim.Host, Username: sim.Username, Password: secret.New("wrong-password"), CAFile: sim.CAFile})
	if !errors.Is(err, vcenter.ErrAuth) || err.Error() != "vCenter login failed for user administrator@vsphere.local" {
		t.Errorf("wrong password = %v", err)
	}
	// Nothing listens: refused at once.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	_, err = vcenter.Login(ctx, vcenter.Config{Host: addr, Username: "u", Password: secret.New("p"), Timeout: 3 * time.Second})
	if !errors.Is(err, vcenter.ErrUnreachable) || time.Since(start) > 5*time.Second {
		t.Errorf("closed port = %v after %s", err, time.Since(start))
	}
	// A server that accepts and never answers: bounded by the timeout.
	hang, _ := net.Listen("tcp", "127.0.0.1:0")
	defer hang.Close()
	start = time.Now()
	_, err = vcenter.Login(ctx, vcenter.Config{Host: hang.Addr().String(), Username: "u", Password: secret.New("p"), Timeout: time.Second})
	if !errors.Is(err, vcenter.ErrUnreachable) || time.Since(start) > 3*time.Second {
		t.Errorf("silent server = %v after %s", err, time.Since(start))
	}
	// An untrusted certificate is refused unless told otherwise.
	if _, err := vcenter.Login(ctx, vcenter.Config{Host: sim.Host, Username: sim.Username, Password: secret.New(sim.Password)}); !errors.Is(err, vcenter.ErrUnreachable) {
		t.Errorf("untrusted certificate = %v", err)
	}
	for _, e := range []error{err} {
		if e != nil && strings.Contains(e.Error(), sim.Password) {
			t.Error("an error holds the password")
		}
	}
}
