package copier_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/export"
	"github.com/godwit/godwit/vma/copier/file"
	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/nbd/nbdtest"
)

// put is a write into a sparse test image.
type put struct {
	off  int64
	data []byte
}

// sparseImage makes a sparse file of size bytes holding puts and opens it,
// closed with t.
func sparseImage(t testing.TB, path string, size int64, puts ...put) *file.Source {
	t.Helper()
	pieces := make(map[int64][]byte, len(puts))
	for _, p := range puts {
		pieces[p.off] = p.data
	}
	testkit.SparseFile(t, path, size, pieces)
	src, err := file.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// needHoles skips the test where the file system of t.TempDir() cannot
// tell holes: there every byte of a file is data, and read.
func needHoles(t *testing.T) {
	t.Helper()
	src := sparseImage(t, filepath.Join(t.TempDir(), "holes.raw"), 1<<20)
	exts, err := src.Extents(context.Background(), 0, src.Size())
	if err != nil || len(exts) != 1 || !exts[0].Zero {
		t.Skipf("the file system of %s does not report holes (%v, %v)", t.TempDir(), exts, err)
	}
}

// randBytes returns n random bytes, none of them zero.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(1 + r.IntN(255))
	}
	return p
}

// flipped returns a copy of p with the byte at i changed.
func flipped(p []byte, i int) []byte {
	q := bytes.Clone(p)
	q[i] ^= 0x5a
	return q
}

func TestCompareFiles(t *testing.T) {
	needHoles(t)
	const size = 16 << 20
	data := randBytes(1, 1<<20)
	small := []byte("boot sector")
	cfgs := []copier.CompareConfig{{}, {Depth: 3, ChunkSize: 64 << 10}, {Depth: 1, ChunkSize: 4096}}
	for _, tt := range []struct {
		name     string
		sizeB    int64 // 0: size
		a, b     []put
		wantDiff int64 // -1: same
		// minCompared is what must have been read at least: the union of
		// the writes (the file system may say a little more is data).
		minCompared int64
	}{
		{name: "identical", a: []put{{3 << 20, data}, {10 << 20, small}}, b: []put{{3 << 20, data}, {10 << 20, small}},
			wantDiff: -1, minCompared: 1<<20 + int64(len(small))},
		{name: "all holes", wantDiff: -1},
		{name: "differ in data", a: []put{{3 << 20, data}, {9 << 20, data}}, b: []put{{3 << 20, flipped(data, 12345)}, {9 << 20, flipped(data, 7)}},
			wantDiff: 3<<20 + 12345},
		{name: "differ in the last byte", a: []put{{size - 1, []byte{1}}}, b: []put{{size - 1, []byte{2}}}, wantDiff: size - 1},
		{name: "data where the other has a hole", a: []put{{5 << 20, data}}, b: []put{{5<<20 + 100, data[100:200]}},
			wantDiff: 5 << 20},
		{name: "hole where the other has data", a: []put{{2 << 20, small}}, b: []put{{2 << 20, small}, {7<<20 + 100, small}},
			wantDiff: 7<<20 + 100},
		{name: "zeros written where the other has a hole", a: []put{{1 << 20, data}, {5 << 20, make([]byte, 1<<20)}}, b: []put{{1 << 20, data}},
			wantDiff: -1, minCompared: 2 << 20},
		{name: "zeros written on both sides, data next to them", a: []put{{5 << 20, make([]byte, 1<<20)}, {6 << 20, data}}, b: []put{{6 << 20, data}, {4 << 20, make([]byte, 2<<20)}},
			wantDiff: -1, minCompared: 3 << 20},
		{name: "sizes differ", a: []put{{0, small}}, b: []put{{0, small}}, sizeB: size + 512, wantDiff: -2},
	} {
		for _, cfg := range cfgs {
			t.Run(tt.name+"/chunk="+strconv.Itoa(cfg.ChunkSize), func(t *testing.T) {
				dir := t.TempDir()
				a := sparseImage(t, filepath.Join(dir, "a.raw"), size, tt.a...)
				sizeB := int64(size)
				if tt.sizeB != 0 {
					sizeB = tt.sizeB
				}
				b := sparseImage(t, filepath.Join(dir, "b.raw"), sizeB, tt.b...)
				res, err := copier.Compare(context.Background(), a, b, cfg)
				switch tt.wantDiff {
				case -2:
					if !errors.Is(err, copier.ErrDiffer) || !strings.Contains(err.Error(), strconv.Itoa(size)) || !strings.Contains(err.Error(), strconv.FormatInt(sizeB, 10)) {
						t.Fatalf("Compare = %v, want an ErrDiffer naming sizes %d and %d", err, size, sizeB)
					}
					return
				case -1:
					if err != nil {
						t.Fatalf("Compare = %v, want the same", err)
					}
					if res.Size != size || res.Compared < tt.minCompared || res.Compared > tt.minCompared+1<<20 {
						t.Errorf("Compare = %+v, want size %d and about %d bytes compared", res, size, tt.minCompared)
					}
				default:
					var de *copier.DiffError
					if !errors.As(err, &de) || !errors.Is(err, copier.ErrDiffer) || de.Offset != tt.wantDiff {
						t.Fatalf("Compare = %v, want a difference at offset %d", err, tt.wantDiff)
					}
					if res.Compared > tt.wantDiff {
						t.Errorf("Compared = %d bytes, past the difference at %d", res.Compared, tt.wantDiff)
					}
				}
			})
		}
	}
}

