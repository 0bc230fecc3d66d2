package vcsim

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/godwit/godwit/testkit"
)

// TestBlockMapSparse checks that the block map of a big sparse disk holds
// only its data blocks, read through SEEK_DATA: a 40 GiB disk with a few
// writes is a few entries.
func TestBlockMapSparse(t *testing.T) {
	const capacity = 40 << 30
	file := filepath.Join(t.TempDir(), "disk-flat.vmdk")
	testkit.SparseFile(t, file, capacity, map[int64][]byte{
		0:                        []byte("first"),
		20<<30 + ChangeBlock - 2: []byte("across"),
		30 << 30:                 make([]byte, 3*ChangeBlock), // zeros, allocated
		capacity - 1:             []byte("z"),
	})
	m, err := readBlockMap(file, capacity, newBlockHasher())
	if err != nil {
		t.Fatalf("readBlockMap = %v", err)
	}
	want := []int64{0, 20 << 30 / ChangeBlock, 20<<30/ChangeBlock + 1, capacity/ChangeBlock - 1}
	if len(m.blocks) != len(want) || len(m.sums) != len(want) {
		t.Fatalf("blocks %v, want %v", m.blocks, want)
	}
	for i := range want {
		if m.blocks[i] != want[i] {
			t.Fatalf("blocks %v, want %v", m.blocks, want)
		}
	}
	empty := &blockMap{capacity: capacity}
	areas, next := changedAreas(empty, m, 0, capacity, 2)
	if len(areas) != 2 || next != capacity-ChangeBlock || areas[1].Start != 20<<30 || areas[1].Length != 2*ChangeBlock {
		t.Errorf("changedAreas(empty, m, 2 areas) = %v, next %d", areas, next)
	}
}

// BenchmarkReadBlockMap measures what a snapshot of a disk with change
// tracking on costs per byte of data: reading and hashing it.
//
//	go test -run '^$' -bench ReadBlockMap ./vma/vcsim
func BenchmarkReadBlockMap(b *testing.B) {
	const size = 256 << 20
	file := filepath.Join(b.TempDir(), "disk-flat.vmdk")
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7 >> 3)
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		b.Fatal(err)
	}
	h := newBlockHasher()
	b.SetBytes(size)
	var m *blockMap
	for b.Loop() {
		var err error
		if m, err = readBlockMap(file, size, h); err != nil {
			b.Fatal(err)
		}
	}
	if len(m.blocks) != size/ChangeBlock {
		b.Errorf("%d blocks, want %d", len(m.blocks), size/ChangeBlock)
	}
}
