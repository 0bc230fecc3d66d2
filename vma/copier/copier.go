package copier

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"
)

// Source is what Copy reads. ReadAt fills all of p from off or returns an
// error; it must be safe for concurrent use (Copy keeps Depth reads in
// flight). Size is the source's length in bytes.
type Source interface {
	ReadAt(ctx context.Context, p []byte, off int64) error
	Size() int64
}

// Extents is implemented by a Source that can tell which of its bytes read
// as zeros (holes, zero-allocated blocks). Copy finds it by type assertion
// and never reads a zero extent.
//
// Extents describes [off, off+length) in offset order. It may describe
// only a prefix of it (Copy asks again for the rest) but must describe at
// least one byte at off. Bytes it skips between extents are read as data.
type Extents interface {
	Extents(ctx context.Context, off, length int64) ([]Extent, error)
}

// Destination is what Copy writes: later an NBD export. Its methods must be
// safe for concurrent use. WriteZeroes makes [off, off+length) read as
// zeros, punching a hole where it can. Flush makes every acknowledged write
// durable.
type Destination interface {
	WriteAt(ctx context.Context, p []byte, off int64) error
	WriteZeroes(ctx context.Context, off, length int64) error
	Flush(ctx context.Context) error
}

// Area is a range of bytes to copy: [Offset, Offset+Length).
type Area struct{ Offset, Length int64 }

// End returns Offset+Length.
func (a Area) End() int64 { return a.Offset + a.Length }

// Extent is a range of a Source. Zero means it reads as zeros.
type Extent struct {
	Offset, Length int64
	Zero           bool
}

// End returns Offset+Length.
func (e Extent) End() int64 { return e.Offset + e.Length }

const (
	// DefaultDepth is Config.Depth's default: requests in flight.
	DefaultDepth = 16
	// DefaultRequestSize is Config.RequestSize's default.
	DefaultRequestSize = 1 << 20
	// MaxRequestSize bounds Config.RequestSize.
	MaxRequestSize = 32 << 20
	// MaxZeroRequest bounds one WriteZeroes (NBD's length is 32 bits).
	MaxZeroRequest = 1 << 30
	// extentsWindow bounds what one Extents call is asked to describe.
	extentsWindow = 1 << 30
)

// Config configures Copy. Its zero value works: 16 requests of 1 MiB in
// flight, no limit, no hash, no progress.
type Config struct {
	// Depth is the number of requests in flight (and of buffers); 0 means
	// DefaultDepth. Memory is about Depth × RequestSize.
	Depth int
	// RequestSize is the largest read or write in bytes; 0 means
	// DefaultRequestSize; at most MaxRequestSize.
	RequestSize int
	// TargetIsZero says the destination already reads as zeros (a new
	// sparse volume): zero chunks are then skipped instead of written.
	TargetIsZero bool
	// ResumeFrom skips every byte below it: a Checkpoint of an earlier run.
	ResumeFrom int64
	// Limiter, if not nil, bounds the bytes per second written with
	// WriteAt, and read back by Verify (zeros cost nothing either way):
	// both cross the same link. It may be shared and changed meanwhile.
	Limiter *Limiter
	// JobLimiter, if not nil, bounds them as well: a second bucket, such
	// as the job's own limit under a limit shared by every job.
	JobLimiter *Limiter
	// Hash computes Result.Digest (see the package documentation).
	Hash bool
	// Verify checks every byte this run copied against what was read from
	// the source (see the package documentation); it implies Hash. It asks
	// Hasher for the destination's digests when Hasher is set, while the
	// copy goes on, else reads the bytes back after the flush: the
	// destination must then implement Source too, or Copy returns an
	// ErrConfig.
	Verify bool
	// Hasher, if not nil, computes the digests of the destination's blocks
	// where it lies, for Verify: nothing is read back through the link.
	// When it answers ErrNoHasher for the first blocks, Copy reads back
	// instead, if the destination is a Source.
	Hasher Hasher
	// HashBatch is the most blocks asked of Hasher in one call; 0 means
	// 64, more than blockdigest.MaxBlocks means that. The last batch is
	// asked for after the copy: fewer blocks make that wait shorter and
	// Progress.Verified move in smaller steps.
	HashBatch int
	// Progress, if not nil, is called with the progress at most every
	// ProgressInterval (when a request completes) and once at the end after
	// the flush. Calls come from one goroutine, one at a time; a slow
	// callback slows the copy.
	Progress func(Progress)
	// ProgressInterval is the least time between Progress calls; 0 means 1s.
	ProgressInterval time.Duration
	// Clock measures rates and times the Limiter's waits; nil: system clock.
	Clock Clock
}

