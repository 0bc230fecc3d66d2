package tunnel_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

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
