package export_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/export"
	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/nbd/nbdtest"
)

// sparseFile writes size bytes: random data in the first and third
// quarters, holes in the others.
func sparseFile(t *testing.T, path string, size int64) []byte {
	t.Helper()
	want := make([]byte, size)
	_, _ = rand.Read(want[:size/4])
	_, _ = rand.Read(want[size/2 : 3*size/4])
	testkit.SparseFile(t, path, size, map[int64][]byte{0: want[:size/4], size / 2: want[size/2 : 3*size/4]})
	return want
}

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestCopyBetweenExports copies one nbdkit file export into another
// through the copier: byte-exact, holes kept as holes, zero areas never
// read nor sent as data, and requests in flight on every connection.
func TestCopyBetweenExports(t *testing.T) {
	const size = 32 << 20
	dir := t.TempDir()
	want := sparseFile(t, filepath.Join(dir, "src.raw"), size)
	dstPath := filepath.Join(dir, "dst.raw")
	if err := os.WriteFile(dstPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(dstPath, size); err != nil {
		t.Fatal(err)
	}
	src := nbdtest.Start(t, "-r", "--filter=multi-conn", "file", filepath.Join(dir, "src.raw"), "multi-conn-mode=disable")
	// Each write to the target takes 20 ms (nbdkit's delay filter), so that
	// the copier's requests pile up on its connections however fast or
	// busy the machine is.
	dst := nbdtest.Start(t, "--filter=multi-conn", "--filter=delay", "file", dstPath, "multi-conn-mode=plugin", "wdelay=20ms")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := export.Open(ctx, src.URI, 2, nbd.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := export.Open(ctx, dst.URI, 3, nbd.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	res, err := copier.Copy(ctx, out, in, []copier.Area{{Offset: 0, Length: size}}, copier.Config{Depth: 8, RequestSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dstPath)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the target differs from the source (%v)", err)
	}
	if res.Zero != size/2 {
		t.Errorf("zero bytes = %d, want %d (the two holes)", res.Zero, size/2)
	}
	if a := allocated(t, dstPath); a > size/2+(1<<20) {
		t.Errorf("the target allocates %d bytes, want about %d: holes were written as data", a, size/2)
	}
	if in.Connections() != 1 || out.Connections() != 3 {
		t.Errorf("connections: source %d (no multi-conn: want 1), target %d (want 3)", in.Connections(), out.Connections())
	}
	if p := out.PeakInFlight(); p < 4 {
		t.Errorf("peak requests in flight on the target = %d, want several (depth 8)", p)
	}
}

// TestOpenAndCloseAtOnce: Open's connections are dialled together, and
// Close closes them together (over a long link each handshake costs round
// trips, and each close one): every dial, and every close, waits until all
// of them have started, which never happens when they go one after the
// other. Against an export without multi-conn, the extra ones are closed.
func TestOpenAndCloseAtOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "disk.raw")
	sparseFile(t, path, 1<<20)
	multi := nbdtest.Start(t, "--filter=multi-conn", "file", path, "multi-conn-mode=plugin")
	single := nbdtest.Start(t, "-r", "--filter=multi-conn", "file", path, "multi-conn-mode=disable")
	const conns = 6
	for _, tt := range []struct {
		name, uri string
		want      int
	}{{"multi-conn", multi.URI, conns}, {"no multi-conn", single.URI, 1}} {
		t.Run(tt.name, func(t *testing.T) {
			// Generous: a dial or close only waits this long when the others never start.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dials := newBarrier(ctx, conns)
			var closes *barrier // those of the connections Open keeps; it closes the others itself
			if tt.want > 1 {
				closes = newBarrier(ctx, tt.want)
			}
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				if err := dials.wait(); err != nil {
					return nil, fmt.Errorf("dial: %w", err)
				}
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return &closeWaiter{Conn: c, closes: closes}, nil
			}
			e, err := export.Open(ctx, tt.uri, conns, nbd.Config{Dial: dial})
			if err != nil {
				t.Fatal(err)
			}
			if e.Connections() != tt.want {
				t.Errorf("connections = %d, want %d", e.Connections(), tt.want)
			}
			if e.Size() != 1<<20 {
				t.Errorf("size = %d", e.Size())
			}
			e.Close()
			if closes != nil {
				if err := closes.err(); err != nil {
					t.Errorf("close: %v", err)
				}
			}
		})
	}
}

// barrier lets n callers of wait through once all n have come, or fails
// them when ctx ends first.
type barrier struct {
	ctx    context.Context
	all    chan struct{}
	mu     sync.Mutex
	left   int
	failed error
}

func newBarrier(ctx context.Context, n int) *barrier {
	return &barrier{ctx: ctx, all: make(chan struct{}), left: n}
}

func (b *barrier) wait() error {
	b.mu.Lock()
	if b.left--; b.left == 0 {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
		return nil
	case <-b.ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		b.failed = fmt.Errorf("the others did not start: %w", b.ctx.Err())
		return b.failed
	}
}

func (b *barrier) err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failed
}

// closeWaiter is a connection whose Close waits at closes first, when
// there is that barrier.
type closeWaiter struct {
	net.Conn
	closes *barrier
	once   sync.Once
}

func (c *closeWaiter) Close() error {
	c.once.Do(func() {
		if c.closes != nil {
			_ = c.closes.wait()
		}
	})
	return c.Conn.Close()
}

// TestExtentsAndErrors: extents start where asked, and a write error names
// the NBD error and the offset.
func TestExtentsAndErrors(t *testing.T) {
	srv := nbdtest.Start(t, "--filter=error", "memory", "1M", "error=EIO", "error-pwrite-rate=100%")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := export.Open(ctx, srv.URI, 1, nbd.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	exts, err := e.Extents(ctx, 0, 1<<20)
	if err != nil || len(exts) == 0 || exts[0].Offset != 0 {
		t.Fatalf("extents = %+v, %v", exts, err)
	}
	buf := make([]byte, 4096)
	buf[0] = 1
	err = e.WriteAt(ctx, buf, 65536)
	if !errors.Is(err, nbd.EIO) || !strings.Contains(err.Error(), "65536") {
		t.Errorf("write on a failing server = %v, want EIO at 65536", err)
	}
}
