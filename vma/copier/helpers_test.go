package copier_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/copier"
)

// fakeClock only moves when waited on: After(d) moves it d forward at once.
// With a Limiter, elapsed fake time is then exactly what the limit imposed.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	c.mu.Unlock()
	return ch
}

// memSource is a Source in memory; with holes it implements Extents too
// (see extentSource) and records what was read.
type memSource struct {
	data []byte

	mu    sync.Mutex
	reads []copier.Area
	fail  int64 // ReadAt at this offset fails; -1: never
}

func newMemSource(data []byte) *memSource { return &memSource{data: data, fail: -1} }

func (s *memSource) Size() int64 { return int64(len(s.data)) }

func (s *memSource) ReadAt(ctx context.Context, p []byte, off int64) error {
	s.mu.Lock()
	s.reads = append(s.reads, copier.Area{Offset: off, Length: int64(len(p))})
	fail := s.fail == off
	s.mu.Unlock()
	if fail {
		return errors.New("disk on fire")
	}
	copy(p, s.data[off:])
	return nil
}

// extentSource adds Extents to a memSource: holes read as zeros.
type extentSource struct {
	*memSource
	holes []copier.Area // sorted
}

func (s *extentSource) Extents(_ context.Context, off, length int64) ([]copier.Extent, error) {
	var out []copier.Extent
	pos, end := off, off+length
	for _, h := range s.holes {
		if h.End() <= pos || h.Offset >= end {
			continue
		}
		if h.Offset > pos {
			out = append(out, copier.Extent{Offset: pos, Length: h.Offset - pos})
		}
		from := max(h.Offset, pos)
		to := min(h.End(), end)
		out = append(out, copier.Extent{Offset: from, Length: to - from, Zero: true})
		pos = to
	}
	if pos < end {
		out = append(out, copier.Extent{Offset: pos, Length: end - pos})
	}
	return out, nil
}

// memDest is a Destination in memory that counts what it is asked and can
// block or fail a request at a given offset.
type memDest struct {
	mu        sync.Mutex
	data      []byte
	writes    int
	zeroes    int
	zeroBytes int64
	flushes   int
	inFlight  int
	peak      int
	written   []copier.Area
	failWrite int64                                // WriteAt here fails; -1 never
	failFlush bool                                 // Flush fails
	beforeOp  func(ctx context.Context, off int64) // called (unlocked) before each write
}

func newMemDest(size int64) *memDest {
	return &memDest{data: make([]byte, size), failWrite: -1}
}

func (d *memDest) enter(ctx context.Context, off int64) {
	d.mu.Lock()
	d.inFlight++
	d.peak = max(d.peak, d.inFlight)
	hook := d.beforeOp
	d.mu.Unlock()
	if hook != nil {
		hook(ctx, off)
	}
}

func (d *memDest) WriteAt(ctx context.Context, p []byte, off int64) error {
	d.enter(ctx, off)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inFlight--
	if err := ctx.Err(); err != nil {
		return err
	}
	if off == d.failWrite {
		return errors.New("export gone")
	}
	d.writes++
	d.written = append(d.written, copier.Area{Offset: off, Length: int64(len(p))})
	copy(d.data[off:], p)
	return nil
}

func (d *memDest) WriteZeroes(ctx context.Context, off, length int64) error {
	d.enter(ctx, off)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inFlight--
	if err := ctx.Err(); err != nil {
		return err
	}
	d.zeroes++
	d.zeroBytes += length
	d.written = append(d.written, copier.Area{Offset: off, Length: length})
	clear(d.data[off : off+length])
	return nil
}

func (d *memDest) Flush(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.flushes++
	if d.failFlush {
		return errors.New("fsync: I/O error")
	}
	return nil
}

// randomData returns n random bytes, seeded.
func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64() | 1 // never a zero word: a chunk of it is never zero
		for j := range 8 {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		p[i] = 0xa5
	}
	return p
}

// region is part of a test file: random data, zeros written (allocated),
// or a hole.
type region struct {
	off, n int64
	kind   string // "data", "zeros", "hole"
}

// writeSparse creates path of size bytes laid out by regions (the rest is a
// hole) and returns its content.
func writeSparse(t testing.TB, path string, size int64, regions []region) []byte {
	t.Helper()
	pieces := regionPieces(regions)
	testkit.SparseFile(t, path, size, pieces)
	want := make([]byte, size)
	for off, p := range pieces {
		copy(want[off:], p)
	}
	return want
}

// regionPieces returns the bytes of each region that is not a hole, by
// offset: random data, different for each region, or zeros.
func regionPieces(regions []region) map[int64][]byte {
	pieces := make(map[int64][]byte)
	for i, r := range regions {
		switch r.kind {
		case "data":
			pieces[r.off] = randomData(int(r.n), uint64(i+1))
		case "zeros":
			pieces[r.off] = make([]byte, r.n)
		}
	}
	return pieces
}

// allocated returns the bytes a file has on disk.
func allocated(t testing.TB, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// checkNoLeak fails the test if goroutines started after it are still
// running when the test ends (polling: a goroutine may be just returning).
func checkNoLeak(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(min(testkit.Wait(t), time.Minute))
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines: %d before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}

func mib(n int64) int64 { return n << 20 }
