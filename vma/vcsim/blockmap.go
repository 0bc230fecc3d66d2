package vcsim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"slices"
	"syscall"

	"github.com/vmware/govmomi/vim25/types"
	"golang.org/x/sys/unix"
)

// ChangeBlock is the unit of incremental change tracking: the simulator
// compares disks in blocks of this many bytes, and the areas of an
// incremental QueryChangedDiskAreas answer are made of such blocks.
const ChangeBlock = 64 << 10

// blockSum is the hash of a ChangeBlock: two 64-bit maphash sums with
// different seeds, which are fast (the hash is read at every snapshot of
// every disk with change tracking on) and good for as long as the process
// runs, which is as long as block maps live.
type blockSum [16]byte

// blockHasher hashes blocks with its seeds; maps compare only if made by
// the same blockHasher.
type blockHasher [2]maphash.Seed

func newBlockHasher() blockHasher {
	return blockHasher{maphash.MakeSeed(), maphash.MakeSeed()}
}

func (h blockHasher) sum(b []byte) blockSum {
	var s blockSum
	binary.LittleEndian.PutUint64(s[:8], maphash.Bytes(h[0], b))
	binary.LittleEndian.PutUint64(s[8:], maphash.Bytes(h[1], b))
	return s
}

// blockMap is what a disk held when a snapshot was taken: the hash of
// each ChangeBlock that holds anything but zeros, in offset order. A block
// not listed is zeros (a hole, or zeros written), so a sparse disk's map is
// as small as its data.
type blockMap struct {
	capacity int64
	blocks   []int64    // indexes of the blocks that are not zeros, ascending
	sums     []blockSum // sums[i] is the hash of block blocks[i]
}

// readChunk is how many blocks readBlockMap reads at once.
const readChunk = 16

// readBlockMap reads the block map of the flat file file, which holds a
// disk of capacity bytes (bytes past capacity are not part of it), hashing
// with h. Only the allocated extents (SEEK_DATA/SEEK_HOLE) are read; a
// block wholly in a hole is zeros, and not read.
func readBlockMap(file string, capacity int64, h blockHasher) (*blockMap, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("block map: %w", err)
	}
	defer f.Close()
	m := &blockMap{capacity: capacity}
	buf := make([]byte, readChunk*ChangeBlock)
	zero := make([]byte, ChangeBlock)
	next := int64(0) // the first block not read yet
	for off := int64(0); off < capacity; {
		data, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) {
			break // no data from off to the end of the file
		}
		if err != nil {
			return nil, fmt.Errorf("block map: seek data from %d: %w", off, err)
		}
		if data >= capacity {
			break
		}
		hole, err := f.Seek(data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("block map: seek hole from %d: %w", data, err)
		}
		hole = min(hole, capacity)
		last := (hole + ChangeBlock - 1) / ChangeBlock // past the extent's last block
		for b := max(data/ChangeBlock, next); b < last; {
			n := min(last-b, readChunk)
			chunk := buf[:n*ChangeBlock]
			got, err := f.ReadAt(chunk, b*ChangeBlock)
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("block map: read at %d: %w", b*ChangeBlock, err)
			}
			clear(chunk[min(int64(got), capacity-b*ChangeBlock):])
			for i := range n {
				block := chunk[i*ChangeBlock : (i+1)*ChangeBlock]
				if bytes.Equal(block, zero) {
					continue
				}
				m.blocks = append(m.blocks, b+i)
				m.sums = append(m.sums, h.sum(block))
			}
			b += n
		}
		next = last
		off = hole
	}
	return m, nil
}

// equal reports whether m and o record the same content.
func (m *blockMap) equal(o *blockMap) bool {
	return m.capacity == o.capacity && slices.Equal(m.blocks, o.blocks) && slices.Equal(m.sums, o.sums)
}

// changedAreas lists the blocks whose content differs between base and
// cur within [start, end), merged into areas clipped to [start, end) and
// to cur's capacity, in offset order, at most maxAreas of them. next is
// where the answer ends: end (clipped to the capacity), or the start of the
// first changed area left out.
func changedAreas(base, cur *blockMap, start, end int64, maxAreas int) (areas []types.DiskChangeExtent, next int64) {
	end = min(end, cur.capacity)
	first := start / ChangeBlock
	i, _ := slices.BinarySearch(base.blocks, first)
	j, _ := slices.BinarySearch(cur.blocks, first)
	for i < len(base.blocks) || j < len(cur.blocks) {
		var b int64
		switch {
		case j == len(cur.blocks) || i < len(base.blocks) && base.blocks[i] < cur.blocks[j]:
			b = base.blocks[i] // zeros now
			i++
		case i == len(base.blocks) || cur.blocks[j] < base.blocks[i]:
			b = cur.blocks[j] // zeros before
			j++
		default: // in both
			b = cur.blocks[j]
			same := base.sums[i] == cur.sums[j]
			i++
			j++
			if same {
				continue
			}
		}
		lo, hi := max(b*ChangeBlock, start), min((b+1)*ChangeBlock, end)
		if lo >= end {
			break
		}
		if n := len(areas); n > 0 && areas[n-1].Start+areas[n-1].Length == lo {
			areas[n-1].Length += hi - lo
			continue
		}
		if len(areas) == maxAreas {
			return areas, lo
		}
		areas = append(areas, types.DiskChangeExtent{Start: lo, Length: hi - lo})
	}
	return areas, end
}
