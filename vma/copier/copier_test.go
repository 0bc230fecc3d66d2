package copier_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/file"
)

// copyFile copies src to a new dst of the same size through the file
// Source and Destination.
func copyFile(t testing.TB, ctx context.Context, srcPath, dstPath string, areas []copier.Area, cfg copier.Config) (copier.Result, error) {
	t.Helper()
	src, err := file.Open(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := file.Create(dstPath, src.Size())
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if areas == nil {
		areas = []copier.Area{{Offset: 0, Length: src.Size()}}
	}
	return copier.Copy(ctx, dst, src, areas, cfg)
}

func TestCopyFileRoundTrip(t *testing.T) {
	checkNoLeak(t)
	size := mib(40) + 12345
	regions := []region{
		{0, mib(3), "data"},
		{mib(3), mib(2), "zeros"}, // allocated zeros: found by looking
		{mib(7) + 4096, mib(1) + 100, "data"},
		{mib(12), mib(4), "zeros"},
		{mib(20) + 77, 5000, "data"}, // unaligned, inside a hole
		{mib(30), mib(10) + 12345, "data"},
	}
	var data, zeros int64
	for _, r := range regions {
		if r.kind == "data" {
			data += r.n
		} else {
			zeros += r.n
		}
	}
	tests := []struct {
		name string
		cfg  copier.Config
	}{
		{"defaults", copier.Config{}},
		{"depth 1", copier.Config{Depth: 1}},
		{"small odd requests", copier.Config{Depth: 4, RequestSize: 64<<10 + 512}},
		{"target is zero", copier.Config{TargetIsZero: true}},
		{"hashed", copier.Config{Hash: true, RequestSize: 3 << 20}},
	}
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src")
	want := writeSparse(t, srcPath, size, regions)
	if got := allocated(t, srcPath); got < data+zeros {
		t.Fatalf("source allocates %d bytes, want at least %d", got, data+zeros)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dstPath := filepath.Join(t.TempDir(), "dst")
			res, err := copyFile(t, t.Context(), srcPath, dstPath, nil, tt.cfg)
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			got, err := os.ReadFile(dstPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("destination differs from source")
			}
			if res.Done != size || res.Total != size || res.Checkpoint != size {
				t.Errorf("Done, Total, Checkpoint = %d, %d, %d; want %d each", res.Done, res.Total, res.Checkpoint, size)
			}
			// Zeros are seen per file system block (extents) and per chunk
			// (looking), so a few of them next to data count as data.
			if res.Zero > size-data || res.Zero < size-data-mib(1)/4 {
				t.Errorf("Zero = %d, want about %d (holes and written zeros)", res.Zero, size-data)
			}
			// Holes stayed holes, written zeros became holes: only the data
			// (rounded to blocks) is allocated.
			if a := allocated(t, dstPath); a > data+mib(1) {
				t.Errorf("destination allocates %d bytes, want about %d", a, data)
			}
			if tt.cfg.Hash {
				if sum := sha256.Sum256(want); !bytes.Equal(res.Digest, sum[:]) {
					t.Errorf("Digest = %x, want %x", res.Digest, sum)
				}
			} else if res.Digest != nil {
				t.Errorf("Digest = %x without Hash, want nil", res.Digest)
			}
		})
	}
}