// TestCompareHugeSparse compares 64 GiB files holding a few bytes: only the
// blocks that hold them are read.
func TestCompareHugeSparse(t *testing.T) {
	needHoles(t)
	const size = 64 << 30
	dir := t.TempDir()
	puts := []put{{1<<30 + 7, []byte("first")}, {63 << 30, []byte("second")}}
	a := sparseImage(t, filepath.Join(dir, "a.raw"), size, puts...)
	b := sparseImage(t, filepath.Join(dir, "b.raw"), size, puts...)
	ctx := context.Background()
	res, err := copier.Compare(ctx, a, b, copier.CompareConfig{})
	if err != nil || res.Size != size {
		t.Fatalf("Compare = %+v, %v; want the same, size %d", res, err, size)
	}
	if res.Compared == 0 || res.Compared > 1<<20 {
		t.Errorf("Compare read %d bytes of data, want the few blocks the writes made", res.Compared)
	}

	c := sparseImage(t, filepath.Join(dir, "c.raw"), size, puts[0], put{63 << 30, []byte("secXnd")})
	_, err = copier.Compare(ctx, a, c, copier.CompareConfig{})
	var de *copier.DiffError
	if !errors.As(err, &de) || de.Offset != 63<<30+3 {
		t.Errorf("Compare = %v, want a difference at offset %d", err, int64(63<<30+3))
	}
}

// hooked is a Comparable whose ReadAt and Extents can fail or act first.
type hooked struct {
	copier.Comparable
	read    func(ctx context.Context, off int64) error
	extents func(off int64) error
}

func (h *hooked) ReadAt(ctx context.Context, p []byte, off int64) error {
	if h.read != nil {
		if err := h.read(ctx, off); err != nil {
			return err
		}
	}
	return h.Comparable.ReadAt(ctx, p, off)
}

func (h *hooked) Extents(ctx context.Context, off, length int64) ([]copier.Extent, error) {
	if h.extents != nil {
		if err := h.extents(off); err != nil {
			return nil, err
		}
	}
	return h.Comparable.Extents(ctx, off, length)
}

