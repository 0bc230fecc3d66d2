package vcsim

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// Defaults of Config.
const (
	DefaultAddr     = "127.0.0.1:8989"
	DefaultUsername = "administrator@vsphere.local"
	DefaultPassword = "godwit-dev"
	Datacenter      = "DatabanxDC"
	SeedVM          = "PGWINTESTBIOS"
	// DatastoreName is the datastore that holds the VMs.
	DatastoreName = "LocalDS_0"
)

// Config configures Start. The zero value listens on a free loopback port
// with the default credentials and 12 generated VMs.
type Config struct {
	// Addr is the listen address; "" means a free loopback port.
	Addr     string
	Username string
	Password string
	// VMs is how many VMs to generate besides the seed VM; 0 means 12.
	VMs int
	// ModelVMs adds that many plain VMs (model-vm-0001..., one disk and one
	// NIC each, powered on): the quick way to a large inventory.
	ModelVMs int
	// WideVMs adds that many VMs with names of 80 characters (vSphere's
	// longest), WideDisks disks and WideNICs network adapters each: about
	// 6 KiB of discovery each, so that under 200 make a discovery larger
	// than NATS's 1 MiB max payload, where it takes 2,000 plain VMs.
	WideVMs int
	// Datastore is the directory that holds the datastore, created if
	// missing; its VMs' files live in <Datastore>/<VM name>. Started again
	// on the same directory, the simulator keeps the disks' content and
	// paths. "" means a temporary directory that Close removes. ModelVMs
	// need the temporary one.
	Datastore string
	// DiskData is how many bytes of content each new disk of the seed and
	// generated VMs gets (see the package doc); 0 means DefaultDiskData, negative
	// none. The wide VMs' disks get none; the model VMs' disks are left as
	// the simulator makes them.
	DiskData int64
	// ChangedAreasWindow and ChangedAreasMax bound one answer of
	// QueryChangedDiskAreas: at most that many bytes of the disk and that
	// many areas. 0 means DefaultChangedAreasWindow and
	// DefaultChangedAreasMax.
	ChangedAreasWindow int64
	ChangedAreasMax    int
	// ChangeIDs is how many change ids, the newest, the simulator
	// remembers per disk (with a block map each, see the package doc);
	// older ones are refused like those from before a reset. 0 means
	// DefaultChangeIDs.
	ChangeIDs int
	// Hosts is how many ESXi hosts the datacenter's one cluster has (named
	// DC0_C0_H0, DC0_C0_H1...); 0 means 1. The seed, generated and model
	// VMs run on the first; an Extra VM on the one its Host says.
	Hosts int
	// Extra adds VMs of the caller's shape in the datacenter's vm folder,
	// their disks with DiskData bytes of content like the others.
	Extra []VM
	// BeforeSnapshot, if not nil, is called with the VM's name as a
	// snapshot is asked for, before it is taken; the call waits for it.
	// Tests use it to look at what a client does meanwhile.
	BeforeSnapshot func(vm string)
	// GuestShutdown, if not nil, is asked with the VM's name when its
	// guest is asked to shut down (ShutdownGuest): false makes the guest
	// ignore it, as a hung guest does, and the VM stays on.
	GuestShutdown func(vm string) bool
}