func TestCopyZeros(t *testing.T) {
	checkNoLeak(t)
	const req = 1 << 20
	data := randomData(8*req, 7)
	clear(data[2*req : 4*req]) // two zero chunks, found by looking
	clear(data[6*req : 7*req]) // one hole in the extents
	holes := []copier.Area{{Offset: 6 * req, Length: req}}
	tests := []struct {
		name         string
		extents      bool
		targetIsZero bool
		wantZeroes   int // WriteZeroes calls
		wantWrites   int
	}{
		{"looked at", false, false, 3, 5},
		{"looked at, target zero", false, true, 0, 5},
		{"extents", true, false, 3, 5},
		{"extents, target zero", true, true, 0, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := newMemSource(data)
			var src copier.Source = ms
			if tt.extents {
				src = &extentSource{memSource: ms, holes: holes}
			}
			dst := newMemDest(int64(len(data)))
			res, err := copier.Copy(t.Context(), dst, src, []copier.Area{{Offset: 0, Length: int64(len(data))}},
				copier.Config{RequestSize: req, Depth: 3, TargetIsZero: tt.targetIsZero})
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			if !bytes.Equal(dst.data, data) {
				t.Error("destination differs from source")
			}
			if dst.zeroes != tt.wantZeroes || dst.writes != tt.wantWrites {
				t.Errorf("WriteZeroes, WriteAt calls = %d, %d; want %d, %d", dst.zeroes, dst.writes, tt.wantZeroes, tt.wantWrites)
			}
			if res.Zero != 3*req {
				t.Errorf("Zero = %d, want %d", res.Zero, 3*req)
			}
			if dst.flushes != 1 {
				t.Errorf("flushes = %d, want 1", dst.flushes)
			}
			for _, r := range ms.reads {
				if tt.extents && r.Offset < holes[0].End() && r.End() > holes[0].Offset {
					t.Errorf("read %v of the hole %v", r, holes[0])
				}
			}
		})
	}
}

func TestCopyAreas(t *testing.T) {
	checkNoLeak(t)
	data := randomData(10<<20, 3)
	tests := []struct {
		name   string
		areas  []copier.Area
		resume int64
	}{
		{"none", nil, 0},
		{"one", []copier.Area{{Offset: 4096, Length: 3 << 20}}, 0},
		{"several unaligned", []copier.Area{{Offset: 1, Length: 10}, {Offset: 100, Length: 2<<20 + 1}, {Offset: 5 << 20, Length: 5 << 20}}, 0},
		{"adjacent", []copier.Area{{Offset: 0, Length: 1 << 20}, {Offset: 1 << 20, Length: 1 << 20}}, 0},
		{"resume inside an area", []copier.Area{{Offset: 100, Length: 2 << 20}, {Offset: 5 << 20, Length: 5 << 20}}, 1<<20 + 7},
		{"resume between areas", []copier.Area{{Offset: 100, Length: 2 << 20}, {Offset: 5 << 20, Length: 5 << 20}}, 3 << 20},
		{"resume past the end", []copier.Area{{Offset: 100, Length: 2 << 20}}, 9 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := newMemDest(int64(len(data)))
			for i := range dst.data {
				dst.data[i] = 0xee // what was not copied stays
			}
			want := bytes.Clone(dst.data)
			var total, resumed int64
			h := sha256.New()
			for _, a := range tt.areas {
				total += a.Length
				from := max(a.Offset, tt.resume)
				if from < a.End() {
					copy(want[from:a.End()], data[from:a.End()])
					h.Write(data[from:a.End()])
				}
				resumed += min(max(tt.resume-a.Offset, 0), a.Length)
			}
			var reports []copier.Progress
			res, err := copier.Copy(t.Context(), dst, newMemSource(data), tt.areas, copier.Config{
				RequestSize: 1 << 20, Depth: 4, ResumeFrom: tt.resume, Hash: true,
				Progress: func(p copier.Progress) { reports = append(reports, p) }, ProgressInterval: time.Nanosecond,
				Clock: newFakeClock()})
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			if !bytes.Equal(dst.data, want) {
				t.Error("destination holds other bytes than the areas' from the resume point")
			}
			for _, w := range dst.written {
				if w.Offset < tt.resume {
					t.Errorf("wrote %v below ResumeFrom %d", w, tt.resume)
				}
			}
			if res.Total != total || res.Done != total {
				t.Errorf("Total, Done = %d, %d; want %d, %d", res.Total, res.Done, total, total)
			}
			if len(reports) == 0 || reports[0].Done < resumed {
				t.Errorf("reports %v: want the first to count the %d resumed bytes", reports, resumed)
			}
			wantCheckpoint := tt.resume
			if n := len(tt.areas); n > 0 {
				wantCheckpoint = max(tt.resume, tt.areas[n-1].End())
			}
			if res.Checkpoint != wantCheckpoint {
				t.Errorf("Checkpoint = %d, want %d", res.Checkpoint, wantCheckpoint)
			}
			if !bytes.Equal(res.Digest, h.Sum(nil)) {
				t.Errorf("Digest = %x, want the sha256 of the areas from the resume point %x", res.Digest, h.Sum(nil))
			}
		})
	}
}

