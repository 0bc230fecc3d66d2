package datastore_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/file"
	"github.com/godwit/godwit/vma/source/datastore"
)

// open opens a disk and closes it at the end of the test.
func open(t testing.TB, v *vcenter, backing string, capacity int64) *datastore.Disk {
	t.Helper()
	d, err := datastore.Open(t.Context(), v.client, dcPath, backing, capacity)
	if err != nil {
		t.Fatalf("Open(%q) = %v", backing, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestReadVMDisk(t *testing.T) {
	v := startVCenter(t)
	backing, capacity := v.vmDisk(t, "DC0_H0_VM0")
	pieces := map[int64][]byte{
		0:                 pattern(4096, 1),
		1<<20 - 100:       pattern(300, 2), // across a MiB boundary
		5<<30 + 12345:     pattern(64<<10, 3),
		capacity - 4096:   pattern(4096, 4), // the last bytes
		capacity/2 + 1<<9: pattern(1, 5),
	}
	flat := v.flat(t, backing)
	testkit.SparseFile(t, flat, capacity, pieces)
	d := open(t, v, backing, capacity)
	if d.Size() != capacity || d.File() != "[LocalDS_0] DC0_H0_VM0/disk1-flat.vmdk" {
		t.Fatalf("Size, File = %d, %q, want %d, the flat file", d.Size(), d.File(), capacity)
	}
	for off, want := range pieces {
		got := make([]byte, len(want))
		if err := d.ReadAt(t.Context(), got, off); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ReadAt(%d bytes at %d) = %v, data equal %v", len(want), off, err, bytes.Equal(got, want))
		}
	}

	// Many reads in flight around the data and across the holes, each
	// compared with the file itself.
	local, err := os.Open(flat)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	offsets := make([]int64, 0, len(pieces))
	for off := range pieces {
		offsets = append(offsets, off)
	}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 42))
			for range 4 {
				n := 1 + r.Int64N(256<<10)
				off := min(max(offsets[r.IntN(len(offsets))]-128<<10+r.Int64N(256<<10), 0), capacity-n)
				got, want := make([]byte, n), make([]byte, n)
				if _, err := local.ReadAt(want, off); err != nil {
					t.Errorf("read the flat file at %d: %v", off, err)
					return
				}
				if err := d.ReadAt(t.Context(), got, off); err != nil {
					t.Errorf("ReadAt(%d bytes at %d) = %v", n, off, err)
					return
				}
				if !bytes.Equal(got, want) {
					t.Errorf("ReadAt(%d bytes at %d): data differs from the file", n, off)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestCopy(t *testing.T) {
	v := startVCenter(t)
	const size = 24 << 20
	backing := v.makeDisk(t, "copy", "disk", size, map[int64][]byte{
		0:            pattern(1<<20+3, 1),
		7<<20 + 5:    pattern(100<<10, 2),
		15 << 20:     pattern(3<<20, 3),
		size - 512:   pattern(512, 4),
		13<<20 + 511: pattern(2, 5),
	})
	d := open(t, v, backing, size)
	out := filepath.Join(t.TempDir(), "copy.raw")
	dst, err := file.Create(out, size)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	res, err := copier.Copy(t.Context(), dst, d, []copier.Area{{Offset: 0, Length: size}}, copier.Config{})
	if err != nil {
		t.Fatalf("Copy = %v", err)
	}
	if res.Done != size || res.Zero == 0 || res.Zero >= size {
		t.Errorf("Copy = %+v, want all %d bytes done, some of them zero", res.Progress, size)
	}
	want, err := os.ReadFile(v.flat(t, backing))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the copy differs from the disk")
	}
}

func TestOpenRefuses(t *testing.T) {
	v := startVCenter(t)
	const mib = 1 << 20
	flatBacking := v.makeDisk(t, "ok", "flat", mib, map[int64][]byte{0: pattern(4096, 1)})
	shortBacking := v.makeDisk(t, "short", "short", 2*mib, nil)
	if err := os.Truncate(v.flat(t, shortBacking), mib); err != nil {
		t.Fatal(err)
	}
	emptyBacking, emptyCap := v.vmDisk(t, "DC0_H0_VM1") // as the simulator made it: an empty flat file
	sparse := v.writeFile(t, "bad/sparse.vmdk", []byte("# Disk DescriptorFile\nversion=1\nparentCID=ffffffff\n"+
		"createType=\"vmfsSparse\"\nRW 2048 VMFSSPARSE \"sparse-delta.vmdk\"\n"))
	multi := v.writeFile(t, "bad/multi.vmdk", []byte("# Disk DescriptorFile\ncreateType=\"twoGbMaxExtentFlat\"\n"+
		"RW 1024 FLAT \"multi-f001.vmdk\" 0\nRW 1024 FLAT \"multi-f002.vmdk\" 0\n"))
	big := v.writeFile(t, "bad/big.vmdk", bytes.Repeat([]byte("# a long comment line\n"), 4000))
	garbage := v.writeFile(t, "bad/garbage.vmdk", []byte("this is not a disk\n"))

	tests := []struct {
		name     string
		backing  string
		capacity int64
		err      error // nil: only msg is checked
		msg      string
	}{
		{"sparse", sparse, mib, datastore.ErrUnsupported, "sparse extent (VMFSSPARSE)"},
		{"multi extent", multi, mib, datastore.ErrUnsupported, "2 extents"},
		{"flat file as backing", "[LocalDS_0] ok/flat-flat.vmdk", mib, datastore.ErrUnsupported, "data (flat) file"},
		{"oversized", big, mib, datastore.ErrDescriptor, "more than the 65536"},
		{"garbage", garbage, mib, datastore.ErrDescriptor, "line 1"},
		{"capacity mismatch", flatBacking, 2 * mib, datastore.ErrDescriptor, "capacity is 2097152"},
		{"missing descriptor", "[LocalDS_0] ok/nope.vmdk", mib, datastore.ErrNotFound, "404"},
		{"unknown datastore", "[NoSuchDS] ok/flat.vmdk", mib, datastore.ErrNotFound, "404"},
		{"data file too short", shortBacking, 2 * mib, nil, "shorter than the disk's 2097152 bytes"},
		{"empty data file", emptyBacking, emptyCap, nil, "the file is 0 bytes"},
		{"not a datastore path", "ok/flat.vmdk", mib, nil, "not a datastore path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := datastore.Open(t.Context(), v.client, dcPath, tt.backing, tt.capacity)
			if err == nil {
				d.Close()
				t.Fatalf("Open(%q) = nil error", tt.backing)
			}
			if (tt.err != nil && !errors.Is(err, tt.err)) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Open(%q) = %v, want an error wrapping %v containing %q", tt.backing, err, tt.err, tt.msg)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	v := startVCenter(t)
	const size = 4 << 20
	backing := v.makeDisk(t, "errs", "disk", size, map[int64][]byte{0: pattern(4096, 1)})
	d := open(t, v, backing, size)
	var cookies []string
	for _, c := range v.client.Jar.Cookies(v.client.URL()) {
		cookies = append(cookies, c.Value)
	}
	if len(cookies) == 0 {
		t.Fatal("the client has no session cookie")
	}
	noCookie := func(err error) {
		t.Helper()
		for _, c := range cookies {
			if strings.Contains(err.Error(), c) {
				t.Errorf("error %q holds the session cookie", err)
			}
		}
	}

	for _, r := range []struct{ n, off int64 }{{20, size - 10}, {1, size}, {1, -1}} {
		if err := d.ReadAt(t.Context(), make([]byte, r.n), r.off); !errors.Is(err, datastore.ErrOutOfRange) {
			t.Errorf("ReadAt(%d bytes at %d) = %v, want ErrOutOfRange", r.n, r.off, err)
		}
	}
	if err := d.ReadAt(t.Context(), nil, size); err != nil {
		t.Errorf("ReadAt(0 bytes at the end) = %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := d.ReadAt(ctx, make([]byte, 4096), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAt with a cancelled context = %v, want context.Canceled", err)
	}

	flat := v.flat(t, backing)
	if err := os.Truncate(flat, size/2); err != nil {
		t.Fatal(err)
	}
	err := d.ReadAt(t.Context(), make([]byte, 4096), size-4096)
	var se *datastore.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusRequestedRangeNotSatisfiable || se.Offset != size-4096 ||
		!strings.Contains(err.Error(), "[LocalDS_0] errs/disk-flat.vmdk") {
		t.Errorf("ReadAt past the file's end = %v, want a 416 StatusError naming the file and offset %d", err, size-4096)
	} else {
		noCookie(err)
	}

	if err := os.Remove(flat); err != nil {
		t.Fatal(err)
	}
	err = d.ReadAt(t.Context(), make([]byte, 4096), 4096)
	if !errors.Is(err, datastore.ErrNotFound) || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "offset 4096") {
		t.Errorf("ReadAt of a removed file = %v, want ErrNotFound, 404 and the offset", err)
	} else {
		noCookie(err)
	}
}

// TestExtentOffset reads a FLAT extent that starts 8 sectors into its file,
// in a datacenter named by its inventory path with a leading slash.
func TestExtentOffset(t *testing.T) {
	v := startVCenter(t)
	const size, skip = 1 << 20, 8 * 512
	backing := v.writeFile(t, "off/disk.vmdk", []byte("# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n"+
		"RW 2048 FLAT \"disk-data.raw\" 8\n"))
	data := pattern(size, 7)
	v.writeFile(t, "off/disk-data.raw", append(bytes.Repeat([]byte{0xff}, skip), data...))
	d, err := datastore.Open(t.Context(), v.client, "/"+dcPath, backing, size)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	defer d.Close()
	for _, r := range []struct{ off, n int64 }{{0, size}, {0, 1}, {size - 1, 1}, {12345, 54321}} {
		got := make([]byte, r.n)
		if err := d.ReadAt(t.Context(), got, r.off); err != nil || !bytes.Equal(got, data[r.off:r.off+r.n]) {
			t.Errorf("ReadAt(%d bytes at %d) = %v, data equal %v", r.n, r.off, err, bytes.Equal(got, data[r.off:r.off+r.n]))
		}
	}
}
