package blockdigest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const mib = 1 << 20

// write makes a sparse file of size bytes holding the pieces of data at
// their offsets (the rest holes), and returns it open and the bytes it
// reads as.
func write(t *testing.T, size int64, pieces map[int64][]byte) (*os.File, []byte) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "volume"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	image := make([]byte, size)
	for off, p := range pieces {
		if _, err := f.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(image[off:], p)
	}
	return f, image
}

// sumOf is the Sum of p, written in pieces of n bytes.
func sumOf(key, p []byte, n int) Sum {
	h := New(key)
	for len(p) > 0 {
		k := min(n, len(p))
		h.Write(p[:k])
		p = p[k:]
	}
	return h.Sum()
}

func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7)
	}
	return p
}

func TestFile(t *testing.T) {
	key := bytes.Repeat([]byte{1}, KeySize)
	tests := []struct {
		name   string
		size   int64
		pieces map[int64][]byte
		blocks []Block
		zero   []bool // which Sums are zero
	}{
		{name: "holes only", size: 4 * mib, blocks: []Block{{0, mib}, {mib, 3 * mib}}, zero: []bool{true, true}},
		{name: "zeros written", size: 2 * mib, pieces: map[int64][]byte{0: make([]byte, 2*mib)},
			blocks: []Block{{0, mib}, {mib, mib}}, zero: []bool{true, true}},
		{name: "data", size: 2 * mib, pieces: map[int64][]byte{0: pattern(2*mib, 3)},
			blocks: []Block{{0, mib}, {mib, mib}}, zero: []bool{false, false}},
		{name: "data after a hole in the block", size: 4 * mib, pieces: map[int64][]byte{mib + 5000: pattern(100, 9)},
			blocks: []Block{{0, mib}, {mib, 2 * mib}, {3 * mib, mib}}, zero: []bool{true, false, true}},
		{name: "data then hole then data", size: 8 * mib,
			pieces: map[int64][]byte{0: pattern(4096, 1), 6 * mib: pattern(mib, 2)},
			blocks: []Block{{0, 8 * mib}}, zero: []bool{false}},
		{name: "odd offsets, out of order", size: 3 * mib, pieces: map[int64][]byte{12345: pattern(mib, 4)},
			blocks: []Block{{mib + 7, 1000}, {0, 12345}, {12000, 500}}, zero: []bool{false, true, false}},
		{name: "many blocks over stretches, some again", size: 5 * mib,
			pieces: map[int64][]byte{0: pattern(mib, 6), 3 * mib: pattern(mib, 7)},
			blocks: []Block{{0, mib / 2}, {mib / 2, mib}, {2 * mib, mib / 2}, {3*mib + mib/2, mib}, {0, 4096}, {mib - 1, 2}, {3 * mib, 1}},
			zero:   []bool{false, false, true, false, false, false, false}},
		{name: "past the end reads as zeros", size: mib, pieces: map[int64][]byte{mib - 10: pattern(10, 5)},
			blocks: []Block{{mib - 100, 200}, {mib, mib}}, zero: []bool{false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, image := write(t, tt.size, tt.pieces)
			sums, err := File(context.Background(), f, key, tt.blocks, FileConfig{BufferSize: 64 << 10})
			if err != nil {
				t.Fatal(err)
			}
			for i, b := range tt.blocks {
				want := make([]byte, b.Length)
				if b.Offset < int64(len(image)) {
					copy(want, image[b.Offset:min(b.End(), int64(len(image)))])
				}
				if got, w := sums[i], sumOf(key, want, 4096); got != w {
					t.Errorf("block %d %v: File = %x, Hash of its bytes = %x", i, b, got, w)
				}
				if sums[i].IsZero() != tt.zero[i] {
					t.Errorf("block %d %v: zero Sum = %v, want %v", i, b, sums[i].IsZero(), tt.zero[i])
				}
			}
		})
	}
}

// TestFlippedByte: one byte changed anywhere in a block changes its Sum;
// another key gives another Sum; how the bytes are cut does not.
func TestFlippedByte(t *testing.T) {
	key := bytes.Repeat([]byte{2}, KeySize)
	data := pattern(mib, 11)
	want := sumOf(key, data, len(data))
	for _, n := range []int{1, 4096, 1000003} {
		if got := sumOf(key, data, n); got != want {
			t.Errorf("written in pieces of %d: %x, want %x", n, got, want)
		}
	}
	for _, at := range []int{0, 4095, mib / 2, mib - 1} {
		c := bytes.Clone(data)
		c[at] ^= 1
		if sumOf(key, c, 4096) == want {
			t.Errorf("byte %d flipped: same Sum", at)
		}
	}
	zeros := make([]byte, mib)
	if s := sumOf(key, zeros, 4096); !s.IsZero() {
		t.Errorf("zeros: %x, want the zero Sum", s)
	}
	zeros[mib-1] = 1
	if s := sumOf(key, zeros, 4096); s.IsZero() {
		t.Error("a block with one byte of data has the zero Sum")
	}
	other := bytes.Repeat([]byte{3}, KeySize)
	if sumOf(other, data, 4096) == want {
		t.Error("another key, same Sum")
	}
	// Zeros given as a count hash as zeros given as bytes.
	h := New(key)
	h.WriteZeros(1000)
	h.Write(data[1000:])
	d := bytes.Clone(data)
	clear(d[:1000])
	if h.Sum() != sumOf(key, d, 4096) {
		t.Error("WriteZeros then Write differs from the same bytes written")
	}
}