func TestCopyBadArguments(t *testing.T) {
	t.Parallel()
	src := newMemSource(make([]byte, 1000))
	tests := []struct {
		name  string
		areas []copier.Area
		cfg   copier.Config
	}{
		{"past the end", []copier.Area{{Offset: 900, Length: 101}}, copier.Config{}},
		{"negative offset", []copier.Area{{Offset: -1, Length: 10}}, copier.Config{}},
		{"negative length", []copier.Area{{Offset: 10, Length: -1}}, copier.Config{}},
		{"unsorted", []copier.Area{{Offset: 500, Length: 10}, {Offset: 0, Length: 10}}, copier.Config{}},
		{"overlapping", []copier.Area{{Offset: 0, Length: 10}, {Offset: 5, Length: 10}}, copier.Config{}},
		{"request too big", nil, copier.Config{RequestSize: copier.MaxRequestSize + 1}},
		{"negative depth", nil, copier.Config{Depth: -1}},
		{"negative resume", nil, copier.Config{ResumeFrom: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dst := newMemDest(1000)
			_, err := copier.Copy(t.Context(), dst, src, tt.areas, tt.cfg)
			if !errors.Is(err, copier.ErrConfig) {
				t.Errorf("Copy(%v, %+v) = %v, want ErrConfig", tt.areas, tt.cfg, err)
			}
			if dst.writes+dst.zeroes+dst.flushes != 0 {
				t.Error("a refused copy touched the destination")
			}
		})
	}
}

func TestCopyErrors(t *testing.T) {
	checkNoLeak(t)
	data := randomData(16<<20, 5)
	tests := []struct {
		name      string
		readFail  int64
		writeFail int64
		flushFail bool
		want      string
		wantOp    string
	}{
		{"write", -1, 3 << 20, false, "copy at offset 3145728: write: export gone", "write"},
		{"read", 5 << 20, -1, false, "copy at offset 5242880: read: disk on fire", "read"},
		{"flush", -1, -1, true, "copy: flush: fsync: I/O error", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newMemSource(data)
			src.fail = tt.readFail
			dst := newMemDest(int64(len(data)))
			dst.failWrite, dst.failFlush = tt.writeFail, tt.flushFail
			res, err := copier.Copy(t.Context(), dst, src, []copier.Area{{Offset: 0, Length: int64(len(data))}},
				copier.Config{RequestSize: 1 << 20, Depth: 4})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Copy = %v, want %q", err, tt.want)
			}
			var ce *copier.Error
			if got := errors.As(err, &ce); got != (tt.wantOp != "") || (got && ce.Op != tt.wantOp) {
				t.Errorf("errors.As(%v, *Error) = %v (%+v), want op %q", err, got, ce, tt.wantOp)
			}
			if tt.wantOp != "" {
				if res.Checkpoint > ce.Offset {
					t.Errorf("Checkpoint %d past the failed offset %d", res.Checkpoint, ce.Offset)
				}
				if dst.flushes != 0 {
					t.Error("flushed after a failed request")
				}
			}
		})
	}
}

// gate blocks every request at offset until it is opened.
type gate struct {
	offset  int64
	reached chan struct{}
	open    chan struct{}
	once    sync.Once
}

func newGate(offset int64) *gate {
	return &gate{offset: offset, reached: make(chan struct{}), open: make(chan struct{})}
}

func (g *gate) hook(ctx context.Context, off int64) {
	if off != g.offset {
		return
	}
	g.once.Do(func() { close(g.reached) })
	select {
	case <-g.open:
	case <-ctx.Done():
	}
}

