package jobs

import (
	"context"
	"sync"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/vma/copier"
)

// Progress is a job's progress as the VMA reports it.
type Progress struct {
	JobID string `json:"job_id"`
	// State is the VMA's state of the job (store.State*).
	State string `json:"state"`
	// Phase is the running job's phase (snapshotting, copying, verifying,
	// finalizing).
	Phase string `json:"phase,omitempty"`
	events.Figures
	Disks []DiskProgress `json:"disks"`
	// Snapshot is the VMware snapshot the job copies from, once taken.
	Snapshot string `json:"snapshot,omitempty"`
}

// DiskProgress is the progress of one disk of a job.
type DiskProgress struct {
	Key                int32   `json:"key"`
	BytesTotal         int64   `json:"bytes_total"`
	BytesDone          int64   `json:"bytes_done"`
	Percent            float64 `json:"percent"`
	RateBytesPerSecond int64   `json:"rate_bytes_per_second"`
	// Checkpoint is the offset below which the disk's areas are written
	// and acknowledged; Durable the one below which they are also flushed
	// and recorded (the resume's).
	Checkpoint int64 `json:"checkpoint"`
	Durable    int64 `json:"durable_checkpoint"`
	// VerifyBytesTotal is what the disk's copy reads back (this run's
	// bytes), VerifyBytesDone what it has, VerifyRateBytesPerSecond the
	// recent rate of that.
	VerifyBytesTotal         int64 `json:"verify_bytes_total"`
	VerifyBytesDone          int64 `json:"verify_bytes_done"`
	VerifyRateBytesPerSecond int64 `json:"verify_rate_bytes_per_second"`
}

// tracker gathers the progress of a job's disks, as the copier reports
// them, into the job's.
type tracker struct {
	now func() time.Time

	mu      sync.Mutex
	phase   string
	start   time.Time // when the copy began; zero before
	disks   []DiskProgress
	snap    string // the VMware snapshot copied from
	changed bool   // since the last snapshot taken for publishing
}

func newTracker(now func() time.Time) *tracker { return &tracker{now: now} }

// setPhase moves the job to phase.
func (t *tracker) setPhase(phase string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.phase, t.changed = phase, true
	if phase == events.PhaseCopying && t.start.IsZero() {
		t.start = t.now()
	}
}

// setSnapshot records the VMware snapshot the job copies from.
func (t *tracker) setSnapshot(ref string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.snap, t.changed = ref, true
}

// setDisks sets what each disk will copy.
func (t *tracker) setDisks(disks []DiskProgress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.disks, t.changed = disks, true
}

// update records a copier's progress for the disk with key. It returns
// true when that moved the job to verifying: a copying job whose every
// disk is copied, with bytes to check. The job stays verifying from
// then on, and the caller publishes the change at once, however short the
// verification.
func (t *tracker) update(key int32, p copier.Progress) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.disks {
		if d := &t.disks[i]; d.Key == key {
			// Done never goes back: a copy that starts again from its last
			// recorded checkpoint (the export came back) redoes bytes.
			d.BytesTotal, d.BytesDone, d.Checkpoint = p.Total, max(d.BytesDone, p.Done), p.Checkpoint
			d.RateBytesPerSecond = int64(p.Rate)
			d.VerifyBytesTotal, d.VerifyBytesDone, d.VerifyRateBytesPerSecond = p.VerifyTotal, p.Verified, 0
			if p.Done == p.Total {
				// Copied: the copier's rate is now that of reading back.
				d.RateBytesPerSecond = 0
				if p.Verified < p.VerifyTotal {
					d.VerifyRateBytesPerSecond = int64(p.Rate)
				}
			}
			d.Percent = percent(d.BytesDone, d.BytesTotal)
			t.changed = true
		}
	}
	if t.phase != events.PhaseCopying {
		return false
	}
	var verify int64
	for _, d := range t.disks {
		if d.BytesDone < d.BytesTotal {
			return false
		}
		verify += d.VerifyBytesTotal
	}
	if verify == 0 {
		return false
	}
	t.phase = events.PhaseVerifying
	return true
}