// VM is the shape of a VM that Config.Extra adds.
type VM struct {
	Name string
	// Disks are the capacities of its disks, in bytes (multiples of 1 KiB).
	Disks []int64
	// CBT turns change tracking on; On powers it on.
	CBT, On bool
	// HardwareVersion is its virtual hardware version: 4 makes
	// config.version "vmx-04". 0 means the simulator's default,
	// DefaultHardwareVersion.
	HardwareVersion int
	// Host is the index of the ESXi host it runs on, among Config.Hosts.
	Host int
	// Snapshots is how many snapshots it is created with, a chain: each
	// one the child of the one before, the last one current. They are
	// taken through CreateSnapshot_Task, after the disks get their content
	// and the VM is powered on (if On), as a client takes them: with CBT,
	// each moves the disks' change ids, and Config.BeforeSnapshot is
	// called for each.
	Snapshots int
	// IndependentDisks are indexes into Disks of the disks whose mode is
	// independent_persistent; the others are persistent.
	IndependentDisks []int
	// RDMDisks are indexes into Disks of the disks that are raw device
	// mappings (VirtualDiskRawDiskMappingVer1BackingInfo, virtual
	// compatibility mode) instead of flat files. The simulator keeps a
	// mapping's descriptor and a flat file, which holds the LUN's content
	// like a flat disk's, but it does not track its changes (no changeId).
	RDMDisks []int
	// GuestID is its guest OS as vSphere names it (config.guestId); ""
	// means otherLinux64Guest.
	GuestID string
	// Firmware is bios ("") or efi.
	Firmware string
	// Image, if set, is a raw disk image (such as a test guest that
	// boots) whose bytes become its first disk's content, in place of
	// Config.DiskData's; the disk must be at least as large.
	Image string
}

// DefaultHardwareVersion is the hardware version of the simulator's VMs
// when VM.HardwareVersion is 0: govmomi's simulator's, config.version
// "vmx-13".
const DefaultHardwareVersion = 13

// Shape of a wide VM (Config.WideVMs).
const (
	WideDisks = 15
	WideNICs  = 10
)

// Simulator is a running simulated vCenter.
type Simulator struct {
	// Host is host:port, what a VMA is given as "vcenter".
	Host string
	// URL is the SDK URL, without credentials.
	URL *url.URL
	// CAFile is a PEM file with the simulator's self-signed certificate.
	CAFile             string
	Username, Password string
	// DatastoreDir is the local directory of the datastore DatastoreName.
	DatastoreDir string

	model  *simulator.Model
	server *simulator.Server
}

// Start builds the inventory and serves it over HTTPS. Calls must not
// overlap: govmomi's simulator writes state shared by its instances when
// it starts a server.
func Start(ctx context.Context, cfg Config) (*Simulator, error) {
	if cfg.Username == "" {
		cfg.Username = DefaultUsername
	}
	if cfg.Password == "" {
		cfg.Password = DefaultPassword
	}
	if cfg.VMs == 0 {
		cfg.VMs = 12
	}
	if cfg.DiskData == 0 {
		cfg.DiskData = DefaultDiskData
	}
	if cfg.ChangedAreasWindow <= 0 {
		cfg.ChangedAreasWindow = DefaultChangedAreasWindow
	}
	if cfg.ChangedAreasMax <= 0 {
		cfg.ChangedAreasMax = DefaultChangedAreasMax
	}
	if cfg.ChangeIDs <= 0 {
		cfg.ChangeIDs = DefaultChangeIDs
	}
	if cfg.Datastore != "" {
		if cfg.ModelVMs > 0 {
			return nil, errors.New("simulated vCenter: ModelVMs need the temporary datastore, not Datastore")
		}
		dir, err := filepath.Abs(cfg.Datastore)
		if err == nil {
			err = os.MkdirAll(dir, 0o700)
		}
		if err != nil {
			return nil, fmt.Errorf("simulated vCenter: datastore: %w", err)
		}
		cfg.Datastore = dir
	}
	if cfg.Addr != "" {
		// The simulator panics on a taken address: check it first.
		l, err := net.Listen("tcp", cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("simulated vCenter: %w", err)
		}
		l.Close()
	}
	model := simulator.VPX()
	if cfg.Hosts <= 0 {
		cfg.Hosts = 1
	}
	model.Datacenter, model.Cluster, model.ClusterHost, model.Host = 1, 1, cfg.Hosts, 0
	model.Machine = 0 // populate makes cfg.ModelVMs, many at once
	model.Portgroup = 1
	if cfg.Datastore != "" {
		model.Datastore = 0 // populate makes LocalDS_0 on cfg.Datastore
	}
	if err := model.Create(); err != nil {
		return nil, fmt.Errorf("create simulator model: %w", err)
	}
	hook := newCBTHook(cfg.ChangedAreasWindow, cfg.ChangedAreasMax, cfg.ChangeIDs)
	hook.beforeSnapshot = cfg.BeforeSnapshot
	hook.guestShutdown = cfg.GuestShutdown
	model.Map().Handler = hook.handle
	model.Service.TLS = new(tls.Config)
	model.Service.Listen = &url.URL{Host: cfg.Addr, User: url.UserPassword(cfg.Username, cfg.Password)}
	server := model.Service.NewServer()
	caFile, err := server.CertificateFile()
	if err != nil {
		server.Close()
		model.Remove()
		return nil, fmt.Errorf("simulator certificate: %w", err)
	}
	u := *server.URL
	u.User = nil
	sim := &Simulator{Host: u.Host, URL: &u, CAFile: caFile, Username: cfg.Username, Password: cfg.Password,
		model: model, server: server}
	c, err := govmomi.NewClient(ctx, server.URL, true)
	if err == nil {
		sim.DatastoreDir, err = populate(ctx, c.Client, cfg)
		_ = c.Logout(ctx)
	}
	if err != nil {
		sim.Close()
		return nil, fmt.Errorf("populate simulator: %w", err)
	}
	return sim, nil
}

