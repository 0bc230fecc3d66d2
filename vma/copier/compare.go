package copier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
)

// Comparable is what Compare reads: a Source that tells which of its bytes
// read as zeros, as a file (package file) and an NBD export (package
// export) do.
type Comparable interface {
	Source
	Extents
}

// ErrDiffer is matched (errors.Is) by Compare's error when the two sides
// hold different bytes (a *DiffError) or have different sizes.
var ErrDiffer = errors.New("images differ")

// DiffError is Compare's error when the two sides hold different bytes:
// Offset is the first byte, in offset order, that differs.
type DiffError struct {
	Offset int64
}

// Error returns "images differ at offset N".
func (e *DiffError) Error() string {
	return fmt.Sprintf("images differ at offset %d", e.Offset)
}

// Is reports whether target is ErrDiffer.
func (e *DiffError) Is(target error) bool { return target == ErrDiffer }

const (
	// DefaultCompareDepth is CompareConfig.Depth's default.
	DefaultCompareDepth = 4
	// DefaultCompareChunk is CompareConfig.ChunkSize's default.
	DefaultCompareChunk = 4 << 20
)

// CompareConfig configures Compare. Its zero value reads 4 chunks of 4 MiB
// from each side at once (32 MiB of buffers).
type CompareConfig struct {
	// Depth is the number of chunks being read and compared at once; 0
	// means DefaultCompareDepth. Memory is about 2 × Depth × ChunkSize.
	Depth int
	// ChunkSize is the largest read from each side in bytes; 0 means
	// DefaultCompareChunk; at most MaxRequestSize.
	ChunkSize int
}

// Comparison is what Compare did.
type Comparison struct {
	// Size is the size of each side in bytes.
	Size int64
	// Compared is the number of bytes read from both sides and found
	// equal, in offset order: with an error, those below the first
	// difference (or failure). Everything else was zero on both sides by
	// their extents and never read.
	Compared int64
}

// Compare tells whether a and b hold the same bytes. Their sizes must be
// equal, else the error matches ErrDiffer and names both sizes.
//
// Only the union of the areas that either side's Extents call data is
// read, from both sides, in chunks of at most ChunkSize, Depth at a time,
// and compared with bytes.Equal; everywhere else both sides read as zeros
// by their own extents, so holes are never read and a huge sparse image
// compares in the time its data takes. Compare returns nil when all is
// equal, a *DiffError naming the first byte that differs, the first
// failure in offset order ("compare at offset N: read a: cause"; the ops
// are "extents a", "extents b", "read a" and "read b"), ctx's cause, or an
// ErrConfig. The Comparison holds the bytes compared so far, also with an
// error.
func Compare(ctx context.Context, a, b Comparable, cfg CompareConfig) (Comparison, error) {
	if cfg.Depth == 0 {
		cfg.Depth = DefaultCompareDepth
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = DefaultCompareChunk
	}
	if cfg.Depth < 0 || cfg.ChunkSize < 0 || cfg.ChunkSize > MaxRequestSize {
		return Comparison{}, fmt.Errorf("%w: compare depth %d, chunk size %d (at most %d)", ErrConfig, cfg.Depth, cfg.ChunkSize, MaxRequestSize)
	}
	size := a.Size()
	if n := b.Size(); n != size {
		return Comparison{}, fmt.Errorf("%w: sizes differ: %d and %d bytes", ErrDiffer, size, n)
	}
	res := Comparison{Size: size}

	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c := &comparer{ctx: cctx, a: a, b: b, cfg: cfg, size: size, chunks: -1,
		jobs: make(chan chunk), results: make(chan compared, cfg.Depth+1)}
	var wg sync.WaitGroup
	wg.Go(c.produce)
	for range cfg.Depth {
		wg.Go(c.work)
	}
	go func() {
		wg.Wait()
		close(c.results)
	}()

	// Results are taken in offset order: the first that is not equal
	// decides, and stops the rest.
	var verdict error
	pending := make(map[int64]compared)
	var next int64
	for r := range c.results {
		if verdict != nil {
			continue // draining
		}
		pending[r.seq] = r
		for verdict == nil {
			r, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if r.err != nil {
				verdict = r.err
				cancel(verdict)
				break
			}
			res.Compared += r.n
		}
	}
	if verdict == nil && next != c.chunks { // ctx ended: some chunks were never compared
		if verdict = context.Cause(cctx); verdict == nil {
			verdict = fmt.Errorf("compare: %d chunks of %d compared", next, c.chunks)
		}
	}
	return res, verdict
}

// comparer is one Compare.
type comparer struct {
	ctx     context.Context
	a, b    Comparable
	cfg     CompareConfig
	size    int64
	jobs    chan chunk
	results chan compared
	chunks  int64 // set by produce once it handed out all: how many
}

