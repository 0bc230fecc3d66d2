package blockdigest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash"
)

// Size is the length of a Sum in bytes.
const Size = 16

// KeySize is the length of a key in bytes.
const KeySize = 32

// Bounds of one request for digests: at most MaxBlocks blocks of at most
// MaxBytes in all, so that an answer comes in seconds and its message stays
// small (about 40 bytes a block each way).
const (
	MaxBlocks = 256
	MaxBytes  = 1 << 30
)

// Sum is the digest of one block; the zero Sum means the block reads as zeros.
type Sum [Size]byte

// IsZero reports whether s is the zero Sum: the block reads as zeros.
func (s Sum) IsZero() bool { return s == Sum{} }

// Block is the range of bytes [Offset, Offset+Length) of a disk.
type Block struct{ Offset, Length int64 }

// End returns Offset+Length.
func (b Block) End() int64 { return b.Offset + b.Length }

// NewKey draws a key for one copy.
func NewKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("draw a block digest key: %w", err)
	}
	return k, nil
}

// Hash computes the Sum of one block from its bytes, given in order in
// pieces of any size. Zeros at the start of a block are only counted: they
// are hashed once a byte that is not zero comes, and never for a block that
// is all zeros. A Hash is not safe for concurrent use.
type Hash struct {
	mac   hash.Hash
	zeros int64 // zero bytes not hashed yet
	data  bool  // a byte that is not zero was written
	out   [sha256.Size]byte
}

// New returns a Hash under key.
func New(key []byte) *Hash {
	return &Hash{mac: hmac.New(sha256.New, key)}
}

// Write adds the bytes p.
func (h *Hash) Write(p []byte) {
	if !h.data {
		if IsZero(p) {
			h.zeros += int64(len(p))
			return
		}
		h.data = true
		h.writeZeros(h.zeros)
		h.zeros = 0
	}
	h.mac.Write(p)
}

// WriteZeros adds n zero bytes.
func (h *Hash) WriteZeros(n int64) {
	if !h.data {
		h.zeros += n
		return
	}
	h.writeZeros(n)
}

func (h *Hash) writeZeros(n int64) {
	for n > 0 {
		k := min(n, int64(len(zeroBlock)))
		h.mac.Write(zeroBlock[:k])
		n -= k
	}
}

// Sum returns the digest of the bytes written since the last Sum or Reset
// and resets h: the zero Sum when they were all zeros.
func (h *Hash) Sum() Sum {
	var s Sum
	if h.data {
		copy(s[:], h.mac.Sum(h.out[:0]))
		if s.IsZero() { // a block with data never has the zero Sum
			s[Size-1] = 1
		}
	}
	h.Reset()
	return s
}

// Reset forgets the bytes written.
func (h *Hash) Reset() {
	h.mac.Reset()
	h.zeros, h.data = 0, false
}

// zeroBlock is compared against and hashed, never written: it stays all zeros.
var zeroBlock [64 << 10]byte

// IsZero reports whether every byte of p is zero (every byte is looked at).
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