// Close stops the simulator and removes its files, but not those in
// Config.Datastore.
func (s *Simulator) Close() {
	s.server.Close()
	s.model.Remove()
}

// populate renames the datacenter, makes the datastore on cfg.Datastore if
// set, and creates the seed VM, the generated VMs and the wide ones. It
// returns the datastore's local directory.
func populate(ctx context.Context, c *vim25.Client, cfg Config) (string, error) {
	n, wide := cfg.VMs, cfg.WideVMs
	finder := find.NewFinder(c, false)
	dc, err := finder.Datacenter(ctx, "DC0")
	if err != nil {
		return "", err
	}
	task, err := dc.Rename(ctx, Datacenter)
	if err := wait(ctx, task, err); err != nil {
		return "", fmt.Errorf("rename datacenter: %w", err)
	}
	dc, err = finder.Datacenter(ctx, Datacenter)
	if err != nil {
		return "", err
	}
	finder.SetDatacenter(dc)
	folders, err := dc.Folders(ctx)
	if err != nil {
		return "", err
	}
	linux, err := folders.VmFolder.CreateFolder(ctx, "Linux")
	if err != nil {
		return "", fmt.Errorf("create folder: %w", err)
	}
	pool, err := finder.DefaultResourcePool(ctx)
	if err != nil {
		return "", err
	}
	hosts, err := finder.HostSystemList(ctx, "*")
	if err != nil {
		return "", fmt.Errorf("list hosts: %w", err)
	}
	slices.SortFunc(hosts, func(a, b *object.HostSystem) int { return strings.Compare(a.Name(), b.Name()) })
	if cfg.Datastore != "" {
		if err := createDatastore(ctx, finder, cfg.Datastore); err != nil {
			return "", fmt.Errorf("create datastore on %s: %w", cfg.Datastore, err)
		}
	}
	ds, err := finder.Datastore(ctx, DatastoreName)
	if err != nil {
		return "", err
	}
	var mds mo.Datastore
	if err := ds.Properties(ctx, ds.Reference(), []string{"info"}, &mds); err != nil {
		return "", fmt.Errorf("datastore directory: %w", err)
	}
	dsDir := mds.Info.GetDatastoreInfo().Url
	vmNet, err := finder.Network(ctx, "VM Network")
	if err != nil {
		return "", err
	}
	dvpg, err := finder.Network(ctx, "DC0_DVPG0")
	if err != nil {
		return "", err
	}
	const gib = int64(1) << 30
	specs := []vmSpec{{
		name: SeedVM, folder: folders.VmFolder, guest: "windows2019srv_64Guest", firmware: "bios", cpus: 4, memMB: 8192,
		disks: []int64{40 * gib, 100 * gib}, nets: []object.NetworkReference{vmNet}, on: true, cbt: true,
		data: cfg.DiskData,
	}}
	for i := range n {
		s := vmSpec{
			name: fmt.Sprintf("gen-vm-%03d", i+1), folder: folders.VmFolder, guest: "otherLinux64Guest",
			firmware: []string{"bios", "efi"}[i%2], cpus: int32(1 + i%4), memMB: int32(1024 * (1 + i%8)),
			on: i%3 != 0, cbt: i%2 == 0, nets: []object.NetworkReference{vmNet}, data: cfg.DiskData,
		}
		for d := 0; d <= i%3; d++ {
			s.disks = append(s.disks, int64(d+1)*gib+int64(i)*(256<<20))
		}
		if i%4 == 1 {
			s.folder = linux
			s.nets = append(s.nets, dvpg)
		}
		specs = append(specs, s)
	}
	for _, x := range cfg.Extra {
		s := vmSpec{name: x.Name, folder: folders.VmFolder, guest: "otherLinux64Guest", firmware: "bios",
			cpus: 2, memMB: 2048, disks: x.Disks, nets: []object.NetworkReference{vmNet}, on: x.On, cbt: x.CBT, data: cfg.DiskData,
			hwVersion: x.HardwareVersion, snapshots: x.Snapshots, image: x.Image}
		if x.GuestID != "" {
			s.guest = x.GuestID
		}
		if x.Firmware != "" {
			s.firmware = x.Firmware
		}
		if s.independent, err = diskIndexes(x.IndependentDisks, len(x.Disks)); err != nil {
			return "", fmt.Errorf("VM %s: IndependentDisks: %w", x.Name, err)
		}
		if s.rdm, err = diskIndexes(x.RDMDisks, len(x.Disks)); err != nil {
			return "", fmt.Errorf("VM %s: RDMDisks: %w", x.Name, err)
		}
		if x.HardwareVersion < 0 || x.Snapshots < 0 {
			return "", fmt.Errorf("VM %s: negative HardwareVersion or Snapshots", x.Name)
		}
		if x.Host < 0 || x.Host >= len(hosts) {
			return "", fmt.Errorf("VM %s: Host %d out of range [0, %d)", x.Name, x.Host, len(hosts))
		}
		s.host = hosts[x.Host]
		specs = append(specs, s)
	}
	// These first, one at a time, so that they get the same morefs each time.
	for _, s := range specs {
		if s.host == nil {
			s.host = hosts[0]
		}
		if err := createVM(ctx, s, pool, ds, dsDir); err != nil {
			return "", fmt.Errorf("create VM %s: %w", s.name, err)
		}
	}
	specs = specs[:0]
	for i := range wide {
		s := vmSpec{name: wideName(i + 1), folder: folders.VmFolder, guest: "otherLinux64Guest",
			firmware: "efi", cpus: 8, memMB: 16384, cbt: true, data: -1}
		for d := range WideDisks {
			s.disks = append(s.disks, int64(d+1)*gib)
		}
		for k := range WideNICs {
			s.nets = append(s.nets, []object.NetworkReference{vmNet, dvpg}[k%2])
		}
		specs = append(specs, s)
	}
	for i := range cfg.ModelVMs {
		specs = append(specs, vmSpec{name: fmt.Sprintf("model-vm-%04d", i+1), folder: folders.VmFolder, guest: "otherGuest",
			firmware: "bios", cpus: 1, memMB: 32, disks: []int64{10 * gib}, nets: []object.NetworkReference{vmNet}, on: true, data: -1})
	}
	for i := range specs {
		specs[i].host = hosts[0]
	}
	// The simulator answers a task's end on a 20 ms tick: one at a time,
	// 5,000 VMs took minutes. Made createWorkers at a time, in any order.
	return dsDir, createVMs(ctx, specs, pool, ds, dsDir)
}

