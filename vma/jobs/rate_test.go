package jobs_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
)

// measureRate returns the bytes per second job id copied over d, from
// the bytes done its progress events gave the OMA.
func (b *bed) measureRate(t *testing.T, id string, d time.Duration) float64 {
	t.Helper()
	first, start := b.get(t, id).BytesDone, time.Now()
	time.Sleep(d)
	last := b.get(t, id).BytesDone
	return float64(last-first) / time.Since(start).Seconds()
}

// within reports whether got is within frac of want.
func within(got, want, frac float64) bool { return got >= want*(1-frac) && got <= want*(1+frac) }

// TestRateLimitsWhileRunning: a job's own limit, set before it starts and
// lowered while it copies, holds its copy to within 10 % of it two
// seconds after each change, without restarting the copy; two jobs under
// one VMA limit each get about half of it; bad limits are refused.
func TestRateLimitsWhileRunning(t *testing.T) {
	testkit.Long(t)
	// Small requests, so that the bytes done move smoothly under a low
	// limit (a request counts when written whole).
	b := newBed(t, bedConfig{vma: func(c *appliance.Config) { c.Copy.RequestSize = 64 << 10 }})
	patch := func(path string, rate int64, want int) {
		t.Helper()
		var p struct {
			Field string `json:"field"`
		}
		if code := b.o.Do(http.MethodPatch, path, map[string]any{"rate": rate}, &p); code != want {
			t.Fatalf("PATCH %s rate %d = %d (%s), want %d", path, rate, code, p.Field, want)
		}
	}
	const mib = 1 << 20
	j := b.create(t, threeDisks) // 9 MiB of data
	patch("/api/v1/replications/"+j.JobID, mib, http.StatusOK)
	b.startFromOMA(t, j.JobID)
	testkit.Eventually(t, "the copy under way", func() bool { return b.get(t, j.JobID).State == events.JobCopying })
	time.Sleep(2 * time.Second)
	if got := b.measureRate(t, j.JobID, 3*time.Second); !within(got, mib, 0.10) {
		t.Errorf("at a limit of 1 MiB/s the job copied %.0f B/s", got)
	}
	patch("/api/v1/replications/"+j.JobID, mib/2, http.StatusOK)
	time.Sleep(2 * time.Second)
	if got := b.measureRate(t, j.JobID, 3*time.Second); !within(got, mib/2, 0.10) {
		t.Errorf("lowered to 512 KiB/s, the job copied %.0f B/s", got)
	}
	patch("/api/v1/replications/"+j.JobID, 0, http.StatusOK) // no limit: it finishes
	done := b.wait(t, j.JobID)
	if done.State != events.JobCompleted {
		t.Fatalf("the job = %s (%s)", done.State, done.LastError)
	}
	b.assertCopied(t, threeDisksPath, done)
	if n := strings.Count(b.v.Logs.String(), `msg="job starting" vma=vma-1 job=`+j.JobID+" "); n != 1 {
		t.Errorf("the job started %d times: a rate change must not restart it", n)
	}

	// Two jobs under one VMA limit share it.
	patch("/api/v1/vmas/vma-1", mib, http.StatusOK)
	a, c := b.create(t, threeDisks), b.create(t, "gen-vm-006") // 9 MiB of data each
	b.startFromOMA(t, a.JobID)
	b.startFromOMA(t, c.JobID)
	testkit.Eventually(t, "both copies under way", func() bool {
		return b.get(t, a.JobID).State == events.JobCopying && b.get(t, c.JobID).State == events.JobCopying
	})
	time.Sleep(2 * time.Second)
	ra, rc := make(chan float64), make(chan float64)
	go func() { ra <- b.measureRate(t, a.JobID, 3*time.Second) }()
	go func() { rc <- b.measureRate(t, c.JobID, 3*time.Second) }()
	gotA, gotC := <-ra, <-rc
	if !within(gotA, mib/2, 0.2) || !within(gotC, mib/2, 0.2) || !within(gotA+gotC, mib, 0.1) {
		t.Errorf("under a VMA limit of 1 MiB/s two jobs copied %.0f and %.0f B/s, want about half each", gotA, gotC)
	}
	patch("/api/v1/vmas/vma-1", 0, http.StatusOK)
	for _, id := range []string{a.JobID, c.JobID} {
		if got := b.wait(t, id); got.State != events.JobCompleted {
			t.Errorf("job %s = %s (%s)", id, got.State, got.LastError)
		}
	}

	// Bad limits change nothing.
	patch("/api/v1/replications/"+a.JobID, mib, http.StatusConflict) // ended
	patch("/api/v1/vmas/vma-1", -1, http.StatusBadRequest)
	patch("/api/v1/limits", 10, http.StatusBadRequest)
	patch("/api/v1/vmas/nope", mib, http.StatusNotFound)
	var l struct {
		Rate        int64 `json:"rate"`
		RateWindows []struct {
			Start string `json:"start"`
			Rate  int64  `json:"rate"`
		} `json:"rate_windows"`
	}
	if b.o.Do(http.MethodGet, "/api/v1/limits", nil, &l); l.Rate != 0 {
		t.Errorf("a refused global limit was kept: %d", l.Rate)
	}
	for _, bad := range []struct {
		window map[string]any
		field  string
	}{
		{map[string]any{"start": "25:00", "end": "06:00", "rate": mib}, "rate_windows[0].start"},
		{map[string]any{"start": "08:00", "end": "20:00", "tz": "Mars/Olympus", "rate": mib}, "rate_windows[0].tz"},
		{map[string]any{"start": "08:00", "end": "20:00", "rate": 10}, "rate_windows[0].rate"},
	} {
		var p struct {
			Field string `json:"field"`
		}
		if code := b.o.Do(http.MethodPatch, "/api/v1/limits", map[string]any{"rate_windows": []any{bad.window}}, &p); code != http.StatusBadRequest || p.Field != bad.field {
			t.Errorf("PATCH /api/v1/limits with %v = %d naming %q, want 400 naming %q", bad.window, code, p.Field, bad.field)
		}
	}
	if code := b.o.Do(http.MethodPatch, "/api/v1/limits", map[string]any{"rate_windows": []any{
		map[string]any{"start": "08:00", "end": "20:00", "tz": "Europe/Berlin", "rate": 50 * mib}}}, &l); code != http.StatusOK || len(l.RateWindows) != 1 || l.RateWindows[0].Rate != 50*mib {
		t.Errorf("PATCH a daytime limit = %d %+v", code, l)
	}

	// Every change was an event, and no refusal was.
	for filter, want := range map[string]uint64{"godwit.job.limits.job": 3, "godwit.job.limits.vma": 2, "godwit.job.limits.global": 1} {
		testkit.Eventually(t, "the limits events on "+filter, func() bool { return bustest.Count(t, b.o.Admin, bus.StreamJobs, filter) == want })
	}
}
