package copier_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit/godwit/blockdigest"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/nbd/nbdtest"
)

// fileHasher hashes the file behind the destination where it lies, as the
// OMA does with its volume: the copier's Hasher without a bus.
type fileHasher struct {
	path     string
	calls    atomic.Int32
	inFlight atomic.Int32
	maxIn    atomic.Int32
	err      error   // returned instead of digests, when set
	at       []int64 // bytes of the file changed just before the batch that holds them is hashed
	// first, when not nil, is closed at the first call.
	first     chan struct{}
	firstOnce sync.Once
}

func (h *fileHasher) Digests(ctx context.Context, key []byte, areas []copier.Area) ([]blockdigest.Sum, error) {
	h.calls.Add(1)
	n := h.inFlight.Add(1)
	defer h.inFlight.Add(-1)
	for m := h.maxIn.Load(); n > m && !h.maxIn.CompareAndSwap(m, n); m = h.maxIn.Load() {
	}
	if h.first != nil {
		h.firstOnce.Do(func() { close(h.first) })
	}
	if h.err != nil {
		return nil, h.err
	}
	f, err := os.OpenFile(h.path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for _, off := range h.at { // the batch's areas are in order
		if off >= areas[0].Offset && off < areas[len(areas)-1].End() {
			if err := flipByte(f, off); err != nil {
				return nil, err
			}
		}
	}
	blocks := make([]blockdigest.Block, len(areas))
	for i, a := range areas {
		blocks[i] = blockdigest.Block{Offset: a.Offset, Length: a.Length}
	}
	return blockdigest.File(ctx, f, key, blocks, blockdigest.FileConfig{})
}

// flipByte changes the byte at off of f.
func flipByte(f *os.File, off int64) error {
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	b[0] ^= 0x40
	_, err := f.WriteAt(b, off)
	return err
}

// writeOnly hides everything of a destination but copier.Destination: it
// cannot be read back.
type writeOnly struct{ copier.Destination }

// TestVerifyWithHasher: with a Hasher, verification compares the digests of
// the destination's file with the source's, reading nothing back (the
// destination cannot be read), and finds a byte changed after it was
// written in data, in a hole, or in the last batch of blocks; a clean copy
// verifies.
func TestVerifyWithHasher(t *testing.T) {
	checkNoLeak(t)
	size := mib(300) // 300 blocks of 1 MiB: five batches of at most 64
	regions := []region{{0, mib(3) + 777, "data"}, {mib(5), mib(2), "zeros"}, {mib(9) + 4096, mib(2) + 100, "data"},
		{mib(290), mib(1), "data"}}
	srcPath := filepath.Join(t.TempDir(), "src")
	writeSparse(t, srcPath, size, regions)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	srcSrv := nbdtest.Start(t, "-r", "file", srcPath)
	tests := []struct {
		name    string
		flip    []int64
		wantOff int64 // -1: verified
	}{
		{"clean", nil, -1},
		{"data", []int64{mib(9) + 12345}, mib(9)},
		{"written zeros", []int64{mib(6) + 1}, mib(6)},
		{"hole", []int64{mib(22) + 7}, mib(22)},
		{"last batch", []int64{mib(290) + 5}, mib(290)},
		{"two changes: the first named", []int64{mib(290) + 5, mib(2)}, mib(2)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "dst"+strconv.Itoa(i))
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, size); err != nil {
				t.Fatal(err)
			}
			dst := openExport(t, ctx, nbdtest.Start(t, "file", p))
			h := &fileHasher{path: p, at: tt.flip}
			res, err := copier.Copy(ctx, writeOnly{dst}, openExport(t, ctx, srcSrv), []copier.Area{{Offset: 0, Length: size}},
				copier.Config{Verify: true, Depth: 8, RequestSize: 256 << 10, TargetIsZero: true, Hasher: h})
			checkMismatch(t, res, err, tt.wantOff)
			if tt.wantOff < 0 && (!res.Hashed || res.Progress.Verified != size) {
				t.Errorf("Hashed %v, %d bytes verified; want true, %d", res.Hashed, res.Progress.Verified, size)
			}
			if c, m := h.calls.Load(), h.maxIn.Load(); tt.wantOff < 0 && c != 5 || m > 2 {
				t.Errorf("Digests called %d times, %d at once; want 5 batches, at most 2 at once", c, m)
			}
		})
	}
}

