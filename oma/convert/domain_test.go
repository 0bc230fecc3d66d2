package convert_test

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/convert"
)

// parsed is what the tests read back from a domain.
type parsed struct {
	Name   string `xml:"name"`
	UUID   string `xml:"uuid"`
	Memory struct {
		Unit  string `xml:"unit,attr"`
		Value int    `xml:",chardata"`
	} `xml:"memory"`
	VCPU int `xml:"vcpu"`
	OS   struct {
		Firmware string `xml:"firmware,attr"`
		Type     string `xml:"type"`
	} `xml:"os"`
	Disks []struct {
		Driver struct {
			Type string `xml:"type,attr"`
		} `xml:"driver"`
		Source struct {
			File string `xml:"file,attr"`
		} `xml:"source"`
		Target struct {
			Dev string `xml:"dev,attr"`
			Bus string `xml:"bus,attr"`
		} `xml:"target"`
	} `xml:"devices>disk"`
	NICs []struct {
		MAC struct {
			Address string `xml:"address,attr"`
		} `xml:"mac"`
		Source struct {
			Network string `xml:"network,attr"`
		} `xml:"source"`
		Model struct {
			Type string `xml:"type,attr"`
		} `xml:"model"`
	} `xml:"devices>interface"`
}

func TestSourceDomain(t *testing.T) {
	vm := events.VM{ID: "vm-42", Name: "db/01 <prod> & co", UUID: "4213c8e6-1a2b-3c4d-5e6f-0123456789ab",
		NumCPU: 4, MemoryMB: 8192, Firmware: "efi",
		Disks: []events.Disk{
			{Key: 2002, Label: "Hard disk 3", Controller: "SCSI controller 1", UnitNumber: 0},
			{Key: 2001, Label: "Hard disk 2", Controller: "SCSI controller 0", UnitNumber: 1},
			{Key: 2000, Label: "Hard disk 1", Controller: "SCSI controller 0", UnitNumber: 0},
			{Key: 3000, Label: "Hard disk 4", Controller: "IDE 0", UnitNumber: 0},
			{Key: 16000, Label: "Hard disk 5", Controller: "SATA controller 0", UnitNumber: 2},
		},
		Networks: []events.Network{
			{Label: "Network adapter 1", Network: "VM Network", MACAddress: "00:50:56:AB:CD:01", AdapterType: "vmxnet3"},
			{Label: "Network adapter 2", Network: "backup", MACAddress: "00:50:56:ab:cd:02", AdapterType: "E1000"},
		},
	}
	var files []convert.DiskFile
	for _, d := range vm.Disks {
		files = append(files, convert.DiskFile{Key: d.Key, Path: "/var/lib/godwit/cutover/" + d.Label + ".qcow2", Format: "qcow2"})
	}
	out, err := convert.SourceDomain(vm, files)
	if err != nil {
		t.Fatal(err)
	}
	var p parsed
	if err := xml.Unmarshal(out, &p); err != nil {
		t.Fatalf("the domain does not parse: %v\n%s", err, out)
	}
	if p.Name != "db_01 <prod> & co" || p.UUID != vm.UUID || p.Memory.Value != 8192 || p.Memory.Unit != "MiB" ||
		p.VCPU != 4 || p.OS.Firmware != "efi" || p.OS.Type != "hvm" {
		t.Errorf("domain = %+v\n%s", p, out)
	}
	// IDE first, then SATA, then SCSI by controller and unit.
	want := []struct{ label, dev, bus string }{
		{"Hard disk 4", "hda", "ide"}, {"Hard disk 5", "sda", "sata"},
		{"Hard disk 1", "sdb", "scsi"}, {"Hard disk 2", "sdc", "scsi"}, {"Hard disk 3", "sdd", "scsi"},
	}
	if len(p.Disks) != len(want) {
		t.Fatalf("%d disks, want %d\n%s", len(p.Disks), len(want), out)
	}
	for i, w := range want {
		d := p.Disks[i]
		if !strings.HasSuffix(d.Source.File, "/"+w.label+".qcow2") || d.Target.Dev != w.dev || d.Target.Bus != w.bus || d.Driver.Type != "qcow2" {
			t.Errorf("disk %d = %s on %s %s (%s), want %s on %s %s", i, d.Source.File, d.Target.Bus, d.Target.Dev, d.Driver.Type, w.label, w.bus, w.dev)
		}
	}
	if len(p.NICs) != 2 || p.NICs[0].MAC.Address != "00:50:56:ab:cd:01" || p.NICs[0].Model.Type != "vmxnet3" ||
		p.NICs[1].Source.Network != "backup" || p.NICs[1].Model.Type != "e1000" {
		t.Errorf("interfaces = %+v", p.NICs)
	}

	bios := vm
	bios.Firmware = "bios"
	if out, err := convert.SourceDomain(bios, files); err != nil || strings.Contains(string(out), "firmware=") {
		t.Errorf("a BIOS VM's domain names a firmware (%v):\n%s", err, out)
	}
}

func TestSourceDomainRefuses(t *testing.T) {
	vm := events.VM{ID: "vm-1", Name: "a", Disks: []events.Disk{{Key: 2000}, {Key: 2001}}}
	for _, tt := range []struct {
		name  string
		files []convert.DiskFile
		want  string
	}{
		{"a disk without a file", []convert.DiskFile{{Key: 2000, Path: "/a", Format: "raw"}}, "no file for disk 2001"},
		{"a file for no disk", []convert.DiskFile{{Key: 2000, Path: "/a", Format: "raw"}, {Key: 2001, Path: "/b", Format: "raw"}, {Key: 9, Path: "/c", Format: "raw"}}, "disk 9, which the VM does not have"},
		{"a format", []convert.DiskFile{{Key: 2000, Path: "/a", Format: "vmdk"}, {Key: 2001, Path: "/b", Format: "raw"}}, `format "vmdk"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := convert.SourceDomain(vm, tt.files); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want one saying %q", err, tt.want)
			}
		})
	}
}
