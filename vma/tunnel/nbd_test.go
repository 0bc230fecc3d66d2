package tunnel_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/export"
	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/nbd/nbdtest"
)

// TestNBD: the project's NBD client writes and reads an nbdkit export through the tunnel.
func TestNBD(t *testing.T) {
	srv := nbdtest.StartTCP(t, "memory", "size=16M")
	r := newRig(t, srv.Addr)
	tun := run(t, r.config(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := nbd.Dial(ctx, srv.URI, nbd.Config{Dial: tun.DialContext})
	if err != nil {
		t.Fatalf("nbd dial %s through the tunnel: %v", srv.URI, err)
	}
	defer c.Close()
	want := []byte(strings.Repeat("godwit", 1<<16))[:1<<18]
	for off := int64(0); off < c.Size(); off += 1 << 20 {
		if err := c.WriteAt(ctx, want, off, false); err != nil {
			t.Fatalf("WriteAt(%d): %v", off, err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	got := make([]byte, len(want))
	if err := c.ReadAt(ctx, got, 5<<20); err != nil {
		t.Fatalf("ReadAt: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("read back through the tunnel differs from what was written")
	}
}

// pattern is a copier source of n bytes that are never zero.
type pattern int64

func (p pattern) Size() int64 { return int64(p) }

func (p pattern) ReadAt(_ context.Context, b []byte, off int64) error {
	for i := range b {
		b[i] = byte(off+int64(i))%251 + 1
	}
	return nil
}

// TestNBDPipelined: through OpenSSH, each small request that waits for the
// one before stalls about 40 ms (Nagle and delayed ACKs in sshd), so the
// copy must keep its requests in flight together: a copy of small requests
// through the tunnel reaches the configured depth (a counter, not a time).
func TestNBDPipelined(t *testing.T) {
	// Writes take 100 ms on the server, so that requests meet in flight
	// whatever the machine's load.
	srv := nbdtest.StartTCP(t, "--filter=delay", "memory", "size=8M", "delay-write=100ms")
	r := newRig(t, srv.Addr)
	tun := run(t, r.config(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dst, err := export.Open(ctx, srv.URI, 1, nbd.Config{Dial: tun.DialContext})
	if err != nil {
		t.Fatalf("open %s through the tunnel: %v", srv.URI, err)
	}
	defer dst.Close()
	const depth = 16
	res, err := copier.Copy(ctx, dst, pattern(8<<20), []copier.Area{{Offset: 0, Length: 8 << 20}},
		copier.Config{Depth: depth, RequestSize: 64 << 10, Verify: true})
	if err != nil || !res.Verified {
		t.Fatalf("copy through the tunnel: verified %v, %v", res.Verified, err)
	}
	if peak := dst.PeakInFlight(); peak != depth {
		t.Errorf("requests in flight through the tunnel peaked at %d, want the depth %d", peak, depth)
	}
}
