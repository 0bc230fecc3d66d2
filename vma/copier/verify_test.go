package copier_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/export"
	"github.com/godwit/godwit/vma/copier/file"
	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/nbd/nbdtest"
)

// readableDest is a memDest that can be read back: a copier.Source too.
type readableDest struct {
	*memDest
	beforeRead func(ctx context.Context, off int64) // called before each read
}

func (d *readableDest) Size() int64 { return int64(len(d.data)) }

func (d *readableDest) ReadAt(ctx context.Context, p []byte, off int64) error {
	if d.beforeRead != nil {
		d.beforeRead(ctx, off)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(p, d.data[off:])
	return nil
}

// tamperDest flips a byte of the file behind an export at each offset of
// at once the copier has flushed it: a change behind the copier's back,
// before it reads back.
type tamperDest struct {
	*export.Endpoint
	path string
	at   []int64
}

func (d *tamperDest) Flush(ctx context.Context) error {
	if err := d.Endpoint.Flush(ctx); err != nil {
		return err
	}
	f, err := os.OpenFile(d.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, off := range d.at {
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, off); err != nil {
			return err
		}
		b[0] ^= 0x40
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
	}
	return nil
}

// openExport opens the export of srv with one connection, closed with t.
func openExport(t testing.TB, ctx context.Context, srv *nbdtest.Server) *export.Endpoint {
	t.Helper()
	e, err := export.Open(ctx, srv.URI, 1, nbd.Config{})
	if err != nil {
		t.Fatalf("open %s: %v", srv.URI, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// sumOf returns the SHA-256 of data's bytes in areas from resume on.
func sumOf(data []byte, areas []copier.Area, resume int64) []byte {
	h := sha256.New()
	for _, a := range areas {
		if from := max(a.Offset, resume); from < a.End() {
			h.Write(data[from:a.End()])
		}
	}
	return h.Sum(nil)
}

// verifyLayout is the source of the tests below: data, a hole, written
// zeros, data at odd offsets, and a zero tail.
func verifyLayout() (int64, []region) {
	return mib(24), []region{
		{0, mib(3) + 777, "data"},
		{mib(5), mib(2), "zeros"},
		{mib(9) + 4096, mib(2) + 100, "data"},
		{mib(14) + 3, 5000, "data"},
		{mib(16), mib(3), "data"},
	}
}

// A clean copy verifies, from files and nbdkit exports (file and memory)
// to files and exports, whatever the chunking, areas and resume point:
// Verified, every byte of the run read back, the Digest the source's.
func TestVerifyClean(t *testing.T) {
	checkNoLeak(t)
	size, regions := verifyLayout()
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src")
	want := writeSparse(t, srcPath, size, regions)
	whole := []copier.Area{{Offset: 0, Length: size}}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	srcSrv := nbdtest.Start(t, "-r", "file", srcPath)
	tests := []struct {
		name  string
		src   string // "file" or "nbd"
		dst   string // "file", "nbd-file", "nbd-memory" or "mem"
		areas []copier.Area
		cfg   copier.Config
	}{
		{"file to file", "file", "file", whole, copier.Config{}},
		{"file to file, target is zero", "file", "file", whole, copier.Config{TargetIsZero: true}},
		{"file to file, odd small requests", "file", "file", whole, copier.Config{Depth: 3, RequestSize: 192<<10 + 512}},
		{"file to file, big requests", "file", "file", whole, copier.Config{RequestSize: 3 << 20}},
		{"nbd to nbd memory", "nbd", "nbd-memory", whole, copier.Config{Depth: 8, RequestSize: 256 << 10}},
		{"nbd to nbd memory, target is zero", "nbd", "nbd-memory", whole, copier.Config{TargetIsZero: true}},
		{"nbd to nbd file", "nbd", "nbd-file", whole, copier.Config{Depth: 4}},
		{"areas and resume", "file", "mem", []copier.Area{{Offset: 100, Length: mib(4)}, {Offset: mib(6) + 1, Length: mib(3)},
			{Offset: mib(12), Length: mib(12)}}, copier.Config{ResumeFrom: mib(7) + 5, RequestSize: 64 << 10}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var src copier.Source
			switch tt.src {
			case "file":
				f, err := file.Open(srcPath)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				src = f
			default:
				src = openExport(t, ctx, srcSrv)
			}
			var dst copier.Destination
			var got func() []byte
			switch tt.dst {
			case "file", "nbd-file":
				p := filepath.Join(t.TempDir(), "dst"+strconv.Itoa(i))
				f, err := file.Create(p, size)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				dst = f
				if tt.dst == "nbd-file" {
					dst = openExport(t, ctx, nbdtest.Start(t, "file", p))
				}
				got = func() []byte { b, _ := os.ReadFile(p); return b }
			case "nbd-memory":
				e := openExport(t, ctx, nbdtest.Start(t, "memory", strconv.FormatInt(size, 10)))
				dst = e
				got = func() []byte {
					b := make([]byte, size)
					if err := e.ReadAt(ctx, b, 0); err != nil {
						t.Fatal(err)
					}
					return b
				}
			default:
				d := &readableDest{memDest: newMemDest(size)}
				dst = d
				got = func() []byte {
					b := bytes.Clone(want) // what the areas from ResumeFrom did not cover: as if copied
					for _, a := range tt.areas {
						if from := max(a.Offset, tt.cfg.ResumeFrom); from < a.End() {
							copy(b[from:a.End()], d.data[from:a.End()])
						}
					}
					return b
				}
			}
			var reports []copier.Progress
			cfg := tt.cfg
			cfg.Verify = true
			cfg.ProgressInterval = time.Nanosecond
			cfg.Progress = func(p copier.Progress) { reports = append(reports, p) }
			res, err := copier.Copy(ctx, dst, src, tt.areas, cfg)
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			if !bytes.Equal(got(), want) {
				t.Fatal("destination differs from source")
			}
			var run int64
			for _, a := range tt.areas {
				run += max(a.End()-max(a.Offset, tt.cfg.ResumeFrom), 0)
			}
			if !res.Verified || res.Progress.Verified != run {
				t.Errorf("Verified = %v, %d bytes read back; want true, %d", res.Verified, res.Progress.Verified, run)
			}
			if w := sumOf(want, tt.areas, tt.cfg.ResumeFrom); !bytes.Equal(res.Digest, w) {
				t.Errorf("Digest = %x, want %x", res.Digest, w)
			}
			// Verification reports its progress after the copy's.
			var last int64
			for _, p := range reports {
				if p.VerifyTotal != run {
					t.Fatalf("report %+v: VerifyTotal %d, want this run's %d bytes", p, p.VerifyTotal, run)
				}
				if p.Verified < last || (p.Verified > 0 && p.Checkpoint != res.Checkpoint) {
					t.Fatalf("report %+v after %d verified: want Verified growing once the copy is done", p, last)
				}
				last = p.Verified
			}
			if n := len(reports); n == 0 || reports[n-1].Verified != run {
				t.Errorf("the last report does not count the %d bytes verified", run)
			}
		})
	}
}

// A byte changed behind the copier's back after the flush fails
// verification naming its block (blocks of 1 MiB here): in data, in
// written zeros, in a hole. With TargetIsZero, a target that was not zero
// fails where the source has zeros the copy skipped.
func TestVerifyMismatch(t *testing.T) {
	checkNoLeak(t)
	size, regions := verifyLayout()
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src")
	writeSparse(t, srcPath, size, regions)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	srcSrv := nbdtest.Start(t, "-r", "file", srcPath)
	tests := []struct {
		name         string
		flip         []int64
		dirty        bool // the target holds 0xee before the copy
		targetIsZero bool
		wantOff      int64
	}{
		{"data", []int64{mib(9) + 12345}, false, false, mib(9)},
		{"written zeros", []int64{mib(6) + 1}, false, false, mib(6)},
		{"hole", []int64{mib(22) + 7}, false, true, mib(22)},
		{"three changes: the first named", []int64{mib(23), mib(2), mib(17) + 3}, false, false, mib(2)},
		{"dirty target, target is zero", nil, true, true, mib(3)}, // [3 MiB, 4 MiB): data, then zeros
		{"dirty target, zeros written", nil, true, false, -1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "dst"+strconv.Itoa(i))
			fill := byte(0)
			if tt.dirty {
				fill = 0xee
			}
			if err := os.WriteFile(p, bytes.Repeat([]byte{fill}, int(size)), 0o600); err != nil {
				t.Fatal(err)
			}
			dst := &tamperDest{Endpoint: openExport(t, ctx, nbdtest.Start(t, "file", p)), path: p, at: tt.flip}
			res, err := copier.Copy(ctx, dst, openExport(t, ctx, srcSrv), []copier.Area{{Offset: 0, Length: size}},
				copier.Config{Verify: true, Depth: 8, RequestSize: 256 << 10, TargetIsZero: tt.targetIsZero})
			checkMismatch(t, res, err, tt.wantOff)
		})
	}
}

// checkMismatch checks that a copy failed verification at the 1 MiB block
// at off, or passed when off is -1.
func checkMismatch(t *testing.T, res copier.Result, err error, off int64) {
	t.Helper()
	if off < 0 {
		if err != nil || !res.Verified {
			t.Fatalf("Copy = %v, Verified %v; want it verified", err, res.Verified)
		}
		return
	}
	var ve *copier.VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, copier.ErrMismatch) {
		t.Fatalf("Copy = %v, want a *VerifyError matching ErrMismatch", err)
	}
	want := "verify: bytes at offset " + strconv.FormatInt(off, 10) + " (+1048576) differ from the source"
	if ve.Offset != off || ve.Length != mib(1) || err.Error() != want {
		t.Errorf("Copy = %q (%+v), want %q", err, ve, want)
	}
	if res.Verified || res.Digest != nil || res.Checkpoint != off {
		t.Errorf("Verified %v, Digest %x, Checkpoint %d; want false, nil, %d", res.Verified, res.Digest, res.Checkpoint, off)
	}
}

