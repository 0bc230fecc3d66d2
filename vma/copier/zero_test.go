package copier_test

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/godwit/godwit/vma/copier"
)

// isZeroWords is IsZero's peer in BenchmarkIsZero: eight bytes at a time,
// four words per round, then the tail byte by byte.
func isZeroWords(p []byte) bool {
	for len(p) >= 32 {
		if binary.LittleEndian.Uint64(p)|binary.LittleEndian.Uint64(p[8:])|
			binary.LittleEndian.Uint64(p[16:])|binary.LittleEndian.Uint64(p[24:]) != 0 {
			return false
		}
		p = p[32:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

func TestIsZero(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 1, 7, 8, 31, 32, 33, 4096, 64<<10 - 1, 64 << 10, 64<<10 + 1, 1<<20 + 3} {
		p := make([]byte, size)
		if !copier.IsZero(p) || !isZeroWords(p) {
			t.Fatalf("IsZero(%d zero bytes) = false, want true", size)
		}
		// Every position must be looked at: no sampling.
		for i := 0; i < size; i += max(1, size/97) {
			p[i] = 1
			if copier.IsZero(p) || isZeroWords(p) {
				t.Fatalf("IsZero(%d bytes, byte %d set) = true, want false", size, i)
			}
			p[i] = 0
		}
		if size > 0 {
			p[size-1] = 0x80
			if copier.IsZero(p) || isZeroWords(p) {
				t.Fatalf("IsZero(%d bytes, last byte set) = true, want false", size)
			}
		}
	}
}

// BenchmarkIsZero reports GB/s (from SetBytes: MB/s) of an all-zero chunk,
// the worst case since every byte is read.
func BenchmarkIsZero(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20, 32 << 20} {
		p := make([]byte, size)
		for _, fn := range []struct {
			name string
			f    func([]byte) bool
		}{{"bytes.Equal", copier.IsZero}, {"words", isZeroWords}} {
			b.Run(fmt.Sprintf("%s/%dKiB", fn.name, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				ok := true
				for b.Loop() {
					ok = ok && fn.f(p)
				}
				if !ok {
					b.Fatal("zero chunk not seen as zero")
				}
				b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		}
	}
}
