package copier

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/godwit/godwit/blockdigest"
)

// Hasher computes the digests of blocks of the destination where it lies
// (the OMA hashes its volume), so that Verify compares digests instead of
// reading the destination back. Digests returns one blockdigest.Sum per
// block, in order, under key; the zero Sum for a block that reads as
// zeros. It must be safe for concurrent use: Copy keeps hashersInFlight
// calls in flight. An error wrapping ErrNoHasher says nobody can answer.
type Hasher interface {
	Digests(ctx context.Context, key []byte, blocks []Area) ([]blockdigest.Sum, error)
}

// hashersInFlight is how many Digests calls Copy keeps in flight: one
// hashes while the answer of the other crosses the link, so the
// destination's disk never waits a round trip.
const hashersInFlight = 2

// batch is blocks [i, i+len(blocks)) of a copy's verification blocks.
type batch struct {
	i      int
	blocks []Area
	bytes  int64
}

// batches cuts g's blocks into batches of at most size (at most
// blockdigest.MaxBlocks) blocks and blockdigest.MaxBytes bytes.
func (g *digests) batches(size int) []batch {
	if size <= 0 || size > blockdigest.MaxBlocks {
		size = blockdigest.MaxBlocks
	}
	var out []batch
	forBlocks(g.ranges, g.block, func(i int, off, n int64) bool {
		if len(out) == 0 || len(out[len(out)-1].blocks) == size || out[len(out)-1].bytes+n > blockdigest.MaxBytes {
			out = append(out, batch{i: i})
		}
		b := &out[len(out)-1]
		b.blocks = append(b.blocks, Area{Offset: off, Length: n})
		b.bytes += n
		return true
	})
	return out
}

// verifyAll verifies the destination: with the Hasher when there is one,
// else, or when the Hasher has nobody to answer it, by reading back.
func (r *run) verifyAll(back Source, g *digests, t *tracker) error {
	if r.cfg.Hasher != nil {
		err := r.verifyHashed(g, t)
		if !errors.Is(err, ErrNoHasher) {
			r.hashed = err == nil
			return err
		}
		if back == nil {
			return fmt.Errorf("copy: verify: %w, and the destination %T cannot be read back", err, r.dst)
		}
	}
	return r.verify(back, g, t)
}

// verifyHashed asks the Hasher for the digests of g's blocks, a batch
// (Config.HashBatch) at a time with hashersInFlight batches in flight, and compares them in offset
// order. It returns nil when all match, the *VerifyError of the first block
// that does not, ErrNoHasher (wrapped) when the first batch found nobody to
// answer, an *Error of op "verify digests", or ctx's cause.
func (r *run) verifyHashed(g *digests, t *tracker) error {
	type answer struct {
		sums []blockdigest.Sum
		err  error
	}
	batches := g.batches(r.cfg.HashBatch)
	answers := make([]chan answer, len(batches))
	for i := range answers {
		answers[i] = make(chan answer, 1)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	slots := make(chan struct{}, hashersInFlight)
	wg.Go(func() {
		for i, b := range batches {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-slots }()
				sums, err := r.cfg.Hasher.Digests(ctx, g.key, b.blocks)
				answers[i] <- answer{sums: sums, err: err}
			})
		}
	})
	for i, b := range batches {
		var a answer
		select {
		case a = <-answers[i]:
		case <-r.ctx.Done():
			return context.Cause(r.ctx)
		}
		off := b.blocks[0].Offset
		switch {
		case i == 0 && errors.Is(a.err, ErrNoHasher):
			return a.err
		case a.err != nil:
			return r.opErr("verify digests", off, a.err)
		case len(a.sums) != len(b.blocks):
			return r.opErr("verify digests", off, fmt.Errorf("%d digests for %d blocks", len(a.sums), len(b.blocks)))
		}
		for k, s := range a.sums {
			if s != g.sums[b.i+k] {
				return &VerifyError{Offset: b.blocks[k].Offset, Length: b.blocks[k].Length}
			}
		}
		t.p.Verified += b.bytes
		t.report(false)
	}
	return nil
}