// compared is a chunk done: err is nil when both sides matched, else a
// *DiffError or the failure. The producer's failure comes as one too.
type compared struct {
	chunk
	err error
}

// produce walks both sides' extents together and hands out, in offset
// order, the chunks of every area that either side calls data; it closes
// c.jobs at the end.
func (c *comparer) produce() {
	defer close(c.jobs)
	ca := &cursor{ext: c.a, size: c.size}
	cb := &cursor{ext: c.b, size: c.size}
	var seq int64
	send := func(off, n int64) bool {
		select {
		case c.jobs <- chunk{seq: seq, off: off, n: n}:
			seq++
			return true
		case <-c.ctx.Done():
			return false
		}
	}
	step := int64(c.cfg.ChunkSize)
	var from, to int64 // [from, to): data not yet handed out
	for off := int64(0); off < c.size; {
		if c.ctx.Err() != nil {
			return
		}
		op := "extents a"
		ea, err := ca.at(c.ctx, off)
		var eb Extent
		if err == nil {
			op = "extents b"
			eb, err = cb.at(c.ctx, off)
		}
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			// After the data below off: the first failure in offset order.
			if to > from && !send(from, to-from) {
				return
			}
			select {
			case c.results <- compared{chunk: chunk{seq: seq, off: off}, err: compareErr(op, off, err)}:
			case <-c.ctx.Done():
			}
			return
		}
		// [off, end) is zero on both sides, or data on one at least.
		end, zero := min(ea.End(), eb.End()), ea.Zero && eb.Zero
		if !zero {
			if to != off {
				from = off
			}
			to = end
			for to-from >= step {
				if !send(from, step) {
					return
				}
				from += step
			}
		}
		off = end
		if to > from && (zero || off == c.size) {
			if !send(from, to-from) {
				return
			}
			from = to
		}
	}
	c.chunks = seq
}

// cursor walks one side's extents forward.
type cursor struct {
	ext  Extents
	size int64
	buf  []Extent // from describe: in order, without gaps
}

// at returns the extent holding off, which is below size and at or past
// the previous call's.
func (c *cursor) at(ctx context.Context, off int64) (Extent, error) {
	for len(c.buf) > 0 && c.buf[0].End() <= off {
		c.buf = c.buf[1:]
	}
	if len(c.buf) == 0 || c.buf[0].Offset > off {
		exts, err := describe(ctx, c.ext, off, min(c.size-off, extentsWindow))
		if err != nil {
			return Extent{}, err
		}
		c.buf = exts
	}
	return c.buf[0], nil
}

// work reads and compares chunks until c.jobs is closed.
func (c *comparer) work() {
	var pa, pb []byte // allocated on first use
	for ch := range c.jobs {
		if c.ctx.Err() != nil {
			continue
		}
		if pa == nil {
			pa, pb = make([]byte, c.cfg.ChunkSize), make([]byte, c.cfg.ChunkSize)
		}
		c.results <- compared{chunk: ch, err: c.compareChunk(ch, pa[:ch.n], pb[:ch.n])}
	}
}

// compareChunk reads ch from both sides into pa and pb and compares them.
func (c *comparer) compareChunk(ch chunk, pa, pb []byte) error {
	if err := c.a.ReadAt(c.ctx, pa, ch.off); err != nil {
		return c.opErr("read a", ch.off, err)
	}
	if err := c.b.ReadAt(c.ctx, pb, ch.off); err != nil {
		return c.opErr("read b", ch.off, err)
	}
	if i := firstDiff(pa, pb); i >= 0 {
		return &DiffError{Offset: ch.off + int64(i)}
	}
	return nil
}

// opErr names the operation and offset of err, unless the comparison is
// being cancelled: then the cause is what counts.
func (c *comparer) opErr(op string, off int64, err error) error {
	if c.ctx.Err() != nil {
		return context.Cause(c.ctx)
	}
	return compareErr(op, off, err)
}

// compareErr is a failure of Compare: "compare at offset N: op: cause".
func compareErr(op string, off int64, err error) error {
	return fmt.Errorf("compare at offset %d: %s: %w", off, op, err)
}

// firstDiff returns the index of the first byte where p and q (of equal
// length) differ, or -1: bytes.Equal over blocks, then byte by byte in
// the block that differs.
func firstDiff(p, q []byte) int {
	const block = 4 << 10
	for i := 0; i < len(p); i += block {
		j := min(i+block, len(p))
		if bytes.Equal(p[i:j], q[i:j]) {
			continue
		}
		for k := i; k < j; k++ {
			if p[k] != q[k] {
				return k
			}
		}
	}
	return -1
}