func TestCopyCheckpointWaitsForGap(t *testing.T) {
	checkNoLeak(t)
	const req = 1 << 20
	data := randomData(32*req, 11)
	g := newGate(5 * req)
	dst := newMemDest(int64(len(data)))
	dst.beforeOp = g.hook
	reports := make(chan copier.Progress, 1000)
	var res copier.Result
	var err error
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		res, err = copier.Copy(t.Context(), dst, newMemSource(data), []copier.Area{{Offset: 0, Length: int64(len(data))}},
			copier.Config{RequestSize: req, Depth: 8, ProgressInterval: time.Nanosecond,
				Progress: func(p copier.Progress) { reports <- p }})
	}()
	<-g.reached
	// The other workers go on past the gap: wait until everything below
	// it and at least 7 chunks above it are done.
	for p := range reports {
		if p.Checkpoint > 5*req {
			t.Fatalf("checkpoint %d passed the unfinished chunk at %d", p.Checkpoint, 5*req)
		}
		if p.Checkpoint == 5*req && p.Done >= 12*req {
			break
		}
	}
	close(g.open)
	<-finished
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if res.Checkpoint != int64(len(data)) || !bytes.Equal(dst.data, data) {
		t.Errorf("Checkpoint = %d, want %d, and the data whole", res.Checkpoint, len(data))
	}
}

func TestCopyDepthReached(t *testing.T) {
	checkNoLeak(t)
	for _, depth := range []int{1, 4, 16} {
		data := randomData(4*depth<<16, uint64(depth))
		dst := newMemDest(int64(len(data)))
		// Each request waits until depth are in flight (or the test gives up).
		all := make(chan struct{})
		var once sync.Once
		dst.beforeOp = func(ctx context.Context, _ int64) {
			dst.mu.Lock()
			n := dst.inFlight
			dst.mu.Unlock()
			if n >= depth {
				once.Do(func() { close(all) })
			}
			select {
			case <-all:
			case <-ctx.Done():
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := copier.Copy(ctx, dst, newMemSource(data), []copier.Area{{Offset: 0, Length: int64(len(data))}},
			copier.Config{RequestSize: 1 << 16, Depth: depth})
		cancel()
		if err != nil {
			t.Fatalf("Copy with depth %d: %v (peak in flight %d)", depth, err, dst.peak)
		}
		if dst.peak != depth {
			t.Errorf("peak in flight = %d, want Depth %d", dst.peak, depth)
		}
	}
}

func TestCopyCancel(t *testing.T) {
	checkNoLeak(t)
	data := randomData(8<<20, 2)
	g := newGate(3 << 20) // never opened: only cancellation ends the copy
	dst := newMemDest(int64(len(data)))
	dst.beforeOp = g.hook
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := copier.Copy(ctx, dst, newMemSource(data), []copier.Area{{Offset: 0, Length: int64(len(data))}},
			copier.Config{RequestSize: 1 << 20, Depth: 2})
		errc <- err
	}()
	<-g.reached
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Copy after cancel = %v, want context.Canceled", err)
	}
	if dst.flushes != 0 {
		t.Error("a cancelled copy flushed")
	}
}

func TestCopyRateLimit(t *testing.T) {
	checkNoLeak(t)
	const req = 1 << 20
	data := randomData(64*req, 9)
	clock := newFakeClock()
	lim := copier.NewLimiter(8*req, clock) // 8 MiB/s, then 32 MiB/s from 32 MiB on
	var changedAt int64
	start := clock.Now()
	res, err := copier.Copy(t.Context(), newMemDest(int64(len(data))), newMemSource(data),
		[]copier.Area{{Offset: 0, Length: int64(len(data))}},
		copier.Config{RequestSize: req, Depth: 4, Limiter: lim, Clock: clock, ProgressInterval: time.Nanosecond,
			Progress: func(p copier.Progress) {
				if changedAt == 0 && p.Done >= 32*req {
					changedAt = p.Done
					lim.SetRate(32 * req)
				}
			}})
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	// The fake clock moves only when the limiter waits: what was done when
	// the rate changed (32 MiB or more: progress may come late on a busy
	// machine) at 8 MiB/s, the rest at 32 MiB/s. Up to Depth requests
	// passed the limiter before the change: allow them either rate.
	elapsed := clock.Now().Sub(start)
	slow, fast := float64(changedAt)/req, float64(64*req-changedAt)/req // MiB
	lo := time.Duration(float64(time.Second) * (slow/8 + fast/32 - 0.2))
	hi := time.Duration(float64(time.Second) * (slow/8 + 4.0/8 + fast/32 + 0.2))
	if changedAt == 0 || elapsed < lo || elapsed > hi {
		t.Errorf("64 MiB took %v of the limiter's time (rate changed at %d bytes), want %v..%v", elapsed, changedAt, lo, hi)
	}
	if res.AvgRate <= 8*req || res.AvgRate >= 32*req {
		t.Errorf("AvgRate = %.0f, want between the two rates", res.AvgRate)
	}
	if lim.Rate() != 32*req {
		t.Errorf("Rate() = %d, want %d", lim.Rate(), 32*req)
	}
}

