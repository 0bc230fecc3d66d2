package nbd_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/nbd/nbdtest"
)

// TestBlockSizeSplit serves an export that refuses requests over 64 KiB (blocksize-policy with
// the error policy): 1 MiB reads and writes succeed, sent as 16 pieces in flight at once.
func TestBlockSizeSplit(t *testing.T) {
	t.Parallel()
	srv := nbdtest.Start(t, "--filter=blocksize-policy", "--filter=delay", "memory", "16M",
		"blocksize-maximum=65536", "blocksize-minimum=512", "blocksize-error-policy=error", "wdelay=100ms")
	c := dial(t, srv.URI, nbd.Config{})
	if lo, pref, hi := c.BlockSize(); lo != 512 || pref != 4096 || hi != 65536 {
		t.Fatalf("BlockSize() = %d, %d, %d, want 512, 4096, 65536", lo, pref, hi)
	}
	ctx := context.Background()
	want := randomBytes(7, 1<<20)
	if err := c.WriteAt(ctx, want, 1<<20, true); err != nil {
		t.Fatalf("WriteAt 1 MiB = %v", err)
	}
	if got := c.PeakInFlight(); got != 16 {
		t.Errorf("PeakInFlight() = %d after a 1 MiB write, want 16 pieces of 64 KiB", got)
	}
	got := make([]byte, len(want))
	if err := c.ReadAt(ctx, got, 1<<20); err != nil {
		t.Fatalf("ReadAt 1 MiB = %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("1 MiB read back differs")
	}
}

// TestDelayDepth keeps MaxInFlight requests in flight on a slow server, and never more.
func TestDelayDepth(t *testing.T) {
	t.Parallel()
	srv := nbdtest.Start(t, "--filter=delay", "memory", "16M", "rdelay=30ms")
	c := dial(t, srv.URI, nbd.Config{MaxInFlight: 8})
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			p := make([]byte, 4096)
			if err := c.ReadAt(context.Background(), p, int64(i)*4096); err != nil {
				t.Errorf("ReadAt = %v", err)
			}
		})
	}
	wg.Wait()
	if got := c.PeakInFlight(); got != 8 {
		t.Errorf("PeakInFlight() = %d, want MaxInFlight 8", got)
	}
}

// TestServerErrors injects errors with nbdkit's error filter: each is an *Error naming the command,
// the offset and the errno, and the connection keeps working.
func TestServerErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		args  []string
		call  func(*nbd.Client) error
		errno nbd.Errno
		msg   string
	}{
		{"write EIO", []string{"error-pwrite=EIO", "error-pwrite-rate=100%"},
			func(c *nbd.Client) error { return c.WriteAt(context.Background(), make([]byte, 65536), 1<<20, false) },
			nbd.EIO, "nbd write at 1048576 (+65536): EIO"},
		{"read EPERM", []string{"error-pread=EPERM", "error-pread-rate=100%"},
			func(c *nbd.Client) error { return c.ReadAt(context.Background(), make([]byte, 512), 4096) },
			nbd.EPERM, "nbd read at 4096 (+512): EPERM"},
		{"zero ENOSPC", []string{"error-zero=ENOSPC", "error-zero-rate=100%"},
			func(c *nbd.Client) error { return c.WriteZeroes(context.Background(), 8192, 4096, nbd.NoHole) },
			nbd.ENOSPC, "nbd write zeroes at 8192 (+4096): ENOSPC"},
		{"trim ESHUTDOWN", []string{"error-trim=ESHUTDOWN", "error-trim-rate=100%"},
			func(c *nbd.Client) error { return c.Trim(context.Background(), 0, 4096) },
			nbd.ESHUTDOWN, "nbd trim at 0 (+4096): ESHUTDOWN"},
		{"extents EIO", []string{"error-extents=EIO", "error-extents-rate=100%"},
			func(c *nbd.Client) error { _, err := c.BlockStatus(context.Background(), 0, 4096); return err },
			nbd.EIO, "nbd block status at 0 (+4096): EIO"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := nbdtest.Start(t, append([]string{"--filter=error", "memory", "4M"}, tc.args...)...)
			c := dial(t, srv.URI, nbd.Config{})
			err := tc.call(c)
			var e *nbd.Error
			if !errors.As(err, &e) || !errors.Is(err, tc.errno) || err.Error() != tc.msg {
				t.Fatalf("call = %v, want *nbd.Error %q", err, tc.msg)
			}
			if err := c.Flush(context.Background()); err != nil {
				t.Fatalf("Flush after the error = %v, want the connection still working", err)
			}
		})
	}
}