func (c Config) withDefaults() (Config, error) {
	if c.Depth == 0 {
		c.Depth = DefaultDepth
	}
	if c.RequestSize == 0 {
		c.RequestSize = DefaultRequestSize
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = time.Second
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	switch {
	case c.Depth < 0:
		return c, fmt.Errorf("%w: depth %d", ErrConfig, c.Depth)
	case c.RequestSize < 0 || c.RequestSize > MaxRequestSize:
		return c, fmt.Errorf("%w: request size %d not in 1..%d", ErrConfig, c.RequestSize, MaxRequestSize)
	case c.ResumeFrom < 0:
		return c, fmt.Errorf("%w: resume from %d", ErrConfig, c.ResumeFrom)
	}
	return c, nil
}

// Progress is how far a copy got.
type Progress struct {
	// Total is the number of bytes in the areas.
	Total int64
	// Done is the number of bytes of Total finished: below ResumeFrom,
	// written and acknowledged, or zero (written as zeroes, or skipped with
	// TargetIsZero). Requests complete out of order, so Done may count
	// bytes above Checkpoint.
	Done int64
	// Zero is the number of bytes of this run that were zero, by the
	// source's extents (never read) or by looking at every byte read.
	Zero int64
	// Checkpoint is the offset below which every byte of the areas is
	// written and acknowledged: a later run may resume there. It advances in
	// offset order and never past a request that is not done. It is not
	// durable until the destination is flushed: only the Checkpoint of a
	// Copy that returned nil is.
	Checkpoint int64
	// Verified is the number of bytes checked on the destination, with
	// Config.Verify: hashed by Config.Hasher as the copy goes, or read back
	// after the copy and its flush. It ends at the bytes of this run (Total
	// less those below ResumeFrom).
	Verified int64
	// VerifyTotal is what Verified ends at: the bytes of this run with
	// Config.Verify, else 0.
	VerifyTotal int64
	// Rate is bytes per second done or verified since the previous report
	// (while verifying, the rate of verification); AvgRate is bytes done
	// per second since Copy started. Both count this run only.
	Rate, AvgRate float64
	// Elapsed is the time since Copy started.
	Elapsed time.Duration
}

// Result is what Copy did: the last Progress, the digest if asked for and
// whether the destination was verified.
type Result struct {
	Progress
	// Digest is the SHA-256 of the bytes copied in this run, in offset
	// order (see the package documentation); nil without Config.Hash or
	// Config.Verify, or when Copy failed.
	Digest []byte
	// Verified says every byte copied in this run was checked on the
	// destination and matched: only with Config.Verify and a nil error.
	Verified bool
	// Hashed says Config.Hasher verified it: nothing was read back.
	Hashed bool
}

// chunk is one request: [off, off+n) of the source; zero when the source's
// extents say it reads as zeros, so it is never read.
type chunk struct {
	seq    int64
	off, n int64
	zero   bool
}

// done is a finished chunk. buf holds its data when it is to be hashed in
// order (the collector returns buf to the pool); zero: it was all zeros.
type done struct {
	chunk
	buf  []byte
	zero bool
}

type run struct {
	cfg    Config
	dst    Destination
	src    Source
	ext    Extents // nil: every byte is read
	ctx    context.Context
	cancel context.CancelCauseFunc
	// inOrder says finished chunks go to the collector with their data, to
	// be hashed in offset order (Hash or Verify).
	inOrder bool
	bufs    chan []byte // Depth slots; nil slots are allocated on first use
	jobs    chan chunk
	dones   chan done

	errOnce sync.Once
	err     error
	// hashed says Config.Hasher gave the destination's digests.
	hashed bool
}

// Copy copies the areas of src to the same offsets of dst, then flushes
// dst. Areas must be in offset order, not overlap and lie within
// src.Size(); an empty list copies nothing (and flushes).
//
// Depth workers take chunks of at most RequestSize in offset order, read
// them, check every byte for zeros and write them (zeros as WriteZeroes,
// or not at all with TargetIsZero). Copy returns nil only after the flush
// is answered. The first error cancels everything in flight and is
// returned once every goroutine Copy started has ended: an *Error naming
// the offset and the operation, the flush's error, ctx's cause, or an
// ErrConfig. The Result holds the progress so far, its Checkpoint included,
// also with an error.
func Copy(ctx context.Context, dst Destination, src Source, areas []Area, cfg Config) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	size := src.Size()
	var total, resumed, prevEnd int64
	var ranges []Area // what this run copies: the areas from ResumeFrom on
	for i, a := range areas {
		if a.Offset < 0 || a.Length < 0 || a.End() > size || (i > 0 && a.Offset < prevEnd) {
			return Result{}, fmt.Errorf("%w: area %d [%d, %d) of a %d-byte source after [..., %d)",
				ErrConfig, i, a.Offset, a.End(), size, prevEnd)
		}
		total += a.Length
		resumed += min(max(cfg.ResumeFrom-a.Offset, 0), a.Length)
		prevEnd = a.End()
		if from := max(a.Offset, cfg.ResumeFrom); from < a.End() {
			ranges = append(ranges, Area{Offset: from, Length: a.End() - from})
		}
	}
	var back Source // the destination read back, with Verify (without a Hasher, or when it fails)
	if cfg.Verify {
		var ok bool
		if back, ok = dst.(Source); !ok && cfg.Hasher == nil {
			return Result{}, fmt.Errorf("%w: verify: destination %T cannot be read back (no ReadAt) and there is no Hasher", ErrConfig, dst)
		}
		if back != nil {
			if n := back.Size(); n < prevEnd {
				return Result{}, fmt.Errorf("%w: verify: destination holds %d bytes, the areas end at %d", ErrConfig, n, prevEnd)
			}
		}
	}

	var dig *digests
	if cfg.Verify {
		if dig, err = newDigests(ranges, verifyBlockSize(cfg.RequestSize)); err != nil {
			return Result{}, fmt.Errorf("copy: verify: %w", err)
		}
	}

	r := &run{cfg: cfg, dst: dst, src: src, inOrder: cfg.Hash || cfg.Verify, bufs: make(chan []byte, cfg.Depth),
		jobs: make(chan chunk), dones: make(chan done, cfg.Depth)}
	r.ext, _ = src.(Extents)
	r.ctx, r.cancel = context.WithCancelCause(ctx)
	defer r.cancel(nil)
	for range cfg.Depth {
		r.bufs <- nil
	}

	var wg sync.WaitGroup
	wg.Go(func() { r.produce(ranges) })
	for range cfg.Depth {
		wg.Go(r.work)
	}
	closed := make(chan struct{})
	go func() {
		wg.Wait()
		close(r.dones)
		close(closed)
	}()

	t := newTracker(cfg, total, resumed)
	var hv *hashed // the Hasher's check, as the copy goes
	if dig != nil && cfg.Hasher != nil {
		hv = r.startHashed(dig)
		defer hv.stop()
	}
	var sum hash.Hash
	if r.inOrder {
		sum = sha256.New()
	}
	pending := make(map[int64]done)
	var next int64
	for d := range r.dones {
		t.p.Done += d.n
		if d.zero {
			t.p.Zero += d.n
		}
		pending[d.seq] = d
		for {
			d, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if sum != nil {
				hashChunk(sum, d)
			}
			if dig != nil {
				var p []byte
				if d.buf != nil {
					p = d.buf[:d.n]
				}
				dig.add(d.off, d.n, p)
				if hv != nil {
					hv.advance(len(dig.sums))
				}
			}
			if d.buf != nil {
				r.bufs <- d.buf
			}
			t.p.Checkpoint = d.off + d.n
		}
		if hv != nil {
			t.p.Verified = hv.checked.Load()
		}
		t.report(false)
	}
	<-closed

	if r.err == nil && r.ctx.Err() != nil {
		r.err = context.Cause(r.ctx)
	}
	if r.err == nil {
		if err := dst.Flush(ctx); err != nil {
			r.err = fmt.Errorf("copy: flush: %w", err)
		}
	}
	if r.err == nil && dig != nil {
		if len(dig.sums) != cap(dig.sums) {
			r.err = fmt.Errorf("copy: verify: %d block digests of %d", len(dig.sums), cap(dig.sums))
		} else {
			r.err = r.verifyAll(back, dig, t, hv)
		}
	}
	res := Result{Progress: t.p}
	if r.err != nil {
		if ve := (*VerifyError)(nil); errors.As(r.err, &ve) {
			res.Checkpoint = ve.Offset // every byte below it matched
		}
		return res, r.err
	}
	t.report(true)
	res.Progress = t.p
	res.Verified = cfg.Verify
	res.Hashed = cfg.Verify && r.hashed
	if sum != nil {
		res.Digest = sum.Sum(nil)
	}
	return res, nil
}