// TestVerifyHasherFallsBack: a Hasher that nobody answers (ErrNoHasher)
// leaves verification to the read-back, which still finds a changed byte;
// without a readable destination the copy fails saying so. Another error
// of the Hasher fails the copy as an *Error of op "verify digests".
func TestVerifyHasherFallsBack(t *testing.T) {
	checkNoLeak(t)
	size, regions := verifyLayout()
	srcPath := filepath.Join(t.TempDir(), "src")
	writeSparse(t, srcPath, size, regions)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	srcSrv := nbdtest.Start(t, "-r", "file", srcPath)
	noHasher := fmt.Errorf("request: %w", copier.ErrNoHasher)
	broken := errors.New("disk on fire")
	tests := []struct {
		name      string
		err       error
		readable  bool
		flip      []int64
		wantOff   int64 // -1: verified; -2: another error
		wantError error
	}{
		{"no hasher: read back", noHasher, true, nil, -1, nil},
		{"no hasher: read back finds the change", noHasher, true, []int64{mib(9) + 1}, mib(9), nil},
		{"no hasher, not readable", noHasher, false, nil, -2, copier.ErrNoHasher},
		{"hasher fails", broken, true, nil, -2, broken},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "dst"+strconv.Itoa(i))
			if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
				t.Fatal(err)
			}
			var dst copier.Destination = &tamperDest{Endpoint: openExport(t, ctx, nbdtest.Start(t, "file", p)), path: p, at: tt.flip}
			if !tt.readable {
				dst = writeOnly{dst}
			}
			res, err := copier.Copy(ctx, dst, openExport(t, ctx, srcSrv), []copier.Area{{Offset: 0, Length: size}},
				copier.Config{Verify: true, Depth: 8, RequestSize: 256 << 10, Hasher: &fileHasher{path: p, err: tt.err}})
			if tt.wantOff >= -1 {
				checkMismatch(t, res, err, tt.wantOff)
				if res.Hashed {
					t.Error("Hashed, want read back")
				}
				return
			}
			if !errors.Is(err, tt.wantError) || res.Verified {
				t.Fatalf("Copy = %v, Verified %v; want %v", err, res.Verified, tt.wantError)
			}
			var ce *copier.Error
			if tt.wantError == broken && (!errors.As(err, &ce) || ce.Op != "verify digests") {
				t.Errorf("Copy = %v, want an *Error of op verify digests", err)
			}
		})
	}
}

// gatedSource holds reads at or above from until gate is closed.
type gatedSource struct {
	copier.Source
	from int64
	gate <-chan struct{}
}

func (s gatedSource) ReadAt(ctx context.Context, p []byte, off int64) error {
	if off >= s.from {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return fmt.Errorf("the Hasher was not asked before the copy's end: %w", ctx.Err())
		}
	}
	return s.Source.ReadAt(ctx, p, off)
}

// TestVerifyWhileCopying: the Hasher is asked for a batch as soon as its
// blocks are written, while the copy goes on: the source's last MiB is read
// only once it was (copying it all first and verifying after would wait
// forever), and the copy still verifies.
func TestVerifyWhileCopying(t *testing.T) {
	checkNoLeak(t)
	size := mib(130) // batches of 64 blocks: the first is written long before the end
	srcPath := filepath.Join(t.TempDir(), "src")
	writeSparse(t, srcPath, size, []region{{0, size, "data"}})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	p := filepath.Join(t.TempDir(), "dst")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	h := &fileHasher{path: p, first: make(chan struct{})}
	src := gatedSource{Source: openExport(t, ctx, nbdtest.Start(t, "-r", "file", srcPath)), from: size - mib(1), gate: h.first}
	res, err := copier.Copy(ctx, writeOnly{openExport(t, ctx, nbdtest.Start(t, "file", p))}, src, []copier.Area{{Offset: 0, Length: size}},
		copier.Config{Verify: true, Depth: 8, RequestSize: 256 << 10, TargetIsZero: true, Hasher: h})
	if err != nil || !res.Verified || !res.Hashed || res.Progress.Verified != size {
		t.Fatalf("Copy = %v, Verified %v, Hashed %v, %d bytes verified; want %d verified by the Hasher", err, res.Verified, res.Hashed, res.Progress.Verified, size)
	}
}
