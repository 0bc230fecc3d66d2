package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

// BenchmarkConsoles measures what open web consoles cost the OMA: the rate
// at which it applies progress events (b.N of them, from 4 publishers of
// one VMA over 20 running jobs, until GET /metrics counts them all applied)
// with no console open, then with 100 consoles each following every
// progress event by Server-Sent Events (the worst page: /events on
// godwit.progress.>). It reports both rates, their ratio (goal: at least
// 0.9, a slowdown of 10 % at most), and how late the events reached a
// console (from the event's time to its line read from the stream; goal:
// under 1 s).
func BenchmarkConsoles(b *testing.B) {
	const (
		jobs     = 20
		consoles = 100
	)
	o := newOMA(b, jobs)
	v := o.addVMA("vma-1")
	var inv []events.VM
	for i := range jobs {
		inv = append(inv, testVM(fmt.Sprintf("vm-%d", i), 1<<30))
	}
	o.learn(v, inv...)
	var ids []string
	for i := range jobs {
		var j job
		if code := o.do("POST", "/api/v1/replications", createBody(fmt.Sprintf("vm-%d", i), "initial"), &j); code != http.StatusCreated {
			b.Fatalf("create = %d", code)
		}
		if code := o.do("POST", "/api/v1/replications/"+j.JobID+"/start", map[string]string{"username": "u", "password": "p"}, &j); code != http.StatusAccepted {
			b.Fatalf("start = %d", code)
		}
		ids = append(ids, j.JobID)
	}
	seq := uint64(1)
	// publish sends n progress events over the jobs from 4 publishers and
	// returns how long until the OMA applied them all.
	applied := func() float64 {
		m := scrapeMetric(b, o, `godwit_events_applied_total{type="`+events.TypeProgress+`"}`)
		return m
	}
	run := func(n int) time.Duration {
		before := applied()
		start := time.Now()
		var wg sync.WaitGroup
		for p := range 4 {
			wg.Go(func() {
				for i := p; i < n; i += 4 {
					k := i % jobs
					s := seq + uint64(i/jobs)
					v.publish(b, &events.Progress{JobID: ids[k], VMAID: "vma-1", Seq: s, Phase: "copying", BytesTotal: 1 << 30,
						BytesDone: int64(s) << 20, RateBytesPerSecond: 1 << 20, Disks: []events.DiskProgress{{Key: 2000, BytesTotal: 1 << 30, BytesDone: int64(s) << 20}}})
				}
			})
		}
		wg.Wait()
		seq += uint64(n/jobs) + 1
		deadline := time.Now().Add(5 * time.Minute)
		for applied() < before+float64(n) {
			if time.Now().After(deadline) {
				b.Fatalf("the OMA applied %v of %d events in 5 minutes", applied()-before, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	run(jobs) // warm up: every job copying

	b.ResetTimer()
	bare := run(b.N)
	b.StopTimer()

	// 100 consoles on the events page of every progress event.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodPost, o.url+"/login", strings.NewReader("token="+o.token))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusSeeOther {
		b.Fatalf("sign in to the console: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var lmu sync.Mutex
	var lags []time.Duration
	var streams sync.WaitGroup
	for c := range consoles {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.url+"/stream?subject=godwit.progress.%3E", nil)
		resp, err := hc.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("console %d's stream: %v", c, err)
		}
		streams.Go(func() {
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				if c != 0 {
					continue // the others only read, as a browser would
				}
				data, ok := strings.CutPrefix(sc.Text(), "data: ")
				var ev struct {
					Time time.Time `json:"time"`
				}
				if ok && json.Unmarshal([]byte(data), &ev) == nil && !ev.Time.IsZero() {
					lmu.Lock()
					lags = append(lags, time.Since(ev.Time))
					lmu.Unlock()
				}
			}
		})
	}
	b.StartTimer()
	watched := run(b.N)
	b.StopTimer()
	time.Sleep(time.Second) // the last lines reach the consoles
	cancel()
	streams.Wait()

	bareRate, watchedRate := float64(b.N)/bare.Seconds(), float64(b.N)/watched.Seconds()
	b.ReportMetric(bareRate, "applied/s")
	b.ReportMetric(watchedRate, "applied/s-100-consoles")
	b.ReportMetric(watchedRate/bareRate, "with/without")
	lmu.Lock()
	defer lmu.Unlock()
	// A job's progress events within one write are conflated to the
	// newest: a console gets at least one per job.
	if len(lags) < min(jobs, b.N) {
		b.Fatalf("console 0 got %d progress events of %d jobs", len(lags), min(jobs, b.N))
	}
	b.ReportMetric(float64(len(lags)), "events-to-console-0")
	slices.Sort(lags)
	b.ReportMetric(lags[len(lags)/2].Seconds()*1000, "console-lag-p50-ms")
	b.ReportMetric(lags[len(lags)*99/100].Seconds()*1000, "console-lag-p99-ms")
}

// scrapeMetric reads one sample of the OMA's GET /metrics; 0 when absent.
func scrapeMetric(b *testing.B, o *omaUnderTest, name string) float64 {
	req, _ := http.NewRequest(http.MethodGet, o.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+o.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