// hashChunk adds a finished chunk's bytes to sum: its data, or its zeros.
func hashChunk(sum hash.Hash, d done) {
	if d.buf != nil {
		sum.Write(d.buf[:d.n])
		return
	}
	for n := d.n; n > 0; {
		k := min(n, int64(len(zeroBlock)))
		sum.Write(zeroBlock[:k])
		n -= k
	}
}

// fail records the first error and cancels the rest.
func (r *run) fail(err error) {
	r.errOnce.Do(func() {
		r.err = err
		r.cancel(err)
	})
}

// opErr names the operation and offset of err, unless the copy is being
// cancelled: then err is a consequence, and the cause is what counts.
func (r *run) opErr(op string, off int64, err error) error {
	if r.ctx.Err() != nil {
		return context.Cause(r.ctx)
	}
	return &Error{Op: op, Offset: off, Err: err}
}

// produce hands out the chunks of ranges (the areas from ResumeFrom on)
// in offset order, then closes r.jobs.
func (r *run) produce(ranges []Area) {
	defer close(r.jobs)
	var seq int64
	send := func(c chunk) bool {
		c.seq = seq
		seq++
		select {
		case r.jobs <- c:
			return true
		case <-r.ctx.Done():
			return false
		}
	}
	for _, a := range ranges {
		off, end := a.Offset, a.End()
		for off < end {
			exts, err := r.extents(off, min(end-off, extentsWindow))
			if err != nil {
				r.fail(r.opErr("extents", off, err))
				return
			}
			for _, e := range exts {
				step := int64(r.cfg.RequestSize)
				if e.Zero {
					step = MaxZeroRequest
				}
				for o := e.Offset; o < e.End(); o += step {
					if !send(chunk{off: o, n: min(step, e.End()-o), zero: e.Zero}) {
						return
					}
				}
				off = e.End()
			}
		}
	}
}