// durable records that the disk with key is durable below checkpoint.
func (t *tracker) durable(key int32, checkpoint int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.disks {
		if d := &t.disks[i]; d.Key == key && checkpoint > d.Durable {
			d.Durable, t.changed = checkpoint, true
		}
	}
}

// rate returns the bytes per second the job's copies write now.
func (t *tracker) rate() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var r int64
	for _, d := range t.disks {
		r += d.RateBytesPerSecond
	}
	return r
}

// snapshot returns the job's progress now, and whether it changed since
// the last snapshot.
func (t *tracker) snapshot() (Progress, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := Progress{Phase: t.phase, Disks: append([]DiskProgress(nil), t.disks...), Snapshot: t.snap}
	for _, d := range t.disks {
		p.BytesTotal += d.BytesTotal
		p.BytesDone += d.BytesDone
		p.RateBytesPerSecond += d.RateBytesPerSecond
		p.VerifyBytesTotal += d.VerifyBytesTotal
		p.VerifyBytesDone += d.VerifyBytesDone
		p.VerifyRateBytesPerSecond += d.VerifyRateBytesPerSecond
	}
	p.Percent = percent(p.BytesDone, p.BytesTotal)
	p.VerifyPercent = percent(p.VerifyBytesDone, p.VerifyBytesTotal)
	if p.VerifyBytesTotal == 0 {
		p.VerifyPercent = 0
	}
	if p.BytesTotal == 0 && t.phase != events.PhaseFinalizing {
		p.Percent = 0 // nothing planned yet: not 100% of nothing
	}
	if !t.start.IsZero() {
		if secs := t.now().Sub(t.start).Seconds(); secs > 0 {
			p.AverageRateBytesPerSecond = int64(float64(p.BytesDone) / secs)
		}
	}
	switch {
	case p.Phase == events.PhaseVerifying && p.VerifyRateBytesPerSecond > 0:
		eta := (p.VerifyBytesTotal - p.VerifyBytesDone + p.VerifyRateBytesPerSecond - 1) / p.VerifyRateBytesPerSecond
		p.ETASeconds = &eta
	case p.Phase == events.PhaseVerifying:
		if p.VerifyBytesDone >= p.VerifyBytesTotal {
			var zero int64
			p.ETASeconds = &zero
		}
	case p.RateBytesPerSecond > 0:
		eta := (p.BytesTotal - p.BytesDone + p.RateBytesPerSecond - 1) / p.RateBytesPerSecond
		p.ETASeconds = &eta
	case p.BytesTotal > 0 && p.BytesDone == p.BytesTotal:
		var zero int64
		p.ETASeconds = &zero
	}
	changed := t.changed
	t.changed = false
	return p, changed
}

// percent is done of total in percent, to a tenth; 100 for nothing to do.
func percent(done, total int64) float64 {
	if total <= 0 {
		return 100
	}
	return float64(1000*done/total) / 10
}

// event is p as a progress event of job from vma with seq.
func (p Progress) event(job, vma string, seq uint64) *events.Progress {
	ev := &events.Progress{JobID: job, VMAID: vma, Seq: seq, Phase: p.Phase, BytesTotal: p.BytesTotal, BytesDone: p.BytesDone,
		RateBytesPerSecond: p.RateBytesPerSecond, AverageRateBytesPerSecond: p.AverageRateBytesPerSecond,
		Percent: p.Percent, ETASeconds: p.ETASeconds, VerifyBytesTotal: p.VerifyBytesTotal, VerifyBytesDone: p.VerifyBytesDone,
		VerifyRateBytesPerSecond: p.VerifyRateBytesPerSecond, Disks: []events.DiskProgress{}, Snapshot: p.Snapshot}
	for _, d := range p.Disks {
		ev.Disks = append(ev.Disks, events.DiskProgress{Key: d.Key, BytesTotal: d.BytesTotal, BytesDone: d.BytesDone, RateBytesPerSecond: d.RateBytesPerSecond,
			VerifyBytesTotal: d.VerifyBytesTotal, VerifyBytesDone: d.VerifyBytesDone, Checkpoint: d.Durable})
	}
	return ev
}

// ticker calls f every interval until ctx ends.
func ticker(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
