package datastore_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/godwit/godwit/testkit"
)

// vcenter is an in-process simulator with a logged-in client.
type vcenter struct {
	client *vim25.Client
	// dsDir is LocalDS_0's folder on this machine.
	dsDir string
}

// dcPath is the simulator's datacenter.
const dcPath = "DC0"

// startVCenter starts simulator.VPX() over TLS and logs in with a client
// that trusts the server's certificate (not an insecure one): the disk's
// requests must carry that trust.
func startVCenter(t testing.TB) *vcenter {
	t.Helper()
	ctx := context.Background()
	m := simulator.VPX()
	if err := m.Create(); err != nil {
		t.Fatalf("create simulator model: %v", err)
	}
	t.Cleanup(m.Remove)
	m.Service.TLS = new(tls.Config)
	s := m.Service.NewServer()
	t.Cleanup(s.Close)
	ca, err := s.CertificateFile()
	if err != nil {
		t.Fatalf("simulator certificate: %v", err)
	}
	sc := soap.NewClient(s.URL, false)
	if err := sc.SetRootCAs(ca); err != nil {
		t.Fatalf("trust the simulator's certificate: %v", err)
	}
	c, err := vim25.NewClient(ctx, sc)
	if err != nil {
		t.Fatalf("connect to the simulator: %v", err)
	}
	if err := session.NewManager(c).Login(ctx, s.URL.User); err != nil {
		t.Fatalf("log in to the simulator: %v", err)
	}
	ds, err := find.NewFinder(c).Datastore(ctx, "/"+dcPath+"/datastore/LocalDS_0")
	if err != nil {
		t.Fatalf("find LocalDS_0: %v", err)
	}
	var mds mo.Datastore
	if err := ds.Properties(ctx, ds.Reference(), []string{"info"}, &mds); err != nil {
		t.Fatalf("LocalDS_0 info: %v", err)
	}
	return &vcenter{client: c, dsDir: mds.Info.GetDatastoreInfo().Url}
}

// vmDisk returns the backing and capacity of the first disk of a VM.
func (v *vcenter) vmDisk(t testing.TB, vm string) (string, int64) {
	t.Helper()
	ctx := context.Background()
	obj, err := find.NewFinder(v.client).VirtualMachine(ctx, "/"+dcPath+"/vm/"+vm)
	if err != nil {
		t.Fatalf("find VM %s: %v", vm, err)
	}
	devs, err := obj.Device(ctx)
	if err != nil {
		t.Fatalf("VM %s devices: %v", vm, err)
	}
	disks := devs.SelectByType((*types.VirtualDisk)(nil))
	if len(disks) == 0 {
		t.Fatalf("VM %s has no disk", vm)
	}
	d := disks[0].(*types.VirtualDisk)
	b := d.Backing.(types.BaseVirtualDeviceFileBackingInfo).GetVirtualDeviceFileBackingInfo()
	return b.FileName, d.CapacityInBytes
}

// local is where a "[LocalDS_0] path" file is on this machine.
func (v *vcenter) local(t testing.TB, backing string) string {
	t.Helper()
	var p object.DatastorePath
	if !p.FromString(backing) || p.Datastore != "LocalDS_0" {
		t.Fatalf("%q is not a LocalDS_0 path", backing)
	}
	return filepath.Join(v.dsDir, filepath.FromSlash(p.Path))
}

// flat is the local data file of a simulator disk ("x.vmdk": "x-flat.vmdk").
func (v *vcenter) flat(t testing.TB, backing string) string {
	t.Helper()
	return simulator.VirtualDiskBackingFileName(v.local(t, backing))
}

// writeFile writes a file under LocalDS_0 and returns its datastore path.
func (v *vcenter) writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(v.dsDir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return "[LocalDS_0] " + name
}

// makeDisk writes a descriptor dir/name.vmdk for a size-byte flat disk
// dir/name-flat.vmdk, and the flat file as a sparse file holding pieces.
// It returns the backing.
func (v *vcenter) makeDisk(t testing.TB, dir, name string, size int64, pieces map[int64][]byte) string {
	t.Helper()
	d := fmt.Sprintf("# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"vmfs\"\n\n"+
		"# Extent description\nRW %d VMFS \"%s-flat.vmdk\"\n\n# The Disk Data Base\n#DDB\n\nddb.thinProvisioned = \"1\"\n", size/512, name)
	backing := v.writeFile(t, dir+"/"+name+".vmdk", []byte(d))
	testkit.SparseFile(t, v.flat(t, backing), size, pieces)
	return backing
}

// pattern returns n bytes that are never all zero and differ by seed.
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7) ^ seed | 1
	}
	return p
}
