package datastore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/godwit/godwit/vma/source/datastore"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// Open a VM's disk by its backing and capacity, as discovery reports them,
// and read from it. The simulator's flat files start empty: this one is
// made the disk's size and given a greeting first.
func ExampleOpen() {
	simulator.Run(func(ctx context.Context, c *vim25.Client) error {
		vm, err := find.NewFinder(c).VirtualMachine(ctx, "DC0_H0_VM0")
		if err != nil {
			return err
		}
		devs, err := vm.Device(ctx)
		if err != nil {
			return err
		}
		disk := devs.SelectByType((*types.VirtualDisk)(nil))[0].(*types.VirtualDisk)
		backing := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo) // "[LocalDS_0] DC0_H0_VM0/disk1.vmdk"

		var ds mo.Datastore // where the simulator keeps LocalDS_0
		if err := mo.RetrieveProperties(ctx, c, c.ServiceContent.PropertyCollector, *backing.Datastore, &ds); err != nil {
			return err
		}
		flat := filepath.Join(ds.Info.GetDatastoreInfo().Url, "DC0_H0_VM0", "disk1-flat.vmdk")
		if err := os.Truncate(flat, disk.CapacityInBytes); err != nil {
			return err
		}
		f, err := os.OpenFile(flat, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteAt([]byte("hello, disk"), 1<<30)
		f.Close()
		if err != nil {
			return err
		}

		d, err := datastore.Open(ctx, c, "DC0", backing.FileName, disk.CapacityInBytes)
		if err != nil {
			return err
		}
		defer d.Close()
		p := make([]byte, 11)
		if err := d.ReadAt(ctx, p, 1<<30); err != nil {
			return err
		}
		fmt.Printf("%s, %d bytes: %q\n", d.File(), d.Size(), p)
		return nil
	})
	// Output: [LocalDS_0] DC0_H0_VM0/disk1-flat.vmdk, 10737418240 bytes: "hello, disk"
}