// TestVerifyRateLimit: reading back crosses the link as writing did, so
// the Limiter bounds it too: data at 8 MiB/s, then its zeros for free.
func TestVerifyRateLimit(t *testing.T) {
	checkNoLeak(t)
	const req = 1 << 20
	data := append(randomData(8*req, 11), make([]byte, 8*req)...)
	for _, verify := range []bool{false, true} {
		clock := newFakeClock()
		start := clock.Now()
		res, err := copier.Copy(t.Context(), &readableDest{memDest: newMemDest(int64(len(data)))}, newMemSource(data),
			[]copier.Area{{Offset: 0, Length: int64(len(data))}},
			copier.Config{RequestSize: req, Depth: 4, Limiter: copier.NewLimiter(8*req, clock), Clock: clock, Verify: verify})
		if err != nil || res.Verified != verify {
			t.Fatalf("Copy (verify %v) = %v, verified %v", verify, err, res.Verified)
		}
		// 8 MiB of data at 8 MiB/s is 1 s to write, 1 s more to read back.
		want := time.Second
		if verify {
			want = 2 * time.Second
		}
		if elapsed := clock.Now().Sub(start); elapsed < want-200*time.Millisecond || elapsed > want+200*time.Millisecond {
			t.Errorf("verify %v: took %v of the limiter's time, want about %v", verify, elapsed, want)
		}
	}
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	lim := copier.NewLimiter(1000, clock)
	start := clock.Now()
	for range 10 {
		if err := lim.Wait(t.Context(), 500); err != nil {
			t.Fatal(err)
		}
	}
	if got := clock.Now().Sub(start); got < 5*time.Second || got > 5*time.Second+time.Millisecond {
		t.Errorf("5000 bytes at 1000 B/s took %v, want 5s", got)
	}
	// Larger than a second's burst still passes, in its own time.
	start = clock.Now()
	if err := lim.Wait(t.Context(), 3000); err != nil {
		t.Fatal(err)
	}
	if got := clock.Now().Sub(start); got < 3*time.Second || got > 3*time.Second+time.Millisecond {
		t.Errorf("3000 bytes at 1000 B/s took %v, want 3s", got)
	}
	lim.SetRate(0)
	start = clock.Now()
	if err := lim.Wait(t.Context(), 1<<30); err != nil || clock.Now() != start {
		t.Errorf("unlimited Wait = %v after %v, want nil at once", err, clock.Now().Sub(start))
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	lim.SetRate(1)
	if err := lim.Wait(ctx, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a cancelled context = %v, want context.Canceled", err)
	}
}

// A waiter under a tiny rate is woken by SetRate, not left for its old wait.
func TestLimiterSetRateWakesWaiter(t *testing.T) {
	checkNoLeak(t)
	lim := copier.NewLimiter(1, nil) // 1 B/s: a 1 MiB wait would take 12 days
	errc := make(chan error, 1)
	go func() { errc <- lim.Wait(t.Context(), 1<<20) }()
	for {
		lim.SetRate(1 << 40)
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
			return
		case <-time.After(time.Millisecond):
			lim.SetRate(1) // the waiter may not have started yet: try again
		}
	}
}