// A read that fails while verifying is a read error naming its offset,
// not a mismatch.
func TestVerifyReadError(t *testing.T) {
	checkNoLeak(t)
	const size = 4 << 20
	data := randomData(size, 21)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dst := openExport(t, ctx, nbdtest.Start(t, "--filter=error", "memory", strconv.Itoa(size), "error=EIO", "error-pread-rate=100%"))
	res, err := copier.Copy(ctx, dst, newMemSource(data), []copier.Area{{Offset: 0, Length: size}},
		copier.Config{Verify: true, Depth: 1, RequestSize: 512 << 10})
	var ce *copier.Error
	if !errors.As(err, &ce) || ce.Op != "verify read" || ce.Offset != 0 || !errors.Is(err, nbd.EIO) || errors.Is(err, copier.ErrMismatch) {
		t.Fatalf("Copy = %v, want an *Error: verify read at offset 0, EIO, not ErrMismatch", err)
	}
	if want := "copy at offset 0: verify read: "; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
		t.Errorf("Copy = %q, want it to start %q", err, want)
	}
	if res.Verified || res.Checkpoint != size {
		t.Errorf("Verified %v, Checkpoint %d; want false, %d (the copy itself is done)", res.Verified, res.Checkpoint, size)
	}
}

// Verify needs a destination it can read back, as large as the areas:
// Copy refuses before touching it.
func TestVerifyNeedsReadableDestination(t *testing.T) {
	t.Parallel()
	src := newMemSource(make([]byte, 1<<20))
	whole := []copier.Area{{Offset: 0, Length: 1 << 20}}
	tests := []struct {
		name string
		dst  copier.Destination
	}{
		{"write only", newMemDest(1 << 20)},
		{"smaller", &readableDest{memDest: newMemDest(1<<20 - 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := copier.Copy(t.Context(), tt.dst, src, whole, copier.Config{Verify: true})
			if !errors.Is(err, copier.ErrConfig) {
				t.Errorf("Copy = %v, want ErrConfig", err)
			}
		})
	}
	d := newMemDest(1 << 20)
	if _, err := copier.Copy(t.Context(), d, src, whole, copier.Config{Verify: true}); d.writes+d.zeroes+d.flushes != 0 {
		t.Errorf("Copy = %v and touched the destination", err)
	}
}

// Cancelling during verification returns ctx's cause promptly, with no
// goroutine left behind.
func TestVerifyCancel(t *testing.T) {
	checkNoLeak(t)
	data := randomData(16<<20, 4)
	dst := &readableDest{memDest: newMemDest(int64(len(data)))}
	g := newGate(5 << 20) // never opened
	dst.beforeRead = g.hook
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := copier.Copy(ctx, dst, newMemSource(data), []copier.Area{{Offset: 0, Length: int64(len(data))}},
			copier.Config{Verify: true, Depth: 4, RequestSize: 1 << 20})
		errc <- err
	}()
	<-g.reached
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Copy cancelled while verifying = %v, want context.Canceled", err)
		}
	case <-time.After(testkit.Wait(t)):
		t.Fatal("Copy did not return after its context was cancelled")
	}
}

