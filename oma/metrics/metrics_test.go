package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	vmaappliance "github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/vcsim"
)

// scrape returns GET /metrics's samples by their line's name and labels,
// as Prometheus's text format writes them (labels sorted by name).
func scrape(t *testing.T, base, token string) (int, map[string]float64) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, out
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return resp.StatusCode, out
}

// TestMetricsFollowAJob scrapes the OMA during a real job (OMA, VMA,
// simulator, nbdkit) and after it, and checks the figures against the job
// as the API shows it; then again after an OMA restart, which must not
// reset them.
func TestMetricsFollowAJob(t *testing.T) {
	testkit.Long(t)
	sim := testbed.StartSim(t, vcsim.Config{VMs: 1, DiskData: 4 << 20})
	o := testbed.StartOMA(t, testbed.OMAConfig{Ports: 4, Configure: func(c *appliance.Config) { c.MetricsAddr = "127.0.0.1:0" }})
	crawl := copier.NewLimiter(1<<20, nil)
	v := testbed.StartVMA(t, o, testbed.VMAConfig{VCenterCAFile: sim.CAFile, Configure: func(c *vmaappliance.Config) {
		c.Copy.Limiter, c.MetricsAddr = crawl, "127.0.0.1:0"
	}})
	if code, _ := scrape(t, o.URL, ""); code != http.StatusUnauthorized {
		t.Fatalf("GET /metrics without a token = %d, want 401", code)
	}
	vms := o.Discover(map[string]any{"vcenter": sim.Host, "username": sim.Username, "password": sim.Password})
	var vm events.VM
	for _, v := range vms {
		if len(v.Disks) > 0 && !strings.HasPrefix(v.Name, "wide") {
			vm = v
			break
		}
	}
	var job struct {
		JobID        string `json:"job_id"`
		State        string `json:"state"`
		BytesWritten int64  `json:"bytes_written"`
		ZeroBytes    int64  `json:"zero_bytes"`
		BytesDone    int64  `json:"bytes_done"`
		Detail       string `json:"detail"`
	}
	if code := o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]any{"id": vm.ID}, "replication_type": "initial"}, &job); code != http.StatusCreated {
		t.Fatalf("create = %d: %s", code, job.Detail)
	}
	if code := o.Do(http.MethodPost, "/api/v1/replications/"+job.JobID+"/start", map[string]any{"username": sim.Username, "password": sim.Password}, &job); code != http.StatusAccepted {
		t.Fatalf("start = %d: %s", code, job.Detail)
	}
	bytesKey := fmt.Sprintf(`godwit_copy_bytes_total{kind="initial",vma="vma-1"}`)
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last seen during the copy: %s", last)
		}
	})
	// During the copy: one job copying, its bytes as far as the OMA knows them.
	testkit.Eventually(t, "a scrape during the copy", func() bool {
		_, m := scrape(t, o.URL, o.Token)
		o.Do(http.MethodGet, "/api/v1/replications/"+job.JobID, nil, &job)
		last = fmt.Sprintf("job %s, %d bytes; metrics: copying %v, bytes %v", job.State, job.BytesWritten, m[`godwit_jobs{state="copying"}`], m[bytesKey])
		return job.State == events.JobCopying && m[`godwit_jobs{state="copying"}`] == 1 && m[bytesKey] > 0 && m[bytesKey] <= float64(job.BytesDone)
	})
	t.Logf("during the copy: %s", last)
	crawl.SetRate(0)
	testkit.Eventually(t, "the job completed", func() bool {
		o.Do(http.MethodGet, "/api/v1/replications/"+job.JobID, nil, &job)
		return job.State == events.JobCompleted
	})
	incr := job // the incremental job that follows
	progressApplied := `godwit_events_applied_total{type="` + events.TypeProgress + `"}`
	var applied float64
	check := func(when string) {
		t.Helper()
		code, m := scrape(t, o.URL, o.Token)
		if code != http.StatusOK {
			t.Fatalf("%s: GET /metrics = %d", when, code)
		}
		// The metrics listener serves the same, without a token.
		if code, plain := scrape(t, o.MetricsURL, ""); code != http.StatusOK || plain[bytesKey] != m[bytesKey] {
			t.Errorf("%s: GET %s/metrics = %d, copy bytes %v, want 200 and %v", when, o.MetricsURL, code, plain[bytesKey], m[bytesKey])
		}
		// Every progress event the VMA sent was applied once, and the
		// count survives a restart.
		if m[progressApplied] < 2 || m[progressApplied] < applied {
			t.Errorf("%s: %s = %v, want at least 2 and %v", when, progressApplied, m[progressApplied], applied)
		}
		applied = m[progressApplied]
		want := map[string]float64{
			bytesKey: float64(job.BytesWritten),
			`godwit_copy_zero_bytes_total{kind="initial",vma="vma-1"}`:         float64(job.ZeroBytes),
			`godwit_verify_mismatches_total{vma="vma-1"}`:                      0,
			`godwit_copy_zero_bytes_total{kind="incremental",vma="vma-1"}`:     float64(incr.ZeroBytes),
			`godwit_copy_bytes_total{kind="incremental",vma="vma-1"}`:          float64(incr.BytesWritten),
			`godwit_sync_changed_bytes_count`:                                  1,
			`godwit_sync_changed_bytes_sum`:                                    float64(incr.BytesWritten),
			`godwit_jobs{state="completed"}`:                                   2,
			`godwit_jobs{state="copying"}`:                                     0,
			`godwit_jobs_finished_total{result="completed"}`:                   2,
			`godwit_jobs_finished_total{result="failed"}`:                      0,
			`godwit_job_duration_seconds_count{kind="initial"}`:                1,
			`godwit_job_duration_seconds_count{kind="incremental"}`:            1,
			`godwit_vma_connected{vma="vma-1"}`:                                1,
			`godwit_bandwidth_limit_bytes_per_second{name="",object="global"}`: 0,
		}
		for k, v := range want {
			if got, ok := m[k]; !ok || got != v {
				t.Errorf("%s: %s = %v (present %v), want %v", when, k, got, ok, v)
			}
		}
		if m[`godwit_job_duration_seconds_sum{kind="initial"}`] <= 0 {
			t.Errorf("%s: the job's duration is not summed", when)
		}
		info := 0
		for k, v := range m {
			if strings.HasPrefix(k, "godwit_build_info{") && strings.Contains(k, `goversion="go`) && v == 1 {
				info++
			}
		}
		if info != 1 {
			t.Errorf("%s: %d godwit_build_info samples of 1, want one", when, info)
		}
	}
	if job.BytesWritten < 4<<20 {
		t.Fatalf("the job wrote %d bytes, want at least the disks' 4 MiB", job.BytesWritten)
	}
	// The guest zeroes the first MiB of its first disk: the incremental
	// job finds it changed, reads it, and writes it as zeroes.
	file, err := sim.DiskFile(context.Background(), vm.Path, vm.Disks[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if code := o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]any{"id": vm.ID}, "replication_type": "incremental"}, &incr); code != http.StatusCreated {
		t.Fatalf("create the incremental = %d: %s", code, incr.Detail)
	}
	if code := o.Do(http.MethodPost, "/api/v1/replications/"+incr.JobID+"/start", map[string]any{"username": sim.Username, "password": sim.Password}, &incr); code != http.StatusAccepted {
		t.Fatalf("start the incremental = %d: %s", code, incr.Detail)
	}
	testkit.Eventually(t, "the incremental job completed", func() bool {
		o.Do(http.MethodGet, "/api/v1/replications/"+incr.JobID, nil, &incr)
		return incr.State == events.JobCompleted || incr.State == events.JobFailed || incr.State == events.JobCancelled
	})
	if incr.State != events.JobCompleted || incr.ZeroBytes != 1<<20 || incr.BytesWritten < incr.ZeroBytes {
		t.Fatalf("the incremental job: %s, %d bytes written, %d zero; want completed with the MiB of zeros", incr.State, incr.BytesWritten, incr.ZeroBytes)
	}
	check("after the jobs")
	// The VMA's own figures, from its store, on its API and its metrics
	// listener, agree with the OMA's.
	for _, base := range []string{v.URL, v.MetricsURL} {
		code, m := scrape(t, base, "")
		if code != http.StatusOK {
			t.Fatalf("GET %s/metrics = %d", base, code)
		}
		want := map[string]float64{
			`godwit_copy_bytes_total{kind="initial",vma="vma-1"}`:          float64(job.BytesWritten),
			`godwit_copy_bytes_total{kind="incremental",vma="vma-1"}`:      float64(incr.BytesWritten),
			`godwit_copy_zero_bytes_total{kind="incremental",vma="vma-1"}`: 1 << 20,
			`godwit_vma_jobs{state="completed",vma="vma-1"}`:               2,
			`godwit_vma_jobs_finished_total{result="failed",vma="vma-1"}`:  0,
			`godwit_verify_mismatches_total{vma="vma-1"}`:                  0,
			`godwit_vma_bus_connected{vma="vma-1"}`:                        1,
		}
		for k, want := range want {
			if got, ok := m[k]; !ok || got != want {
				t.Errorf("VMA %s: %s = %v (present %v), want %v", base, k, got, ok, want)
			}
		}
	}
	// The apply lag is measured as events are applied (in memory).
	if _, m := scrape(t, o.URL, o.Token); m[`godwit_event_apply_lag_seconds_count{stream="PROGRESS"}`] < 2 {
		t.Errorf("godwit_event_apply_lag_seconds_count{stream=\"PROGRESS\"} = %v, want at least the 2 progress events", m[`godwit_event_apply_lag_seconds_count{stream="PROGRESS"}`])
	}
	o.Restart()
	check("after an OMA restart")
}
