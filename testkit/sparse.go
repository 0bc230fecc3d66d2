package testkit

import (
	"os"
	"testing"
)

// SparseFile makes the file at path (created, or truncated when it exists)
// size bytes long, a hole but for pieces: data written at each offset. The
// pieces must not overlap. It fails the test on any error.
func SparseFile(tb testing.TB, path string, size int64, pieces map[int64][]byte) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		tb.Fatalf("sparse file: %v", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		tb.Fatalf("sparse file %s: %v", path, err)
	}
	for off, p := range pieces {
		if _, err := f.WriteAt(p, off); err != nil {
			tb.Fatalf("sparse file %s: write at %d: %v", path, off, err)
		}
	}
	if err := f.Close(); err != nil {
		tb.Fatalf("sparse file %s: %v", path, err)
	}
}
