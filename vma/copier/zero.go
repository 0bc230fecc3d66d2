package copier

import "bytes"

// zeroBlock is compared against, never written: it stays all zeros. 64 KiB
// keeps it in the CPU's cache while a chunk of any size streams past it.
var zeroBlock [64 << 10]byte

// IsZero reports whether every byte of p is zero. It looks at every byte (no
// sampling), 64 KiB at a time through bytes.Equal, whose assembly compares
// many bytes per instruction; BenchmarkIsZero compares it with a loop over
// 8-byte words.
func IsZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeroBlock))
		if !bytes.Equal(p[:n], zeroBlock[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}
