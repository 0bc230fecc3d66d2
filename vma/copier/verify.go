package copier

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/godwit/godwit/blockdigest"
)

// minVerifyBlock is the least size of a verification block: a block is
// the smallest multiple of RequestSize that reaches it, so the digests
// take at most 16 bytes per MiB copied whatever RequestSize is.
const minVerifyBlock = 1 << 20

// verifyBlockSize returns the size of a verification block for chunks of
// at most req bytes.
func verifyBlockSize(req int) int64 {
	r := int64(req)
	return (minVerifyBlock + r - 1) / r * r
}

// forBlocks calls fn with each verification block of ranges, in offset
// order: each range is cut into blocks of size from its start, the last
// one shorter. It stops when fn returns false.
func forBlocks(ranges []Area, size int64, fn func(i int, off, n int64) bool) {
	i := 0
	for _, a := range ranges {
		for off := a.Offset; off < a.End(); off += size {
			if !fn(i, off, min(size, a.End()-off)) {
				return
			}
			i++
		}
	}
}

// digests computes the blockdigest.Sum of every verification block of
// ranges from the chunks of a copy, fed to add in offset order (the
// collector does, as the checkpoint passes them). A chunk may span blocks
// and a block may take several chunks (extents cut chunks anywhere).
type digests struct {
	ranges     []Area
	block      int64
	key        []byte // drawn for this Copy
	hash       *blockdigest.Hash
	sums       []blockdigest.Sum
	ri         int   // the range of the current block
	start, end int64 // the current block; end <= an offset not yet in one
}

func newDigests(ranges []Area, block int64) (*digests, error) {
	n := 0
	forBlocks(ranges, block, func(int, int64, int64) bool { n++; return true })
	key, err := blockdigest.NewKey()
	if err != nil {
		return nil, err
	}
	return &digests{ranges: ranges, block: block, key: key, hash: blockdigest.New(key),
		sums: make([]blockdigest.Sum, 0, n)}, nil
}

// add takes the chunk [off, off+n): its bytes p, or zeros when p is nil.
func (g *digests) add(off, n int64, p []byte) {
	for n > 0 {
		if off >= g.end {
			g.begin(off)
		}
		k := min(n, g.end-off)
		if p == nil {
			g.hash.WriteZeros(k)
		} else {
			g.hash.Write(p[:k])
			p = p[k:]
		}
		off, n = off+k, n-k
		if off == g.end {
			g.sums = append(g.sums, g.hash.Sum())
		}
	}
}

// begin starts the block that holds off.
func (g *digests) begin(off int64) {
	for g.ranges[g.ri].End() <= off {
		g.ri++
	}
	r := g.ranges[g.ri]
	g.start = r.Offset + (off-r.Offset)/g.block*g.block
	g.end = min(g.start+g.block, r.End())
}

// vblock is one verification block: the i-th, [off, off+n).
type vblock struct {
	i      int
	off, n int64
}

// checked is a verification block read back: ok when it matched.
type checked struct {
	vblock
	ok bool
}

// verify reads every block of g's ranges back from dst, Depth blocks in
// flight, each read in chunks of at most RequestSize, and compares it with
// its digest. It returns nil when all match, the *VerifyError of the first
// block in offset order that does not, or the first read error (an *Error,
// op "verify read") or ctx's cause. t counts Progress.Verified.
//
// After a mismatch no block above it is handed out; the blocks in flight
// still finish, and every block below it was handed out before it, so the
// lowest mismatch found is the first one.
func (r *run) verify(dst Source, g *digests, t *tracker) error {
	jobs := make(chan vblock)
	results := make(chan checked, r.cfg.Depth)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(jobs)
		forBlocks(g.ranges, g.block, func(i int, off, n int64) bool {
			if stop.Load() {
				return false
			}
			select {
			case jobs <- vblock{i: i, off: off, n: n}:
				return true
			case <-r.ctx.Done():
				return false
			}
		})
	})
	for range r.cfg.Depth {
		wg.Go(func() { r.verifyWork(dst, g, jobs, results) })
	}
	go func() {
		wg.Wait()
		close(results)
	}()

	var bad *VerifyError
	for c := range results {
		t.p.Verified += c.n
		if !c.ok && (bad == nil || c.off < bad.Offset) {
			bad = &VerifyError{Offset: c.off, Length: c.n}
			stop.Store(true)
		}
		t.report(false)
	}
	if r.err == nil && r.ctx.Err() != nil {
		r.err = context.Cause(r.ctx)
	}
	if r.err != nil {
		return r.err
	}
	if bad != nil {
		return bad
	}
	return nil
}

// verifyWork checks blocks until jobs is closed, with one buffer slot of
// r.bufs; after an error it only drains.
func (r *run) verifyWork(dst Source, g *digests, jobs <-chan vblock, results chan<- checked) {
	var buf []byte
	select {
	case buf = <-r.bufs:
	case <-r.ctx.Done():
		for range jobs {
		}
		return
	}
	defer func() { r.bufs <- buf }()
	if buf == nil {
		buf = make([]byte, r.cfg.RequestSize)
	}
	h := blockdigest.New(g.key)
	for b := range jobs {
		if r.ctx.Err() != nil {
			continue
		}
		ok, err := r.checkBlock(dst, b, g.sums[b.i], buf, h)
		if err != nil {
			r.fail(err)
			continue
		}
		results <- checked{vblock: b, ok: ok}
	}
}

// checkBlock reads block b of dst into buf, a chunk at a time, and
// reports whether it matches want: all zeros for the zero Sum, else the
// same digest.
func (r *run) checkBlock(dst Source, b vblock, want blockdigest.Sum, buf []byte, h *blockdigest.Hash) (bool, error) {
	zero := want.IsZero()
	defer h.Reset()
	for off, end := b.off, b.off+b.n; off < end; {
		p := buf[:min(int64(len(buf)), end-off)]
		if !zero {
			if err := r.limit(len(p)); err != nil {
				return false, r.opErr("rate limit", off, err)
			}
		}
		if err := dst.ReadAt(r.ctx, p, off); err != nil {
			return false, r.opErr("verify read", off, err)
		}
		if zero && !IsZero(p) {
			return false, nil
		}
		if !zero {
			h.Write(p)
		}
		off += int64(len(p))
	}
	return zero || h.Sum() == want, nil
}