// createWorkers is how many VMs createVMs makes at once.
const createWorkers = 16

// createVMs creates the VMs of specs, createWorkers at a time. It returns
// the first error, after the VMs under way are made.
func createVMs(ctx context.Context, specs []vmSpec, pool *object.ResourcePool, ds *object.Datastore, dsDir string) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan vmSpec)
	var wg sync.WaitGroup
	for range min(createWorkers, len(specs)) {
		wg.Go(func() {
			for s := range next {
				if err := createVM(ctx, s, pool, ds, dsDir); err != nil {
					cancel(fmt.Errorf("create VM %s: %w", s.name, err))
				}
			}
		})
	}
feed:
	for _, s := range specs {
		select {
		case next <- s:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// createDatastore makes the datastore DatastoreName on the directory dir
// of the datacenter's one host.
func createDatastore(ctx context.Context, finder *find.Finder, dir string) error {
	host, err := finder.DefaultHostSystem(ctx)
	if err != nil {
		return err
	}
	dss, err := host.ConfigManager().DatastoreSystem(ctx)
	if err != nil {
		return err
	}
	_, err = dss.CreateLocalDatastore(ctx, DatastoreName, dir)
	return err
}

// wideName names a wide VM with vSphere's longest name, 80 characters.
func wideName(n int) string {
	name := fmt.Sprintf("wide-vm-%04d-", n)
	return name + strings.Repeat("x", 80-len(name))
}

type vmSpec struct {
	name     string
	folder   *object.Folder
	guest    string
	firmware string
	cpus     int32
	memMB    int32
	disks    []int64
	nets     []object.NetworkReference
	on, cbt  bool
	// host is the ESXi host it runs on (the simulator would pick one at
	// random for nil).
	host *object.HostSystem
	// data is how many bytes of content new disks get (fillDisk).
	data int64
	// hwVersion is the hardware version, 0 for the simulator's default.
	hwVersion int
	// snapshots is how many snapshots to take, a chain.
	snapshots int
	// independent and rdm hold the indexes of the disks that are
	// independent_persistent and raw device mappings.
	independent, rdm map[int]bool
	// image is VM.Image.
	image string
}

// diskIndexes checks that indexes are indexes into n disks and returns
// them as a set.
func diskIndexes(indexes []int, n int) (map[int]bool, error) {
	set := make(map[int]bool, len(indexes))
	for _, i := range indexes {
		if i < 0 || i >= n {
			return nil, fmt.Errorf("disk index %d out of range [0, %d)", i, n)
		}
		set[i] = true
	}
	return set, nil
}

// disksPerController is how many disks a SCSI controller takes: units 0
// to 15 but 7, which is the controller's own.
const disksPerController = 15

// createVM creates the VM s in the directory named after it on ds, whose
// local directory is dsDir, and gives its new disks their content. Disks
// already in that directory, from an earlier run on the same datastore, are
// attached with their content.
func createVM(ctx context.Context, s vmSpec, pool *object.ResourcePool, ds *object.Datastore, dsDir string) error {
	// An earlier run left the VM's directory with an empty .vmx and a log,
	// which the simulator refuses to create again; they hold nothing.
	for _, f := range []string{s.name + ".vmx", "vmware.log"} {
		if err := os.Remove(filepath.Join(dsDir, s.name, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale file: %w", err)
		}
	}
	existing := make(map[types.BaseVirtualDevice]bool)
	var devices object.VirtualDeviceList
	var ctls []types.BaseVirtualController
	for i := range (len(s.disks) + disksPerController - 1) / disksPerController {
		scsi, err := devices.CreateSCSIController("pvscsi")
		if err != nil {
			return err
		}
		scsi.GetVirtualDevice().DeviceInfo = &types.Description{Label: fmt.Sprintf("SCSI controller %d", i), Summary: "VMware paravirtual SCSI"}
		scsi.(types.BaseVirtualSCSIController).GetVirtualSCSIController().BusNumber = int32(i)
		devices = append(devices, scsi)
		ctls = append(ctls, scsi.(types.BaseVirtualController))
	}
	for i, size := range s.disks {
		rel := fmt.Sprintf("%s/%s_%d.vmdk", s.name, s.name, i)
		disk := devices.CreateDisk(ctls[i/disksPerController], ds.Reference(), ds.Path(rel))
		disk.CapacityInKB = size / 1024
		disk.CapacityInBytes = size
		backing := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		backing.ThinProvisioned = types.NewBool(i%2 == 0)
		if s.independent[i] {
			backing.DiskMode = string(types.VirtualDiskModeIndependent_persistent)
		}
		if s.rdm[i] {
			disk.Backing = rdmBacking(backing, s.name, i)
		}
		if _, err := os.Stat(filepath.Join(dsDir, rel)); err == nil {
			existing[disk] = true
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("disk %s: %w", rel, err)
		}
		disk.DeviceInfo = &types.Description{Label: fmt.Sprintf("Hard disk %d", i+1), Summary: fmt.Sprintf("%d KB", size/1024)}
		devices = append(devices, disk)
	}
	for i, n := range s.nets {
		backing, err := n.EthernetCardBackingInfo(ctx)
		if err != nil {
			return err
		}
		nic, err := devices.CreateEthernetCard("vmxnet3", backing)
		if err != nil {
			return err
		}
		nic.GetVirtualDevice().DeviceInfo = &types.Description{Label: fmt.Sprintf("Network adapter %d", i+1), Summary: "vmxnet3"}
		devices = append(devices, nic)
	}
	change, err := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	if err != nil {
		return err
	}
	for _, c := range change {
		if spec := c.GetVirtualDeviceConfigSpec(); spec != nil {
			if _, ok := spec.Device.(*types.VirtualDisk); ok {
				spec.FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate
				if existing[spec.Device] {
					spec.FileOperation = "" // attach it as it is
				}
			}
		}
	}
	spec := types.VirtualMachineConfigSpec{
		Name: s.name, GuestId: s.guest, Firmware: s.firmware, NumCPUs: s.cpus, MemoryMB: int64(s.memMB),
		Files:                 &types.VirtualMachineFileInfo{VmPathName: ds.Path(fmt.Sprintf("%s/%s.vmx", s.name, s.name))},
		DeviceChange:          change,
		ChangeTrackingEnabled: types.NewBool(s.cbt),
	}
	if s.hwVersion > 0 {
		spec.Version = fmt.Sprintf("vmx-%02d", s.hwVersion)
	}
	task, err := s.folder.CreateVM(ctx, spec, pool, s.host)
	if err != nil {
		return err
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		return err
	}
	vm := object.NewVirtualMachine(task.Client(), info.Result.(types.ManagedObjectReference))
	if err := fillDisks(ctx, vm, s.name, dsDir, s.data); err != nil {
		return err
	}
	if s.image != "" {
		if err := imageDisk(ctx, vm, dsDir, s.image); err != nil {
			return err
		}
	}
	if s.on {
		task, err := vm.PowerOn(ctx)
		if err := wait(ctx, task, err); err != nil {
			return err
		}
	}
	for i := range s.snapshots {
		task, err := vm.CreateSnapshot(ctx, fmt.Sprintf("vcsim-%d", i+1), "made by vcsim.VM.Snapshots", false, false)
		if err := wait(ctx, task, err); err != nil {
			return fmt.Errorf("snapshot %d: %w", i+1, err)
		}
	}
	return nil
}

// rdmBacking turns the flat backing of disk i of VM vm into a raw device
// mapping's, in virtual compatibility mode, with the same file (the
// mapping's descriptor) and disk mode, and a made-up LUN.
func rdmBacking(flat *types.VirtualDiskFlatVer2BackingInfo, vm string, i int) *types.VirtualDiskRawDiskMappingVer1BackingInfo {
	sum := sha256.Sum256(fmt.Appendf(nil, "godwit vcsim rdm\x00%s\x00%d", vm, i))
	lun := fmt.Sprintf("%x", sum[:16])
	return &types.VirtualDiskRawDiskMappingVer1BackingInfo{
		VirtualDeviceFileBackingInfo: flat.VirtualDeviceFileBackingInfo,
		LunUuid:                      "0200000000" + lun + "566972747561",
		DeviceName:                   "/vmfs/devices/disks/naa." + lun,
		CompatibilityMode:            string(types.VirtualDiskCompatibilityModeVirtualMode),
		DiskMode:                     flat.DiskMode,
	}
}

// wait waits for a task.
func wait(ctx context.Context, task *object.Task, err error) error {
	if err != nil {
		return err
	}
	if task == nil {
		return errors.New("no task")
	}
	return task.Wait(ctx)
}
