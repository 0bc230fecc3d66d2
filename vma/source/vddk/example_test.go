package vddk_test

import (
	"context"
	"fmt"

	"github.com/godwit/godwit/secret"
	"github.com/godwit/godwit/vma/source/vddk"
)

// Open reads one disk of a VM at a snapshot through nbdkit's vddk plugin.
// (No Output: it needs a vCenter and VMware's VDDK.)
func ExampleOpen() {
	ctx := context.Background()
	cfg := vddk.Config{
		LibDir:     "/opt/vmware-vix-disklib-distrib",
		Server:     "vcenter.example.com",
		User:       "administrator@vsphere.local",
		Password:   secret.New("secret"),
		Thumbprint: "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01",
		VM:         "vm-42",
		Snapshot:   "snapshot-7",
		File:       "[datastore1] web01/web01-000001.vmdk",
		Transports: "nbdssl:nbd",
	}
	if !vddk.Installed(ctx, cfg) {
		fmt.Println("no vddk: use the datastore source")
		return
	}
	d, err := vddk.Open(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	buf := make([]byte, 1<<20)
	if err := d.ReadAt(ctx, buf, 0); err != nil {
		fmt.Println(err)
	}
}