// extents describes a prefix of [off, off+n): in order, without gaps,
// clipped to it, at least one byte long.
func (r *run) extents(off, n int64) ([]Extent, error) {
	if r.ext == nil {
		return []Extent{{Offset: off, Length: n}}, nil
	}
	return describe(r.ctx, r.ext, off, n)
}

// describe asks ext about [off, off+n) and returns a prefix of it: in
// order, without gaps (bytes ext skips are data), clipped to it, at least
// one byte long.
func describe(ctx context.Context, ext Extents, off, n int64) ([]Extent, error) {
	got, err := ext.Extents(ctx, off, n)
	if err != nil {
		return nil, err
	}
	var out []Extent
	cur, end := off, off+n
	for _, e := range got {
		if e.End() <= cur {
			continue
		}
		if e.Offset > cur { // not described: read it
			out = append(out, Extent{Offset: cur, Length: min(e.Offset, end) - cur})
			cur = min(e.Offset, end)
		}
		if cur >= end {
			break
		}
		stop := min(e.End(), end)
		out = append(out, Extent{Offset: cur, Length: stop - cur, Zero: e.Zero})
		cur = stop
	}
	if cur == off {
		return nil, fmt.Errorf("no extent describes offset %d", off)
	}
	return out, nil
}

// work copies chunks until r.jobs is closed; after an error it only drains.
//
// A worker takes its buffer slot before it takes a chunk: while hashing,
// the collector holds the buffers of chunks done out of order, and a chunk
// taken without a buffer could then wait for one forever. This way the
// lowest chunk not done always has its buffer and the checkpoint moves.
func (r *run) work() {
	var buf []byte // nil until the first data chunk allocates it
	held := false  // whether this worker holds a slot of r.bufs
	for {
		if !held {
			select {
			case buf = <-r.bufs:
				held = true
			case <-r.ctx.Done():
				return
			}
		}
		c, ok := <-r.jobs
		if !ok {
			r.bufs <- buf // the slot back, for verification: never blocks
			return
		}
		if r.ctx.Err() != nil {
			continue
		}
		if !c.zero && buf == nil {
			buf = make([]byte, r.cfg.RequestSize)
		}
		d, err := r.copyChunk(c, buf)
		if err != nil {
			r.fail(err)
			continue
		}
		if d.buf != nil { // handed to the collector, which returns the slot
			buf, held = nil, false
		}
		r.dones <- d
	}
}

