package copier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

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

// streamBatch is the most blocks of a batch when Config.HashBatch is 0:
// the last batch is asked for after the copy, so a small one keeps that
// wait short.
const streamBatch = 64

// hashed verifies a copy's blocks with the Hasher while the copy goes on:
// a batch is asked for as soon as the collector has the digests of all its
// blocks, that is once every byte of it was written and acknowledged (the
// destination holds it), hashersInFlight batches in flight, and the
// answers are compared in offset order.
type hashed struct {
	r       *run
	batches []batch
	sums    []blockdigest.Sum // the collector's, up to cap: read only below ready
	key     []byte
	ready   atomic.Int64  // how many blocks have their digest in sums
	wake    chan struct{} // ready moved
	checked atomic.Int64  // bytes compared and matched
	moved   chan struct{} // checked moved
	result  chan error    // the outcome, once
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// startHashed starts verifying g's blocks with the Hasher as the collector
// adds their digests (call advance after each). Call stop before Copy
// returns.
func (r *run) startHashed(g *digests) *hashed {
	size := r.cfg.HashBatch
	if size <= 0 {
		size = streamBatch
	}
	h := &hashed{r: r, batches: g.batches(size), sums: g.sums[:cap(g.sums)], key: g.key,
		wake: make(chan struct{}, 1), moved: make(chan struct{}, 1), result: make(chan error, 1)}
	var ctx context.Context
	ctx, h.cancel = context.WithCancel(r.ctx)
	h.wg.Go(func() { h.result <- h.run(ctx) })
	return h
}

// advance says the first n blocks have their digests in sums.
func (h *hashed) advance(n int) {
	h.ready.Store(int64(n))
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// stop ends the verification, if it has not ended, and waits for it.
func (h *hashed) stop() {
	h.cancel()
	h.wg.Wait()
}

// run asks for the batches and compares the answers. It returns nil when
// all match, the *VerifyError of the first block that does not, ErrNoHasher
// (wrapped) when the first batch found nobody to answer, an *Error of op
// "verify digests", or ctx's cause. A mismatch or an error fails the copy
// at once (ErrNoHasher does not: the copy goes on and is read back).
func (h *hashed) run(ctx context.Context) error {
	type answer struct {
		sums []blockdigest.Sum
		err  error
	}
	answers := make([]chan answer, len(h.batches))
	for i := range answers {
		answers[i] = make(chan answer, 1)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	slots := make(chan struct{}, hashersInFlight)
	wg.Go(func() {
		for i, b := range h.batches {
			for h.ready.Load() < int64(b.i+len(b.blocks)) {
				select {
				case <-h.wake:
				case <-ctx.Done():
					return
				}
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-slots }()
				sums, err := h.r.cfg.Hasher.Digests(ctx, h.key, b.blocks)
				answers[i] <- answer{sums: sums, err: err}
			})
		}
	})
	for i, b := range h.batches {
		var a answer
		select {
		case a = <-answers[i]:
		case <-ctx.Done():
			return context.Cause(h.r.ctx)
		}
		off := b.blocks[0].Offset
		var err error
		switch {
		case i == 0 && errors.Is(a.err, ErrNoHasher):
			return a.err
		case a.err != nil:
			err = h.r.opErr("verify digests", off, a.err)
		case len(a.sums) != len(b.blocks):
			err = h.r.opErr("verify digests", off, fmt.Errorf("%d digests for %d blocks", len(a.sums), len(b.blocks)))
		}
		for k, s := range a.sums {
			if err == nil && s != h.sums[b.i+k] {
				err = &VerifyError{Offset: b.blocks[k].Offset, Length: b.blocks[k].Length}
			}
		}
		if err != nil {
			h.r.cancel(err) // the copy's workers end with it as the cause
			return err
		}
		h.checked.Add(b.bytes)
		select {
		case h.moved <- struct{}{}:
		default:
		}
	}
	return nil
}

// verifyAll finishes the destination's verification: it waits for the
// Hasher's, if one was started (hv), reporting its progress; without one,
// or when the Hasher had nobody to answer, it reads the destination back.
func (r *run) verifyAll(back Source, g *digests, t *tracker, hv *hashed) error {
	if hv != nil {
		var err error
	wait:
		for {
			select {
			case <-hv.moved:
				t.p.Verified = hv.checked.Load()
				t.report(false)
			case err = <-hv.result:
				break wait
			}
		}
		t.p.Verified = hv.checked.Load()
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
