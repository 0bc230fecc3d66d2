package copier

import "github.com/godwit/godwit/blockdigest"

// zeroBlock is hashed for runs of zeros, never written: it stays all zeros.
var zeroBlock [64 << 10]byte

// IsZero reports whether every byte of p is zero. It looks at every byte (no
// sampling): it is blockdigest.IsZero, which compares 64 KiB at a time
// through bytes.Equal, whose assembly compares many bytes per instruction;
// BenchmarkIsZero compares it with a loop over 8-byte words.
func IsZero(p []byte) bool { return blockdigest.IsZero(p) }
