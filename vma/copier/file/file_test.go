package file_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/file"
)

const mib = 1 << 20

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestSourceExtents(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "src")
	data := bytes.Repeat([]byte{7}, mib)
	testkit.SparseFile(t, path, 8*mib, map[int64][]byte{mib: data, 5 * mib: data})
	src, err := file.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tests := []struct {
		name        string
		off, length int64
		want        []copier.Extent
	}{
		{"whole", 0, 8 * mib, []copier.Extent{
			{Offset: 0, Length: mib, Zero: true}, {Offset: mib, Length: mib},
			{Offset: 2 * mib, Length: 3 * mib, Zero: true}, {Offset: 5 * mib, Length: mib},
			{Offset: 6 * mib, Length: 2 * mib, Zero: true}}},
		{"inside data", mib + 10, 100, []copier.Extent{{Offset: mib + 10, Length: 100}}},
		{"inside a hole", 3 * mib, 10, []copier.Extent{{Offset: 3 * mib, Length: 10, Zero: true}}},
		{"past the end is clipped", 7 * mib, 4 * mib, []copier.Extent{{Offset: 7 * mib, Length: mib, Zero: true}}},
	}
	for _, tt := range tests {
		got, err := src.Extents(t.Context(), tt.off, tt.length)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: Extents(%d, %d) = %v, %v; want %v", tt.name, tt.off, tt.length, got, err, tt.want)
		}
	}
	if err := src.ReadAt(t.Context(), make([]byte, 10), 8*mib-5); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadAt past the end = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestDestination(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "dst")
	dst, err := file.Create(path, 4*mib)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{9}, 4*mib)
	if err := dst.WriteAt(t.Context(), data, 0); err != nil {
		t.Fatal(err)
	}
	if err := dst.WriteZeroes(t.Context(), mib, 2*mib); err != nil {
		t.Fatal(err)
	}
	if err := dst.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	if a := allocated(t, path); a > 2*mib+64<<10 {
		t.Errorf("after punching 2 MiB of 4, %d bytes allocated, want about 2 MiB", a)
	}
	clear(data[mib : 3*mib])
	// Create again keeps what is there (a resumed copy) and the size.
	dst, err = file.Create(path, 4*mib)
	if err != nil {
		t.Fatal(err)
	}
	dst.Close()
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("file after WriteAt, WriteZeroes and Create again: %d bytes, %v; want the data with a zero middle", len(got), err)
	}
}
