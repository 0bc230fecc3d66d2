package jobs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/export"
	"github.com/godwit/godwit/vma/copier/file"
	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/nbd/nbdtest"
	"github.com/godwit/godwit/vma/vcsim"
)

// BenchmarkInitialCycle times a whole initial cycle of a VM with one 4 GiB
// disk holding 2 GiB of random data then a 2 GiB hole, through the
// simulated vCenter and the datastore source (login, snapshot, CBT areas,
// HTTPS ranged reads, the OMA's export, progress, bbolt, snapshot removal),
// against the bare copy of the same bytes from the same flat file into a
// fresh nbdkit file export with the same engine settings, as
// `vma copy -target-is-zero FILE nbd://...` does it; and against plain
// ranged HTTPS GETs of the same 2 GiB through the simulator's /folder
// endpoint (16 of 1 MiB in flight, as the job reads, bodies discarded):
// the transport's own ceiling. The runs alternate; the metrics are the
// medians and the ratios.
//
//	go test -run '^$' -bench InitialCycle -benchtime 5x ./vma/jobs
func BenchmarkInitialCycle(b *testing.B) {
	const size, data, name = benchSize, benchData, benchVM
	bd, _, flat := benchBed(b)
	ctx := context.Background()

	var jobTimes, copyTimes, getTimes []float64
	get := folderGetter(b, bd, name+"/"+name+"_0-flat.vmdk")
	for b.Loop() {
		j := bd.create(b, name)
		start := time.Now()
		bd.startFromOMA(b, j.JobID)
		if got := bd.wait(b, j.JobID); got.State != events.JobCompleted || got.BytesDone != data {
			b.Fatalf("job = %s (%s), %d bytes done, want %d", got.State, got.LastError, got.BytesDone, data)
		}
		jobTimes = append(jobTimes, time.Since(start).Seconds())
		for _, d := range bd.get(b, j.JobID).Disks {
			os.Remove(d.VolumePath) // room for the next run
		}

		target := filepath.Join(b.TempDir(), "target.raw")
		if err := os.WriteFile(target, nil, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Truncate(target, size); err != nil {
			b.Fatal(err)
		}
		srv := nbdtest.StartTCP(b, "file", target)
		start = time.Now()
		src, err := file.Open(flat)
		if err != nil {
			b.Fatal(err)
		}
		dst, err := export.Open(ctx, srv.URI, 1, nbd.Config{})
		if err != nil {
			b.Fatal(err)
		}
		res, err := copier.Copy(ctx, dst, src, []copier.Area{{Offset: 0, Length: size}}, copier.Config{TargetIsZero: true})
		if err != nil || res.Done != size {
			b.Fatalf("bare copy = %d bytes, %v", res.Done, err)
		}
		dst.Close()
		src.Close()
		copyTimes = append(copyTimes, time.Since(start).Seconds())
		srv.Kill()
		os.Remove(target)

		start = time.Now()
		get(data)
		getTimes = append(getTimes, time.Since(start).Seconds())
	}
	job, bare, https := median(jobTimes), median(copyTimes), median(getTimes)
	b.ReportMetric(job, "job-s")
	b.ReportMetric(bare, "copy-s")
	b.ReportMetric(https, "https-get-s")
	b.ReportMetric(job/bare, "job/copy")
	b.ReportMetric(job/https, "job/https-get")
}

// The benchmarks' VM: one disk of benchSize, its first benchData bytes random, the rest a hole.
const (
	benchVM              = "bench-4g"
	benchSize, benchData = 4 << 30, 2 << 30
)

// benchBed starts a bed whose simulator holds benchVM with CBT on, and
// returns it, the VM and the path of its disk's flat file.
func benchBed(b *testing.B) (*bed, events.VM, string) {
	bd := newBed(b, bedConfig{ports: 2,
		sim: vcsim.Config{VMs: 1, DiskData: -1, Extra: []vcsim.VM{{Name: benchVM, Disks: []int64{benchSize}, CBT: true}}},
		vma: func(c *appliance.Config) { c.ProgressInterval = time.Second }})
	vm := bd.vms[benchVM]
	flat, err := bd.sim.DiskFile(context.Background(), "/"+vcsim.Datacenter+"/vm/"+benchVM, vm.Disks[0].Key)
	if err != nil {
		b.Fatal(err)
	}
	writeRandom(b, flat, benchData, benchSize)
	return bd, vm, flat
}

// writeRandom writes n random bytes at the start of the file at path and
// makes it size bytes long: the rest a hole.
func writeRandom(tb testing.TB, path string, n, size int64) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 8<<20)
	for off := int64(0); off < n; off += int64(len(buf)) {
		rng.Read(buf)
		if _, err := f.WriteAt(buf, off); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		tb.Fatal(err)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// folderGetter returns a function that reads the first n bytes of a file of
// the simulator's datastore with ranged GETs through its /folder endpoint,
// 16 of 1 MiB in flight, and discards them.
func folderGetter(tb testing.TB, bd *bed, rel string) func(n int64) {
	pem, err := os.ReadFile(bd.sim.CAFile)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 32}}
	u := "https://" + bd.sim.Host + "/folder/" + rel + "?dcPath=" + vcsim.Datacenter + "&dsName=" + vcsim.DatastoreName
	return func(n int64) {
		const chunk, depth = 1 << 20, 16
		offs := make(chan int64)
		var wg sync.WaitGroup
		for range depth {
			wg.Go(func() {
				buf := make([]byte, chunk)
				for off := range offs {
					req, _ := http.NewRequest(http.MethodGet, u, nil)
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+chunk-1))
					resp, err := client.Do(req)
					if err != nil {
						tb.Error(err)
						continue
					}
					if _, err := io.ReadFull(resp.Body, buf); err != nil || resp.StatusCode != http.StatusPartialContent {
						tb.Errorf("GET %d: %s, %v", off, resp.Status, err)
					}
					resp.Body.Close()
				}
			})
		}
		for off := int64(0); off < n; off += chunk {
			offs <- off
		}
		close(offs)
		wg.Wait()
	}
}

