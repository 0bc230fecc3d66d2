package copier_test

import (
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/copier"
)

// A 1 GiB sparse-ish copy with Depth 4 × 1 MiB stays within its buffers
// and some slack: memory does not grow with the size copied.
func TestCopyMemoryBounded(t *testing.T) {
	testkit.Long(t)
	checkNoLeak(t)
	const (
		size  = 1 << 30
		depth = 4
		req   = 1 << 20
	)
	var regions []region
	for off := int64(0); off < size; off += mib(16) {
		regions = append(regions, region{off + mib(3), req + 4096, "data"})
		if off%mib(64) == 0 {
			regions = append(regions, region{off + mib(8), req, "zeros"})
		}
	}
	dir := t.TempDir()
	srcPath, dstPath := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	want := sha256Of(t, writeSparseNoKeep(t, srcPath, size, regions))

	runtime.GC()
	var before, now runtime.MemStats
	runtime.ReadMemStats(&before)
	peakHeap := before.HeapInuse
	sample := func() {
		runtime.ReadMemStats(&now)
		peakHeap = max(peakHeap, now.HeapInuse)
	}
	res, err := copyFile(t, t.Context(), srcPath, dstPath, nil, copier.Config{
		Depth: depth, RequestSize: req, Hash: true,
		ProgressInterval: 5 * time.Millisecond, Progress: func(copier.Progress) { sample() }})
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	sample()
	const limit = 64<<20 + depth*req
	t.Logf("heap in use grew by %d KiB at its peak, Sys by %d KiB", (peakHeap-before.HeapInuse)>>10, (now.Sys-before.Sys)>>10)
	if grew := peakHeap - before.HeapInuse; grew > limit {
		t.Errorf("heap in use grew by %d bytes at its peak, want under %d", grew, limit)
	}
	if grew := now.Sys - before.Sys; grew > limit {
		t.Errorf("memory from the OS grew by %d bytes, want under %d", grew, limit)
	}
	if string(res.Digest) != string(want) || res.Done != size {
		t.Errorf("Digest %x, Done %d; want %x, %d", res.Digest, res.Done, want, int64(size))
	}
	if got := sha256Of(t, dstPath); string(got) != string(want) {
		t.Error("destination differs from source")
	}
}

// writeSparseNoKeep is writeSparse for files too big to keep in memory
// whole: it returns path, not the content.
func writeSparseNoKeep(t testing.TB, path string, size int64, regions []region) string {
	t.Helper()
	testkit.SparseFile(t, path, size, regionPieces(regions))
	return path
}

// sha256Of returns the SHA-256 of the file at path.
func sha256Of(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	return h.Sum(nil)
}

// BenchmarkCopy copies a 256 MiB file of random data (with a hole and
// some written zeros) file to file, next to a sequential io.CopyBuffer of
// the same file with a 1 MiB buffer (the peer: no holes kept, no zeros
// found).
func BenchmarkCopy(b *testing.B) {
	const size = 256 << 20
	var regions []region
	for off := int64(0); off < size; off += mib(32) {
		regions = append(regions, region{off, mib(24), "data"}, region{off + mib(24), mib(4), "zeros"})
	}
	dir := b.TempDir()
	srcPath := writeSparseNoKeep(b, filepath.Join(dir, "src"), size, regions)
	var peer time.Duration
	b.Run("io.CopyBuffer", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			src, err := os.Open(srcPath)
			if err != nil {
				b.Fatal(err)
			}
			dst, err := os.Create(filepath.Join(dir, "peer"))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(dst, src, make([]byte, 1<<20)); err != nil {
				b.Fatal(err)
			}
			if err := dst.Sync(); err != nil {
				b.Fatal(err)
			}
			src.Close()
			dst.Close()
		}
		peer = b.Elapsed() / time.Duration(b.N)
	})
	for _, depth := range []int{1, 4, 16} {
		b.Run("copier/depth="+strconv.Itoa(depth), func(b *testing.B) {
			b.SetBytes(size)
			var res copier.Result
			for b.Loop() {
				var err error
				res, err = copyFile(b, b.Context(), srcPath, filepath.Join(dir, "dst"), nil, copier.Config{Depth: depth})
				if err != nil {
					b.Fatal(err)
				}
			}
			if res.Done != size {
				b.Fatalf("Done = %d, want %d", res.Done, int64(size))
			}
			if peer > 0 {
				b.ReportMetric(float64(peer)/float64(b.Elapsed()/time.Duration(b.N)), "x-io.CopyBuffer")
			}
		})
	}
}
