package api_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
)

// BenchmarkCreateReplication measures POST /api/v1/replications with 1 and
// with 8 concurrent clients on a 2-core machine: each create validates, allocates
// a port, prepares sparse volumes, starts an nbdkit, commits to bbolt and
// publishes job.created. Each job is cancelled afterwards (not timed) to
// free its VM and port. It reports creates per second, the median and p99
// create latency, and their ratio to starting a bare nbdkit on the same
// files and waiting for its port (the peer: the floor of a create).
func BenchmarkCreateReplication(b *testing.B) {
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchCreate(b, clients) })
	}
}

func benchCreate(b *testing.B, clients int) {
	const vms = 64
	o := newOMA(b, vms)
	v := o.addVMA("vma-1")
	var inv []events.VM
	for i := range vms {
		inv = append(inv, testVM(fmt.Sprintf("vm-%d", i), 1<<30, 4<<30))
	}
	o.learn(v, inv...)
	free := make(chan string, vms)
	for i := range vms {
		free <- fmt.Sprintf("vm-%d", i)
	}
	var mu sync.Mutex
	var lat []time.Duration
	start := time.Now()
	var next sync.Mutex
	n := 0
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				next.Lock()
				if n >= b.N {
					next.Unlock()
					return
				}
				n++
				next.Unlock()
				vm := <-free
				var j job
				t0 := time.Now()
				if code := o.do("POST", "/api/v1/replications", createBody(vm, "initial"), &j); code != http.StatusCreated {
					b.Errorf("create %s = %d", vm, code)
					free <- vm
					return
				}
				d := time.Since(t0)
				if code := o.do("DELETE", "/api/v1/replications/"+j.JobID, nil, &j); code != http.StatusOK {
					b.Errorf("cancel %s = %d", j.JobID, code)
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
				free <- vm
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	bare := bareNbdkitStart(b, o.dir)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "creates/s")
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(bare.Microseconds())/1000, "nbdkit-start-ms")
	b.ReportMetric(float64(p50)/float64(bare), "p50/nbdkit-start")
}

// bareNbdkitStart starts nbdkit 20 times on a directory of two sparse
// files, as the OMA does but without it, and returns the median time until
// its port accepts a connection.
func bareNbdkitStart(b *testing.B, dir string) time.Duration {
	b.Helper()
	exportDir := filepath.Join(dir, "bare")
	_ = os.MkdirAll(exportDir, 0o700)
	for _, n := range []string{"a", "b"} {
		f, _ := os.Create(filepath.Join(exportDir, n))
		_ = f.Truncate(1 << 30)
		f.Close()
	}
	port, _ := testkit.FreePorts(b, 1)
	var times []time.Duration
	for range 20 {
		t0 := time.Now()
		cmd := exec.Command("nbdkit", "--foreground", "--exit-with-parent", "--ipaddr", "127.0.0.1", "--port", strconv.Itoa(port), "file", "dir="+exportDir)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for {
			c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err == nil {
				c.Close()
				break
			}
			time.Sleep(time.Millisecond)
		}
		times = append(times, time.Since(t0))
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	slices.Sort(times)
	return times[len(times)/2]
}