// BenchmarkVerify copies 1 GiB, half random data and half zeros (in
// alternating 32 MiB runs), from one nbdkit memory export to another:
// plainly, with Hash (the SHA-256 Verify also computes) and with Verify.
// The last two report their time over the first's (x-copy): what the
// digest and verification cost as a fraction of the copy.
func BenchmarkVerify(b *testing.B) {
	const size = 1 << 30
	ctx := b.Context()
	srcSrv := nbdtest.Start(b, "memory", strconv.Itoa(size))
	dstSrv := nbdtest.Start(b, "memory", strconv.Itoa(size))
	src, dst := openExport(b, ctx, srcSrv), openExport(b, ctx, dstSrv)
	const piece = 4 << 20
	for off := int64(0); off < size; off += 2 * mib(32) {
		for p := off; p < off+mib(32); p += piece {
			if err := src.WriteAt(ctx, randomData(piece, uint64(p)), p); err != nil {
				b.Fatal(err)
			}
		}
	}
	areas := []copier.Area{{Offset: 0, Length: size}}
	// Once before measuring: the target's memory is then allocated.
	if _, err := copier.Copy(ctx, dst, src, areas, copier.Config{}); err != nil {
		b.Fatal(err)
	}
	var plain time.Duration
	for _, bb := range []struct {
		name         string
		hash, verify bool
	}{{"copy", false, false}, {"copy+hash", true, false}, {"copy+verify", false, true}} {
		verify := bb.verify
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(size)
			var res copier.Result
			for b.Loop() {
				var err error
				res, err = copier.Copy(ctx, dst, src, areas, copier.Config{Hash: bb.hash, Verify: verify})
				if err != nil {
					b.Fatal(err)
				}
			}
			if res.Done != size || res.Verified != verify || (verify && res.Progress.Verified != size) {
				b.Fatalf("Done %d, Verified %v (%d bytes); want %d, %v", res.Done, res.Verified, res.Progress.Verified, int64(size), verify)
			}
			per := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(per.Seconds(), "s/copy")
			if !bb.hash && !verify {
				plain = per
			} else if plain > 0 {
				b.ReportMetric(float64(per)/float64(plain), "x-copy")
			}
		})
	}
}
