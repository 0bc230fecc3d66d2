package datastore

import (
	"errors"
	"strings"
	"testing"
)

// desc builds a descriptor around extent lines, the way vSphere writes one.
func desc(createType string, extents ...string) string {
	return "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=fffffffe\nparentCID=ffffffff\n" +
		"createType=\"" + createType + "\"\n\n# Extent description\n" + strings.Join(extents, "\n") +
		"\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = \"lsilogic\"\nddb.thinProvisioned = \"1\"\n"
}

func TestParseDescriptor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		size int64 // 0: len(text)
		want extent
		err  error // nil: want succeeds
		msg  string
	}{
		{name: "vmfs", text: desc("vmfs", `RW 20971520 VMFS "vm1-flat.vmdk"`),
			want: extent{file: "vm1-flat.vmdk", sectors: 20971520}},
		{name: "flat with offset", text: desc("monolithicFlat", `RW 2048 FLAT "my disk-flat.vmdk" 128`),
			want: extent{file: "my disk-flat.vmdk", sectors: 2048, offset: 128}},
		{name: "read only, CRLF, extra spaces", text: strings.ReplaceAll(desc("vmfs", `RDONLY  4096  VMFS  "a-flat.vmdk"  `), "\n", "\r\n"),
			want: extent{file: "a-flat.vmdk", sectors: 4096}},
		{name: "simulator", text: "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=00000000\nparentCID=00000000\n" +
			"createType=\"vmfs\"\n\n# Extent description (10.0GB capacity)\nRW 20971520 VMFS \"disk1-flat.vmdk\"\n\n# The Disk Data Base\n#DDB\n",
			want: extent{file: "disk1-flat.vmdk", sectors: 20971520}},
		{name: "vmfs sparse", text: desc("vmfsSparse", `RW 2048 VMFSSPARSE "vm1-000001-delta.vmdk"`),
			err: ErrUnsupported, msg: "VMFSSPARSE"},
		{name: "sparse create type", text: desc("seSparse", `RW 2048 VMFS "vm1-flat.vmdk"`),
			err: ErrUnsupported, msg: `createType "seSparse"`},
		{name: "sparse extent", text: desc("vmfs", `RW 2048 SESPARSE "vm1-sesparse.vmdk"`),
			err: ErrUnsupported, msg: "sparse extent (SESPARSE)"},
		{name: "hosted sparse", text: "KDMV\x01\x00\x00\x00" + strings.Repeat("\x00", 100),
			err: ErrUnsupported, msg: "hosted sparse"},
		{name: "child disk", text: desc("vmfs", `RW 2048 VMFS "vm1-flat.vmdk"`) + "parentFileNameHint=\"vm1.vmdk\"\n",
			err: ErrUnsupported, msg: "child disk"},
		{name: "multi extent", text: desc("twoGbMaxExtentFlat", `RW 4192256 FLAT "vm-f001.vmdk" 0`, `RW 4192256 FLAT "vm-f002.vmdk" 0`),
			err: ErrUnsupported, msg: "2 extents"},
		{name: "raw device", text: desc("vmfsPassthroughRawDeviceMap", `RW 2048 VMFSRDM "vm1-rdmp.vmdk"`),
			err: ErrUnsupported},
		{name: "unknown extent type", text: desc("vmfs", `RW 2048 ZERO`), err: ErrUnsupported, msg: `"ZERO"`},
		{name: "encrypted", text: desc("vmfs", `RW 2048 VMFS "a-flat.vmdk"`) + "encryptionKeys=\"vmware:key/list/...\"\n",
			err: ErrUnsupported, msg: "encrypted"},
		{name: "no access", text: desc("vmfs", `NOACCESS 2048 VMFS "a-flat.vmdk"`), err: ErrUnsupported},
		{name: "binary flat file", text: "\xeb\x63\x90\x00\x00\x00\x00\x00\x10\x8e\xd0\xbc", size: 10 << 30,
			err: ErrUnsupported, msg: "data (flat) file"},
		{name: "oversized", text: "# Disk DescriptorFile\n" + strings.Repeat("ddb.x = \"y\"\n", 6000),
			err: ErrDescriptor, msg: "more than"},
		{name: "oversized by size", text: desc("vmfs", `RW 2048 VMFS "a-flat.vmdk"`), size: 1 << 20,
			err: ErrDescriptor, msg: "more than"},
		{name: "garbage", text: "hello, world\nthis is not a disk\n", err: ErrDescriptor, msg: "line 1"},
		{name: "no extent", text: "version=1\ncreateType=\"vmfs\"\n", err: ErrDescriptor, msg: "no extent"},
		{name: "bad size", text: desc("vmfs", `RW many VMFS "a-flat.vmdk"`), err: ErrDescriptor, msg: "sectors"},
		{name: "unquoted name", text: desc("vmfs", `RW 2048 VMFS a-flat.vmdk`), err: ErrDescriptor, msg: "quoted"},
		{name: "absolute name", text: desc("vmfs", `RW 2048 VMFS "/vmfs/volumes/ds/a-flat.vmdk"`), err: ErrDescriptor, msg: "relative"},
		{name: "escaping name", text: desc("vmfs", `RW 2048 VMFS "../other/a-flat.vmdk"`), err: ErrDescriptor, msg: "relative"},
		{name: "bad offset", text: desc("vmfs", `RW 2048 FLAT "a-flat.vmdk" -1`), err: ErrDescriptor, msg: "offset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			size := tt.size
			if size == 0 {
				size = int64(len(tt.text))
			}
			got, err := parseDescriptor([]byte(tt.text), size)
			if tt.err == nil {
				if err != nil || got != tt.want {
					t.Fatalf("parseDescriptor = %+v, %v, want %+v", got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("parseDescriptor = %+v, %v, want an error wrapping %v containing %q", got, err, tt.err, tt.msg)
			}
		})
	}
}

func TestTrimPartialRune(t *testing.T) {
	t.Parallel()
	s := []byte("é€") // 2 + 3 bytes
	for n := range len(s) + 1 {
		got := string(trimPartialRune(s[:n]))
		want := map[int]string{0: "", 1: "", 2: "é", 3: "é", 4: "é", 5: "é€"}[n]
		if got != want {
			t.Errorf("trimPartialRune(%q) = %q, want %q", s[:n], got, want)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in                 string
		first, last, total int64
		ok                 bool
	}{
		{"bytes 0-99/1000", 0, 99, 1000, true},
		{"bytes 5-5/*", 5, 5, -1, true},
		{"bytes */1000", 0, 0, 0, false},
		{"bytes 10-5/1000", 0, 0, 0, false},
		{"bytes 0-1000/1000", 0, 0, 0, false},
		{"items 0-1/2", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	}
	for _, tt := range tests {
		f, l, tot, ok := parseContentRange(tt.in)
		if f != tt.first || l != tt.last || tot != tt.total || ok != tt.ok {
			t.Errorf("parseContentRange(%q) = %d, %d, %d, %v, want %d, %d, %d, %v", tt.in, f, l, tot, ok, tt.first, tt.last, tt.total, tt.ok)
		}
	}
}