// TestFileHoles reads a sparse file's holes with BlockStatus, and punches one with WriteZeroes.
func TestFileHoles(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	srv := nbdtest.Start(t, "file", path)
	c := dial(t, srv.URI, nbd.Config{})
	ctx := context.Background()
	if err := c.WriteAt(ctx, randomBytes(1, 1<<20), 2<<20, false); err != nil {
		t.Fatalf("WriteAt = %v", err)
	}
	want := []nbd.Extent{
		{Offset: 0, Length: 2 << 20, Hole: true, Zero: true},
		{Offset: 2 << 20, Length: 1 << 20},
		{Offset: 3 << 20, Length: 5 << 20, Hole: true, Zero: true},
	}
	if got, err := c.BlockStatus(ctx, 0, 8<<20); err != nil || !equalExtents(got, want) {
		t.Fatalf("BlockStatus = %v, %v, want %v", got, err, want)
	}
	if err := c.WriteZeroes(ctx, 2<<20, 1<<20, 0); err != nil {
		t.Fatalf("WriteZeroes = %v", err)
	}
	want = []nbd.Extent{{Offset: 0, Length: 8 << 20, Hole: true, Zero: true}}
	if got, err := c.BlockStatus(ctx, 0, 8<<20); err != nil || !equalExtents(got, want) {
		t.Fatalf("BlockStatus after WriteZeroes = %v, %v, want %v", got, err, want)
	}
	// TRIM gives space back too: the file plugin punches a hole.
	if err := c.WriteAt(ctx, randomBytes(2, 1<<20), 4<<20, false); err != nil {
		t.Fatalf("WriteAt = %v", err)
	}
	if got, err := c.BlockStatus(ctx, 4<<20, 1<<20); err != nil || len(got) != 1 || got[0].Hole {
		t.Fatalf("BlockStatus of written data = %v, %v", got, err)
	}
	if err := c.Trim(ctx, 4<<20, 1<<20); err != nil {
		t.Fatalf("Trim = %v", err)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	if got, err := c.BlockStatus(ctx, 0, 8<<20); err != nil || !equalExtents(got, want) {
		t.Fatalf("BlockStatus after Trim = %v, %v, want %v", got, err, want)
	}
	// A read across the holes gets the bytes right (OFFSET_HOLE chunks or data).
	p := bytes.Repeat([]byte{0xaa}, 4<<20)
	if err := c.ReadAt(ctx, p, 1<<20); err != nil {
		t.Fatalf("ReadAt = %v", err)
	}
	if !bytes.Equal(p, make([]byte, len(p))) {
		t.Fatal("ReadAt over holes: not all zeroes")
	}
}

func equalExtents(a, b []nbd.Extent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSparseRandom compares BlockStatus with nbdinfo --map and ReadAt with nbdcopy, on the same seed.
func TestSparseRandom(t *testing.T) {
	t.Parallel()
	const size = 16 << 20
	srv := nbdtest.Start(t, "sparse-random", "size=16M", "seed=4242", "percent=30", "runlength=65536")
	c := dial(t, srv.URI, nbd.Config{})
	ctx := context.Background()
	got, err := c.BlockStatus(ctx, 0, size)
	if err != nil {
		t.Fatalf("BlockStatus = %v", err)
	}
	out, err := exec.Command("nbdinfo", "--map", srv.URI).Output()
	if err != nil {
		t.Fatalf("nbdinfo --map: %v", err)
	}
	var want []nbd.Extent
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		off, _ := strconv.ParseInt(f[0], 10, 64)
		n, _ := strconv.ParseInt(f[1], 10, 64)
		typ, _ := strconv.Atoi(f[2])
		e := nbd.Extent{Offset: off, Length: n, Hole: typ&1 != 0, Zero: typ&2 != 0}
		if k := len(want); k > 0 && want[k-1].Hole == e.Hole && want[k-1].Zero == e.Zero {
			want[k-1].Length += n
		} else {
			want = append(want, e)
		}
	}
	if len(want) < 3 || !equalExtents(got, want) {
		t.Fatalf("BlockStatus = %v,\nnbdinfo --map = %v", got, want)
	}
	img := filepath.Join(t.TempDir(), "copy.raw")
	if out, err := exec.Command("nbdcopy", srv.URI, img).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy: %v\n%s", err, out)
	}
	wantData, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	if err := c.ReadAt(ctx, data, 0); err != nil {
		t.Fatalf("ReadAt = %v", err)
	}
	if !bytes.Equal(data, wantData) {
		t.Fatal("ReadAt differs from nbdcopy's copy")
	}
}

// TestNegotiationVariants connects to servers that negotiate less: simple replies only, plain
// newstyle (NBD_OPT_EXPORT_NAME), read-only, the null plugin.
func TestNegotiationVariants(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		args      []string
		readOnly  bool
		blockStat bool
	}{
		{"no structured replies", []string{"--no-sr", "memory", "4M"}, false, false},
		{"plain newstyle", []string{"--mask-handshake=0", "memory", "4M"}, false, false},
		{"read-only", []string{"-r", "memory", "4M"}, true, true},
		{"null", []string{"null", "4M"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := nbdtest.Start(t, tc.args...)
			c := dial(t, srv.URI, nbd.Config{})
			ctx := context.Background()
			if got := c.Size(); got != 4<<20 {
				t.Errorf("Size() = %d, want 4 MiB", got)
			}
			data := randomBytes(3, 100000)
			err := c.WriteAt(ctx, data, 5000, false)
			if tc.readOnly {
				if !errors.Is(err, nbd.ErrUnsupported) {
					t.Fatalf("WriteAt on a read-only export = %v, want ErrUnsupported", err)
				}
				data = make([]byte, len(data))
			} else if err != nil {
				t.Fatalf("WriteAt = %v", err)
			}
			if tc.args[0] == "null" {
				data = make([]byte, len(data))
			}
			got := make([]byte, len(data))
			if err := c.ReadAt(ctx, got, 5000); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadAt = %v (equal %v)", err, bytes.Equal(got, data))
			}
			_, err = c.BlockStatus(ctx, 0, 4<<20)
			if tc.blockStat != (err == nil) || (!tc.blockStat && !errors.Is(err, nbd.ErrUnsupported)) {
				t.Fatalf("BlockStatus = %v, want supported %v", err, tc.blockStat)
			}
		})
	}
}