// TestCompareFailures: the first failure or difference in offset order
// decides, whatever finishes first; a cancelled ctx stops Compare.
func TestCompareFailures(t *testing.T) {
	const size = 8 << 20
	dir := t.TempDir()
	data := randBytes(2, size)
	a := sparseImage(t, filepath.Join(dir, "a.raw"), size, put{0, data})
	b := sparseImage(t, filepath.Join(dir, "b.raw"), size, put{0, flipped(data, 5<<20+9)})
	boom := errors.New("boom")
	cfg := copier.CompareConfig{Depth: 4, ChunkSize: 1 << 20}

	// A read failing above the difference loses, even when it comes first.
	slowA := &hooked{Comparable: a, read: func(_ context.Context, off int64) error {
		if off == 5<<20 {
			time.Sleep(50 * time.Millisecond)
		}
		return nil
	}}
	failB := &hooked{Comparable: b, read: func(_ context.Context, off int64) error {
		if off == 6<<20 {
			return boom
		}
		return nil
	}}
	res, err := copier.Compare(context.Background(), slowA, failB, cfg)
	var de *copier.DiffError
	if !errors.As(err, &de) || de.Offset != 5<<20+9 || res.Compared != 5<<20 {
		t.Errorf("Compare = %+v, %v; want a difference at %d after 5 MiB", res, err, 5<<20+9)
	}

	// A read failing below the difference wins.
	failB.read = func(_ context.Context, off int64) error {
		if off == 2<<20 {
			return boom
		}
		return nil
	}
	_, err = copier.Compare(context.Background(), a, failB, cfg)
	if !errors.Is(err, boom) || err.Error() != "compare at offset 2097152: read b: boom" {
		t.Errorf("Compare = %v, want the read of b at 2097152 to fail", err)
	}

	// Extents failing.
	_, err = copier.Compare(context.Background(), &hooked{Comparable: a, extents: func(int64) error { return boom }}, b, cfg)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "extents a") {
		t.Errorf("Compare = %v, want the extents of a to fail", err)
	}

	// Cancelled while reading.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var reads atomic.Int32
	cancelling := &hooked{Comparable: a, read: func(context.Context, int64) error {
		if reads.Add(1) == 2 {
			cancel()
		}
		return nil
	}}
	if _, err := copier.Compare(ctx, cancelling, a, cfg); !errors.Is(err, context.Canceled) {
		t.Errorf("Compare with ctx cancelled = %v, want context.Canceled", err)
	}
	// Cancelled before, with nothing to read.
	holes := sparseImage(t, filepath.Join(dir, "holes.raw"), size)
	if _, err := copier.Compare(ctx, holes, holes, cfg); !errors.Is(err, context.Canceled) {
		t.Errorf("Compare with ctx cancelled = %v, want context.Canceled", err)
	}

	if _, err := copier.Compare(context.Background(), a, a, copier.CompareConfig{ChunkSize: copier.MaxRequestSize + 1}); !errors.Is(err, copier.ErrConfig) {
		t.Errorf("Compare with a chunk too big = %v, want ErrConfig", err)
	}
}

// TestCompareExport compares an nbdkit memory export with a file holding
// the same bytes, then with one byte changed.
func TestCompareExport(t *testing.T) {
	const size = 32 << 20
	dir := t.TempDir()
	data := randBytes(3, 3<<20)
	puts := []put{{1 << 20, data}, {20<<20 + 5, []byte("tail")}}
	f := sparseImage(t, filepath.Join(dir, "f.raw"), size, puts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := export.Open(ctx, nbdtest.Start(t, "memory", strconv.Itoa(size)).URI, 1, nbd.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, p := range puts {
		if err := e.WriteAt(ctx, p.data, p.off); err != nil {
			t.Fatal(err)
		}
	}
	res, err := copier.Compare(ctx, f, e, copier.CompareConfig{})
	if err != nil || res.Size != size {
		t.Fatalf("Compare(file, export) = %+v, %v; want the same", res, err)
	}
	if res.Compared < int64(len(data)) || res.Compared > 8<<20 {
		t.Errorf("Compare read %d bytes of data, want about the %d written", res.Compared, len(data))
	}

	const at = 2<<20 + 777
	if err := e.WriteAt(ctx, []byte{data[at-1<<20] ^ 1}, at); err != nil {
		t.Fatal(err)
	}
	_, err = copier.Compare(ctx, e, f, copier.CompareConfig{Depth: 2, ChunkSize: 256 << 10})
	var de *copier.DiffError
	if !errors.As(err, &de) || de.Offset != at {
		t.Errorf("Compare(export, file) = %v, want a difference at offset %d", err, at)
	}
}
