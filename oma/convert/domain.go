// Package convert turns a VM's replica into a guest that runs on KVM: the
// libvirt domain that describes it, from the hardware its discovery found,
// for virt-v2v-in-place's -i libvirtxml.
package convert

import (
	"cmp"
	"encoding/xml"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/godwit/godwit/events"
)

// DiskFile is where one disk of a VM is for the domain: its device key
// (events.Disk.Key), the file and its format (raw or qcow2).
type DiskFile struct {
	Key    int32
	Path   string
	Format string
}

// SourceDomain returns the libvirt domain XML of vm as it ran on vSphere,
// with its disks at files: CPUs, memory, BIOS or UEFI firmware, the disks
// in controller order (IDE, SATA, SCSI, NVMe; by controller number, then
// unit) on buses like the source's, and the network adapters with their
// MAC addresses and models. Every disk of vm needs a file; a file for no
// disk of vm is an error.
func SourceDomain(vm events.VM, files []DiskFile) ([]byte, error) {
	return domainXML(vm, files, false)
}

// TargetDomain returns the libvirt domain XML of vm converted for KVM,
// with its disks at files: as SourceDomain, but every disk on virtio (vda,
// vdb, ... in the source's controller order, the boot disk first) and
// every network adapter a virtio one with its MAC address.
func TargetDomain(vm events.VM, files []DiskFile) ([]byte, error) {
	return domainXML(vm, files, true)
}

// DiskOrder returns vm's disks in controller order (IDE, SATA, SCSI,
// NVMe; by controller number, then unit): the first is the one BIOS boots.
func DiskOrder(vm events.VM) []events.Disk {
	disks := slices.Clone(vm.Disks)
	slices.SortStableFunc(disks, func(a, b events.Disk) int {
		ka, na := controller(a.Controller)
		kb, nb := controller(b.Controller)
		return cmp.Or(cmp.Compare(ka, kb), cmp.Compare(na, nb), cmp.Compare(a.UnitNumber, b.UnitNumber))
	})
	return disks
}

// SourceBus returns the libvirt bus of the controller a disk of the source
// is on (ide, sata or scsi).
func SourceBus(d events.Disk) string {
	kind, _ := controller(d.Controller)
	return busOf[kind].bus
}

// domainXML is SourceDomain, or TargetDomain when converted.
func domainXML(vm events.VM, files []DiskFile, converted bool) ([]byte, error) {
	byKey := map[int32]DiskFile{}
	for _, f := range files {
		if !slices.ContainsFunc(vm.Disks, func(d events.Disk) bool { return d.Key == f.Key }) {
			return nil, fmt.Errorf("domain of %s: a file for disk %d, which the VM does not have", vm.Name, f.Key)
		}
		if f.Format != "raw" && f.Format != "qcow2" {
			return nil, fmt.Errorf("domain of %s: disk %d: format %q is not raw or qcow2", vm.Name, f.Key, f.Format)
		}
		byKey[f.Key] = f
	}
	d := domain{Type: "kvm", Name: domainName(vm), UUID: vm.UUID,
		Memory: memory{Unit: "MiB", Value: max(vm.MemoryMB, 1)}, VCPU: max(vm.NumCPU, 1),
		OS: osType{Type: hvm{Arch: "x86_64", Value: "hvm"}}, Features: &features{}}
	if vm.Firmware == "efi" {
		d.OS.Firmware = "efi"
	}
	counts := map[string]int{}
	for _, vd := range DiskOrder(vm) {
		f, ok := byKey[vd.Key]
		if !ok {
			return nil, fmt.Errorf("domain of %s: no file for disk %d (%s)", vm.Name, vd.Key, vd.Label)
		}
		kind, _ := controller(vd.Controller)
		bus, prefix := busOf[kind].bus, busOf[kind].prefix
		if converted {
			bus, prefix = "virtio", "vd"
		}
		dev := prefix + driveLetters(counts[prefix])
		counts[prefix]++
		d.Devices.Disks = append(d.Devices.Disks, disk{Type: "file", Device: "disk",
			Driver: driver{Name: "qemu", Type: f.Format}, Source: source{File: f.Path}, Target: target{Dev: dev, Bus: bus}})
	}
	for _, n := range vm.Networks {
		d.Devices.Interfaces = append(d.Devices.Interfaces, iface{Type: "network",
			MAC: &mac{Address: strings.ToLower(n.MACAddress)}, Source: &netSource{Network: n.Network},
			Model: &model{Type: nicModel(n.AdapterType)}})
		if converted {
			d.Devices.Interfaces[len(d.Devices.Interfaces)-1].Model.Type = "virtio"
		}
	}
	out, err := xml.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("domain of %s: %w", vm.Name, err)
	}
	return append(out, '\n'), nil
}