// TestFileFlippedByteOnDisk: a byte changed in a file changes the Sum of its
// block and only that one.
func TestFileFlippedByteOnDisk(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	f, _ := write(t, 4*mib, map[int64][]byte{0: pattern(4*mib, 7)})
	blocks := []Block{{0, mib}, {mib, mib}, {2 * mib, mib}, {3 * mib, mib}}
	before, err := File(context.Background(), f, key, blocks, FileConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0}, 2*mib+77); err != nil {
		t.Fatal(err)
	}
	after, err := File(context.Background(), f, key, blocks, FileConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range blocks {
		if changed := before[i] != after[i]; changed != (i == 2) {
			t.Errorf("block %d changed = %v, want %v", i, changed, i == 2)
		}
	}
}

// TestFileWait: Wait is asked for every data byte and none of the holes,
// and its error ends File.
func TestFileWait(t *testing.T) {
	f, _ := write(t, 8*mib, map[int64][]byte{mib: pattern(3*mib/2, 1)})
	var asked int
	wait := func(_ context.Context, n int) error { asked += n; return nil }
	if _, err := File(context.Background(), f, make([]byte, KeySize), []Block{{0, 8 * mib}}, FileConfig{Wait: wait}); err != nil {
		t.Fatal(err)
	}
	// The file system may allocate a little around the data.
	if asked < 3*mib/2 || asked > 2*mib {
		t.Errorf("Wait asked for %d bytes, want the %d of data", asked, 3*mib/2)
	}
	stop := errors.New("stop")
	_, err := File(context.Background(), f, make([]byte, KeySize), []Block{{0, 8 * mib}}, FileConfig{Wait: func(context.Context, int) error { return stop }})
	if !errors.Is(err, stop) {
		t.Errorf("File with a failing Wait = %v, want %v", err, stop)
	}
}

// BenchmarkFileDense hashes a file with no holes, in /dev/shm where there
// is one (tmpfs: its SEEK_HOLE walks every page up to the hole), 1 MiB
// blocks, as the OMA answers verify requests; the peer in the same process
// is one sequential read of the file through the same Hash, so ratio is
// File's speed over plain reading and hashing (1 is the most it can be).
func BenchmarkFileDense(b *testing.B) {
	const size = 512 * mib
	dir := "/dev/shm"
	if _, err := os.Stat(dir); err != nil {
		dir = b.TempDir()
	}
	f, err := os.CreateTemp(dir, "blockdigest-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	for off := int64(0); off < size; off += 8 * mib {
		if _, err := f.WriteAt(pattern(8*mib, byte(off/mib)), off); err != nil {
			b.Fatal(err)
		}
	}
	blocks := make([]Block, size/mib)
	for i := range blocks {
		blocks[i] = Block{int64(i) * mib, mib}
	}
	key := make([]byte, KeySize)
	var fileTime, peerTime time.Duration
	buf := make([]byte, mib)
	for b.Loop() {
		start := time.Now()
		if _, err := File(context.Background(), f, key, blocks, FileConfig{}); err != nil {
			b.Fatal(err)
		}
		fileTime += time.Since(start)
		start = time.Now()
		h := New(key)
		for off := int64(0); off < size; off += mib {
			if _, err := f.ReadAt(buf, off); err != nil {
				b.Fatal(err)
			}
			h.Write(buf)
			h.Sum()
		}
		peerTime += time.Since(start)
	}
	b.ReportMetric(float64(b.N)*size/1e6/fileTime.Seconds(), "file-MB/s")
	b.ReportMetric(float64(b.N)*size/1e6/peerTime.Seconds(), "read-MB/s")
	b.ReportMetric(peerTime.Seconds()/fileTime.Seconds(), "ratio")
}

// BenchmarkHash measures hashing a 1 MiB block of data: the cost each side
// pays per MiB verified (SHA-256, with SHA-NI where the CPU has it).
func BenchmarkHash(b *testing.B) {
	data := pattern(mib, 1)
	h := New(make([]byte, KeySize))
	b.SetBytes(mib)
	for b.Loop() {
		h.Write(data)
		h.Sum()
	}
}
