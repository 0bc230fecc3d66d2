package nbd_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/nbd/nbdtest"
)

// dial connects to uri and closes the client when the test ends.
func dial(t testing.TB, uri string, cfg nbd.Config) *nbd.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := nbd.Dial(ctx, uri, cfg)
	if err != nil {
		t.Fatalf("Dial(%q) = %v", uri, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func randomBytes(seed uint64, n int) []byte {
	var key [32]byte
	key[0], key[1], key[2] = byte(seed), byte(seed>>8), byte(seed>>16)
	p := make([]byte, n)
	rand.NewChaCha8(key).Read(p)
	return p
}

func TestMemoryRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		tcp  bool
		off  int64
		n    int
	}{
		{"unix 4 KiB at 0", false, 0, 4096},
		{"unix unaligned", false, 12345, 77777},
		{"tcp 1 MiB", true, 1 << 20, 1 << 20},
		{"unix 32 MiB + 4 KiB split", false, 3 << 20, 32<<20 + 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var srv *nbdtest.Server
			if tc.tcp {
				srv = nbdtest.StartTCP(t, "memory", "64M")
			} else {
				srv = nbdtest.Start(t, "memory", "64M")
			}
			c := dial(t, srv.URI, nbd.Config{})
			if got := c.Size(); got != 64<<20 {
				t.Fatalf("Size() = %d, want %d", got, 64<<20)
			}
			want := randomBytes(uint64(tc.n), tc.n)
			ctx := context.Background()
			if err := c.WriteAt(ctx, want, tc.off, false); err != nil {
				t.Fatalf("WriteAt(%d) = %v", tc.off, err)
			}
			got := make([]byte, tc.n)
			if err := c.ReadAt(ctx, got, tc.off); err != nil {
				t.Fatalf("ReadAt(%d) = %v", tc.off, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("ReadAt(%d) differs from what was written", tc.off)
			}
			if err := c.Flush(ctx); err != nil {
				t.Fatalf("Flush() = %v", err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
			if err := c.ReadAt(ctx, got, 0); !errors.Is(err, nbd.ErrClosed) {
				t.Fatalf("ReadAt after Close = %v, want ErrClosed", err)
			}
		})
	}
}

// TestConcurrentWriters writes from 16 goroutines at once on one connection and reads it all back.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	// delay keeps every request in flight long enough for all 16 to be sent.
	srv := nbdtest.Start(t, "--filter=delay", "memory", "16M", "wdelay=50ms", "rdelay=50ms")
	c := dial(t, srv.URI, nbd.Config{})
	const workers, chunk = 16, 64 << 10
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range 4 {
				off := int64((i*workers + w) * chunk)
				if err := c.WriteAt(ctx, randomBytes(uint64(off), chunk), off, false); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("WriteAt = %v", err)
	}
	if got := c.PeakInFlight(); got < workers {
		t.Errorf("PeakInFlight() = %d, want %d", got, workers)
	}
	if got := c.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d after all returned, want 0", got)
	}
	got := make([]byte, 4*workers*chunk)
	if err := c.ReadAt(ctx, got, 0); err != nil {
		t.Fatalf("ReadAt = %v", err)
	}
	for k := range 4 * workers {
		off := k * chunk
		if !bytes.Equal(got[off:off+chunk], randomBytes(uint64(off), chunk)) {
			t.Fatalf("block at %d differs", off)
		}
	}
}