// TestCancel abandons a slow read: the call returns at once, its buffer is never written, and the
// connection keeps working once the reply has come and been discarded.
func TestCancel(t *testing.T) {
	t.Parallel()
	srv := nbdtest.Start(t, "--filter=delay", "memory", "4M", "rdelay=200ms")
	c := dial(t, srv.URI, nbd.Config{})
	if err := c.WriteAt(context.Background(), bytes.Repeat([]byte{1}, 65536), 0, false); err != nil {
		t.Fatalf("WriteAt = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	p := bytes.Repeat([]byte{0xaa}, 65536)
	if err := c.ReadAt(ctx, p, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadAt with a 20ms deadline = %v, want DeadlineExceeded", err)
	}
	got := make([]byte, 65536)
	if err := c.ReadAt(context.Background(), got, 0); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{1}, 65536)) {
		t.Fatalf("ReadAt after the abandoned one = %v", err)
	}
	eventually(t, func() bool { return c.InFlight() == 0 })
	if !bytes.Equal(p, bytes.Repeat([]byte{0xaa}, 65536)) {
		t.Fatal("the abandoned read wrote into its buffer")
	}
}

// TestKilledServer kills nbdkit while requests are in flight: every caller returns an error within a
// second, and Close leaves no goroutine behind. Not parallel: it counts goroutines.
func TestKilledServer(t *testing.T) {
	base := runtime.NumGoroutine()
	srv := nbdtest.Start(t, "--filter=delay", "memory", "64M", "wdelay=100ms")
	c, err := nbd.Dial(context.Background(), srv.URI, nbd.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const workers = 32
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			p := make([]byte, 4096)
			for i := 0; ; i++ {
				if err := c.WriteAt(context.Background(), p, int64((w*i)%4096)*4096, false); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	eventually(t, func() bool { return c.InFlight() >= 16 }) // nbdkit's 16 threads each hold one
	srv.Kill()
	killed := time.Now()
	timeout := time.After(min(testkit.Wait(t), testkit.MaxEventually))
	for range workers {
		select {
		case err := <-errs:
			if errors.Is(err, nbd.ErrClosed) {
				t.Errorf("WriteAt = %v, want the dropped connection, not ErrClosed", err)
			}
		case <-timeout:
			t.Fatalf("callers still waiting %v after the kill", time.Since(killed))
		}
	}
	if err := c.WriteAt(context.Background(), make([]byte, 512), 0, false); err == nil {
		t.Fatal("WriteAt after the kill = nil, want the connection's error")
	}
	c.Close()
	eventually(t, func() bool { return runtime.NumGoroutine() <= base })
}

// eventually polls cond as testkit.Eventually does.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(min(testkit.Wait(t), testkit.MaxEventually)); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCloseWithRequestsInFlight: Debian's nbdkit 1.32 aborts
// (connections.c: raw_send_socket: Assertion `sock >= 0' failed) when a
// connection ends while it still has replies to send. Close, called while
// requests are in flight (a copy that failed or was cancelled), lets them
// be answered before it disconnects: the server outlives ten such closes
// and serves the next connection.
func TestCloseWithRequestsInFlight(t *testing.T) {
	t.Parallel()
	srv := nbdtest.Start(t, "--filter=delay", "memory", "64M", "wdelay=5ms")
	for round := range 10 {
		c, err := nbd.Dial(context.Background(), srv.URI, nbd.Config{})
		if err != nil {
			t.Fatalf("round %d: dial: %v (nbdkit: %s)", round, err, srv.Stderr())
		}
		ctx, cancel := context.WithCancel(context.Background())
		var writers sync.WaitGroup
		for w := range 32 {
			writers.Go(func() {
				p := bytes.Repeat([]byte{1}, 64<<10)
				for off := int64(w) << 20; ctx.Err() == nil; off = (off + 32<<20) % (64 << 20) {
					if c.WriteAt(ctx, p, off, false) != nil {
						return
					}
				}
			})
		}
		eventually(t, func() bool { return c.InFlight() >= 16 })
		cancel() // the callers abandon their requests, as a failed copy's do
		c.Close()
		writers.Wait()
	}
	if _, err := nbd.Dial(context.Background(), srv.URI, nbd.Config{}); err != nil || strings.Contains(srv.Stderr(), "Assertion") {
		t.Fatalf("nbdkit after the closes: dial %v\n%s", err, srv.Stderr())
	}
}