// BenchmarkIncrementalCycle times, in one run, an initial cycle of a VM with
// one 4 GiB disk holding 2 GiB of random data, then an incremental cycle
// after 1% of the disk (41 MiB) changed in scattered 1 MiB writes, and
// reports the incremental's time as a fraction of the initial's. It also
// times the initial cycle without verification, for verification's cost.
//
//	go test -run '^$' -bench IncrementalCycle -benchtime 3x ./vma/jobs
func BenchmarkIncrementalCycle(b *testing.B) {
	const size, data, name = benchSize, benchData, benchVM
	bd, vm, flat := benchBed(b)
	rng := rand.New(rand.NewPCG(3, 4))
	cycle := func(typ string, verify bool) float64 {
		var j job
		if code := bd.o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": vm.ID},
			"replication_type": typ}, &j); code != http.StatusCreated {
			b.Fatalf("create %s = %d", typ, code)
		}
		start := time.Now()
		if code := bd.o.Do(http.MethodPost, "/api/v1/replications/"+j.JobID+"/start", map[string]any{"username": bd.sim.Username,
			"password": bd.sim.Password, "verify": verify}, nil); code != http.StatusAccepted {
			b.Fatalf("start %s = %d", typ, code)
		}
		if got := bd.wait(b, j.JobID); got.State != events.JobCompleted {
			b.Fatalf("%s job = %s (%s)", typ, got.State, got.LastError)
		}
		return time.Since(start).Seconds()
	}
	var initial, plain, incremental []float64
	for b.Loop() {
		plain = append(plain, cycle("initial", false))
		initial = append(initial, cycle("initial", true))
		f, err := os.OpenFile(flat, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		for range size / 100 / len(buf) {
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
			if _, err := f.WriteAt(buf, rng.Int64N(size/int64(len(buf)))*int64(len(buf))); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
		incremental = append(incremental, cycle("incremental", true))
	}
	in, pl, inc := median(initial), median(plain), median(incremental)
	b.ReportMetric(in, "initial-s")
	b.ReportMetric(inc, "incremental-s")
	b.ReportMetric(inc/in, "incremental/initial")
	b.ReportMetric(pl, "unverified-s")
	b.ReportMetric(in/pl-1, "verify-cost")
}