// copyChunk copies one chunk using buf (nil for a zero chunk).
func (r *run) copyChunk(c chunk, buf []byte) (done, error) {
	if c.zero {
		return r.zero(c)
	}
	p := buf[:c.n]
	if err := r.src.ReadAt(r.ctx, p, c.off); err != nil {
		return done{}, r.opErr("read", c.off, err)
	}
	if IsZero(p) {
		return r.zero(c)
	}
	if err := r.limit(len(p)); err != nil {
		return done{}, r.opErr("rate limit", c.off, err)
	}
	if err := r.dst.WriteAt(r.ctx, p, c.off); err != nil {
		return done{}, r.opErr("write", c.off, err)
	}
	if r.inOrder {
		return done{chunk: c, buf: buf}, nil // hashed in order by the collector
	}
	return done{chunk: c}, nil
}

// zero makes a chunk that reads as zeros read as zeros on the destination.
func (r *run) zero(c chunk) (done, error) {
	if !r.cfg.TargetIsZero {
		if err := r.dst.WriteZeroes(r.ctx, c.off, c.n); err != nil {
			return done{}, r.opErr("write zeroes", c.off, err)
		}
	}
	return done{chunk: c, zero: true}, nil
}

// tracker computes Progress and calls Config.Progress.
type tracker struct {
	cfg          Config
	resumed      int64
	start, last  time.Time
	lastDone     int64 // Done at the last report
	lastVerified int64 // Verified at the last report
	p            Progress
}

func newTracker(cfg Config, total, resumed int64) *tracker {
	now := cfg.Clock.Now()
	t := &tracker{cfg: cfg, resumed: resumed, start: now, last: now, lastDone: resumed,
		p: Progress{Total: total, Done: resumed, Checkpoint: cfg.ResumeFrom}}
	if cfg.Verify {
		t.p.VerifyTotal = total - resumed
	}
	return t
}

// report updates the rates and calls Config.Progress if the interval has
// passed, or always when final.
func (t *tracker) report(final bool) {
	now := t.cfg.Clock.Now()
	since := now.Sub(t.last)
	if !final && since < t.cfg.ProgressInterval {
		return
	}
	t.p.Elapsed = now.Sub(t.start)
	if since > 0 {
		// While copying, the copy's rate (a Hasher verifies meanwhile);
		// once copied, the verification's.
		if t.p.Done < t.p.Total || t.p.VerifyTotal == 0 {
			t.p.Rate = float64(t.p.Done-t.lastDone) / since.Seconds()
		} else {
			t.p.Rate = float64(t.p.Done+t.p.Verified-t.lastDone-t.lastVerified) / since.Seconds()
		}
	}
	if t.p.Elapsed > 0 {
		t.p.AvgRate = float64(t.p.Done-t.resumed) / t.p.Elapsed.Seconds()
	}
	t.last, t.lastDone, t.lastVerified = now, t.p.Done, t.p.Verified
	if t.cfg.Progress != nil {
		t.cfg.Progress(t.p)
	}
}

// limit waits until n bytes may cross the link under the Limiter and the
// JobLimiter.
func (r *run) limit(n int) error {
	for _, l := range []*Limiter{r.cfg.JobLimiter, r.cfg.Limiter} {
		if l != nil {
			if err := l.Wait(r.ctx, n); err != nil {
				return err
			}
		}
	}
	return nil
}
