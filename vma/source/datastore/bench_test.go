package datastore_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/godwit/godwit/vma/copier"
	"github.com/vmware/govmomi/object"
)

// discard is a copier.Destination that drops everything.
type discard struct{}

func (discard) WriteAt(context.Context, []byte, int64) error    { return nil }
func (discard) WriteZeroes(context.Context, int64, int64) error { return nil }
func (discard) Flush(context.Context) error                     { return nil }

// BenchmarkRead copies a 512 MiB disk, half data (1 MiB of every 2) and
// half holes, from the simulator's /folder endpoint over TLS into a
// destination that drops it: through Disk with copier.Copy (16 requests of
// 1 MiB in flight, every byte checked for zeros), and, as the peer, plain
// ranged GETs of the same 1 MiB ranges, 16 in flight, read into a buffer,
// over a transport made the same way (a clone of the SDK's with 32 idle
// connections per host). Both run in each iteration, one after the other,
// and then, for scale, one GET of the whole range (get1: no per-request
// cost, no zero check). One op runs all three, so read the MB/s metrics,
// not ns/op.
func BenchmarkRead(b *testing.B) {
	const size = 512 << 20
	v := startVCenter(b)
	backing := v.makeDisk(b, "bench", "disk", size, nil)
	f, err := os.OpenFile(v.flat(b, backing), os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	buf := pattern(1<<20, 9)
	for off := int64(0); off < size; off += 2 << 20 {
		buf[0] = byte(off >> 20) // differ per piece
		if _, err := f.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	d := open(b, v, backing, size)

	sc := v.client.Client
	tr := sc.DefaultTransport().Clone()
	tr.MaxIdleConnsPerHost = 2 * copier.DefaultDepth
	defer tr.CloseIdleConnections()
	peer := &http.Client{Transport: tr, Jar: sc.Jar}
	var dp object.DatastorePath
	dp.FromString(d.File())
	u := object.NewDatastoreURL(*sc.URL(), dcPath, dp.Datastore, dp.Path).String()

	ctx := b.Context()
	var ours, theirs, single time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		res, err := copier.Copy(ctx, discard{}, d, []copier.Area{{Offset: 0, Length: size}}, copier.Config{})
		if err != nil {
			b.Fatalf("Copy = %v", err)
		}
		if res.Done != size || res.Zero != size/2 {
			b.Fatalf("Copy = %+v, want %d bytes done, half of them zero", res.Progress, size)
		}
		t1 := time.Now()
		if err := getRanges(ctx, peer, u, size, copier.DefaultRequestSize, copier.DefaultDepth); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := getAll(ctx, peer, u, size); err != nil {
			b.Fatal(err)
		}
		ours += t1.Sub(t0)
		theirs += t2.Sub(t1)
		single += time.Since(t2)
		n++
	}
	mbs := func(d time.Duration) float64 { return float64(n) * size / 1e6 / d.Seconds() }
	b.ReportMetric(mbs(ours), "disk-MB/s")
	b.ReportMetric(mbs(theirs), "get-MB/s")
	b.ReportMetric(mbs(single), "get1-MB/s")
	b.ReportMetric(mbs(ours)/mbs(theirs), "disk/get")
}

// getAll GETs [0, size) of u as one range into io.Discard.
func getAll(ctx context.Context, c *http.Client, u string, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=0-%d", size-1))
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if n, err := io.Copy(io.Discard, res.Body); err != nil || n != size {
		return fmt.Errorf("GET of %d bytes: got %d: %v", size, n, err)
	}
	return nil
}

// getRanges GETs [0, size) of u as ranges of step bytes, depth at a time,
// each read into a buffer.
func getRanges(ctx context.Context, c *http.Client, u string, size, step int64, depth int) error {
	offs := make(chan int64)
	errs := make(chan error, depth)
	var wg sync.WaitGroup
	for range depth {
		wg.Go(func() {
			p := make([]byte, step)
			for off := range offs {
				if err := getRange(ctx, c, u, p[:min(step, size-off)], off); err != nil {
					errs <- err
					for range offs {
					}
					return
				}
			}
		})
	}
	for off := int64(0); off < size; off += step {
		offs <- off
	}
	close(offs)
	wg.Wait()
	close(errs)
	return <-errs
}

func getRange(ctx context.Context, c *http.Client, u string, p []byte, off int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1))
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusPartialContent {
		return fmt.Errorf("GET at %d: %s", off, res.Status)
	}
	if _, err := io.ReadFull(res.Body, p); err != nil {
		return fmt.Errorf("GET at %d: %w", off, err)
	}
	return nil
}