// Controller kinds, in the order their disks come.
const (
	kindIDE = iota
	kindSATA
	kindSCSI
	kindNVMe
)

// busOf is the libvirt bus and device name prefix of each controller kind.
// libvirt's NVMe bus is too new for virt-v2v 2.2: such a disk is on SCSI.
var busOf = map[int]struct{ bus, prefix string }{
	kindIDE:  {"ide", "hd"},
	kindSATA: {"sata", "sd"},
	kindSCSI: {"scsi", "sd"},
	kindNVMe: {"scsi", "sd"},
}

// controllerLabel is a vSphere controller's label: "IDE 0", "SATA
// controller 1", "SCSI controller 0", "NVME controller 0".
var controllerLabel = regexp.MustCompile(`(?i)^(IDE|SATA|SCSI|NVME)\D*(\d+)`)

// controller returns the kind and number of the controller a disk is on,
// from its label; an unknown label counts as SCSI controller 0, vSphere's
// usual boot controller.
func controller(label string) (kind, number int) {
	m := controllerLabel.FindStringSubmatch(strings.TrimSpace(label))
	if m == nil {
		return kindSCSI, 0
	}
	number, _ = strconv.Atoi(m[2])
	switch strings.ToUpper(m[1]) {
	case "IDE":
		return kindIDE, number
	case "SATA":
		return kindSATA, number
	case "NVME":
		return kindNVMe, number
	}
	return kindSCSI, number
}

// driveLetters names the n-th drive from 0: a, b, ..., z, aa, ab, ...
func driveLetters(n int) string {
	s := ""
	for n++; n > 0; n = (n - 1) / 26 {
		s = string(rune('a'+(n-1)%26)) + s
	}
	return s
}

// nicModel maps a vSphere adapter type to the libvirt model virt-v2v
// knows; an unknown one is e1000, which every guest drives.
func nicModel(adapter string) string {
	switch strings.ToLower(adapter) {
	case "vmxnet3", "virtualvmxnet3":
		return "vmxnet3"
	case "e1000e", "virtuale1000e":
		return "e1000e"
	case "pcnet32", "virtualpcnet32":
		return "pcnet"
	}
	return "e1000"
}

// domainName is vm's name as libvirt takes it: no slash, no control
// characters; the VM's id when nothing is left.
func domainName(vm events.VM) string {
	name := strings.Map(func(r rune) rune {
		if r == '/' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, strings.TrimSpace(vm.Name))
	if strings.Trim(name, "_") == "" {
		return vm.ID
	}
	return name
}

// The domain's XML, as much of libvirt's schema as a conversion needs.
type (
	domain struct {
		XMLName  xml.Name  `xml:"domain"`
		Type     string    `xml:"type,attr"`
		Name     string    `xml:"name"`
		UUID     string    `xml:"uuid,omitempty"`
		Memory   memory    `xml:"memory"`
		VCPU     int       `xml:"vcpu"`
		OS       osType    `xml:"os"`
		Features *features `xml:"features"`
		Devices  devices   `xml:"devices"`
	}
	memory struct {
		Unit  string `xml:"unit,attr"`
		Value int    `xml:",chardata"`
	}
	osType struct {
		Firmware string `xml:"firmware,attr,omitempty"`
		Type     hvm    `xml:"type"`
	}
	hvm struct {
		Arch  string `xml:"arch,attr"`
		Value string `xml:",chardata"`
	}
	features struct {
		ACPI struct{} `xml:"acpi"`
		APIC struct{} `xml:"apic"`
	}
	devices struct {
		Disks      []disk  `xml:"disk"`
		Interfaces []iface `xml:"interface"`
	}
	disk struct {
		Type   string `xml:"type,attr"`
		Device string `xml:"device,attr"`
		Driver driver `xml:"driver"`
		Source source `xml:"source"`
		Target target `xml:"target"`
	}
	driver struct {
		Name string `xml:"name,attr"`
		Type string `xml:"type,attr"`
	}
	source struct {
		File string `xml:"file,attr"`
	}
	target struct {
		Dev string `xml:"dev,attr"`
		Bus string `xml:"bus,attr"`
	}
	iface struct {
		Type   string     `xml:"type,attr"`
		MAC    *mac       `xml:"mac"`
		Source *netSource `xml:"source"`
		Model  *model     `xml:"model"`
	}
	mac struct {
		Address string `xml:"address,attr"`
	}
	netSource struct {
		Network string `xml:"network,attr"`
	}
	model struct {
		Type string `xml:"type,attr"`
	}
)
