// Package metrics exposes the OMA's figures in Prometheus's text format
// (GET /metrics). They are read from bbolt at each scrape, so they are
// what the OMA's state says, and an OMA restart does not reset a counter
// to zero. Labels are bounded: VMAs, job kinds, states and results, never
// a job or VM id.
package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/queue"
	"github.com/godwit/godwit/oma/store"
)

// Config configures a Collector.
type Config struct {
	// Version is what godwit_build_info says.
	Version string
	// HeartbeatTimeout is how recent a VMA's heartbeat must be for
	// godwit_vma_connected; 0 means 30 s.
	HeartbeatTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Buckets of the histograms.
var (
	durationBuckets = prometheus.ExponentialBuckets(1, 4, 10)     // 1 s to 73 h
	bytesBuckets    = prometheus.ExponentialBuckets(1<<20, 4, 10) // 1 MiB to 256 GiB
	downtimeBuckets = []float64{10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200}
)

// Collector is a prometheus.Collector of the OMA's state in st.
type Collector struct {
	cfg Config
	st  *store.Store

	copyBytes, zeroBytes, jobs, finished, mismatches, jobDuration, syncBytes *prometheus.Desc
	cutovers, downtime, limit, vmaConnected, outages, applied, info          *prometheus.Desc
}

// New returns the Collector of st.
func New(st *store.Store, cfg Config) *Collector {
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Collector{cfg: cfg, st: st,
		copyBytes:    prometheus.NewDesc("godwit_copy_bytes_total", "Bytes the VMAs copied into the OMA's exports, by VMA and job kind (initial or incremental): each job's progress while it runs.", []string{"vma", "kind"}, nil),
		zeroBytes:    prometheus.NewDesc("godwit_copy_zero_bytes_total", "Of godwit_copy_bytes_total, the bytes that read as zeros: skipped or written as zeroes, never sent as data (counted as each disk's copy ends).", []string{"vma", "kind"}, nil),
		jobs:         prometheus.NewDesc("godwit_jobs", "Jobs by state.", []string{"state"}, nil),
		mismatches:   prometheus.NewDesc("godwit_verify_mismatches_total", "Jobs whose verification found an export that differs from the source, by VMA.", []string{"vma"}, nil),
		applied:      prometheus.NewDesc("godwit_events_applied_total", "Events the OMA applied to its state, by CloudEvents type (each once, however often delivered).", []string{"type"}, nil),
		finished:     prometheus.NewDesc("godwit_jobs_finished_total", "Jobs that ended, by result.", []string{"result"}, nil),
		jobDuration:  prometheus.NewDesc("godwit_job_duration_seconds", "How long completed jobs took, from creation to completion, by kind.", []string{"kind"}, nil),
		syncBytes:    prometheus.NewDesc("godwit_sync_changed_bytes", "Bytes each completed incremental job copied: what changed since the sync before.", nil, nil),
		cutovers:     prometheus.NewDesc("godwit_cutovers", "VMs' cutovers by state.", []string{"state"}, nil),
		downtime:     prometheus.NewDesc("godwit_cutover_downtime_seconds", "Measured downtime of the cutovers that cut over: from the source's power-off to the boot check passed.", nil, nil),
		limit:        prometheus.NewDesc("godwit_bandwidth_limit_bytes_per_second", "Bandwidth limits in force now (0: none), of all jobs (object global) and of each VMA's.", []string{"object", "name"}, nil),
		vmaConnected: prometheus.NewDesc("godwit_vma_connected", "1 when the VMA's last heartbeat is recent, else 0.", []string{"vma"}, nil),
		outages:      prometheus.NewDesc("godwit_vma_tunnel_outages_total", "Outages of the VMA's SSH tunnel it reported.", []string{"vma"}, nil),
		info:         prometheus.NewDesc("godwit_build_info", "The OMA's version and Go version; always 1.", []string{"version", "goversion"}, nil),
	}
}

// Registry returns a registry with c, lag, and Go's runtime and process
// collectors.
func Registry(c *Collector, lag *ApplyLag) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(c, lag, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// ApplyLag measures how long events waited in their stream until the OMA
// had applied them (godwit_event_apply_lag_seconds{stream}): from the
// time the server stored an event to its commit. It is kept in memory
// (lag is now, not history), and is safe for concurrent use.
type ApplyLag struct {
	h   *prometheus.HistogramVec
	now func() time.Time
}

// NewApplyLag returns an ApplyLag on the clock now (nil: time.Now).
func NewApplyLag(now func() time.Time) *ApplyLag {
	if now == nil {
		now = time.Now
	}
	return &ApplyLag{now: now, h: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "godwit_event_apply_lag_seconds",
		Help:    "From an event's storing in its stream to its being applied by the OMA, by stream (since the OMA started).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12), // 1 ms to 24 s
	}, []string{"stream"})}
}

// Describe implements prometheus.Collector.
func (l *ApplyLag) Describe(ch chan<- *prometheus.Desc) { l.h.Describe(ch) }

// Collect implements prometheus.Collector.
func (l *ApplyLag) Collect(ch chan<- prometheus.Metric) { l.h.Collect(ch) }

// Observe records an event of stream, stored at stored, applied now; it
// fits bus.ClientConfig.OnHandled.
func (l *ApplyLag) Observe(stream string, stored time.Time) {
	l.h.WithLabelValues(stream).Observe(max(l.now().Sub(stored), 0).Seconds())
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.copyBytes, c.zeroBytes, c.jobs, c.finished, c.mismatches, c.jobDuration, c.syncBytes,
		c.cutovers, c.downtime, c.limit, c.vmaConnected, c.outages, c.applied, c.info} {
		ch <- d
	}
}

// jobStates and results are the label values always present, zeros too.
var (
	jobStates = []string{events.JobPending, events.JobQueued, events.JobSnapshotting, events.JobCopying, events.JobVerifying,
		events.JobFinalizing, events.JobPaused, events.JobCompleted, events.JobFailed, events.JobCancelled, events.JobPausedExpired}
	results = []string{events.JobCompleted, events.JobFailed, events.JobCancelled, events.JobPausedExpired}
)

// Collect implements prometheus.Collector: it reads the store once.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, c.cfg.Version, runtime.Version())
	err := c.st.View(func(tx *bbolt.Tx) error {
		jobs, err := store.Jobs(tx)
		if err != nil {
			return err
		}
		c.collectJobs(ch, jobs)
		cuts, err := store.Cutovers(tx)
		if err != nil {
			return err
		}
		c.collectCutovers(ch, cuts)
		for typ, n := range store.ApplyCounts(tx) {
			ch <- prometheus.MustNewConstMetric(c.applied, prometheus.CounterValue, float64(n), typ)
		}
		vmas, err := store.VMAs(tx)
		if err != nil {
			return err
		}
		settings, err := store.GetSettings(tx)
		if err != nil {
			return err
		}
		now := c.cfg.Now()
		ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(queue.RateAt(settings.RateLimit, settings.RateWindows, now)), "global", "")
		for _, v := range vmas {
			ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(queue.RateAt(v.RateLimit, v.RateWindows, now)), "vma", v.ID)
			up := 0.0
			if v.LastSeen != nil && now.Sub(*v.LastSeen) <= c.cfg.HeartbeatTimeout {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(c.vmaConnected, prometheus.GaugeValue, up, v.ID)
			n := 0
			if v.Tunnel != nil {
				n = v.Tunnel.Count
			}
			ch <- prometheus.MustNewConstMetric(c.outages, prometheus.CounterValue, float64(n), v.ID)
		}
		return nil
	})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.jobs, err)
	}
}

// collectJobs sends the jobs' figures.
func (c *Collector) collectJobs(ch chan<- prometheus.Metric, jobs []store.Job) {
	type vk struct{ vma, kind string }
	bytes, zero := map[vk]float64{}, map[vk]float64{}
	mismatches := map[string]float64{}
	states := map[string]float64{}
	for _, s := range jobStates {
		states[s] = 0
	}
	durations := map[string][]float64{}
	var changed []float64
	for _, j := range jobs {
		bytes[vk{j.VMAID, j.ReplicationType}] += float64(copied(j))
		zero[vk{j.VMAID, j.ReplicationType}] += float64(j.ZeroBytes)
		if _, ok := mismatches[j.VMAID]; !ok {
			mismatches[j.VMAID] = 0
		}
		if j.ErrorCode == events.FailureMismatch {
			mismatches[j.VMAID]++
		}
		states[j.State]++
		if j.State == events.JobCompleted && j.FinishedAt != nil {
			durations[j.ReplicationType] = append(durations[j.ReplicationType], j.FinishedAt.Sub(j.CreatedAt).Seconds())
			if j.ReplicationType == events.ReplicationIncremental {
				changed = append(changed, float64(j.BytesWritten))
			}
		}
	}
	for k, v := range bytes {
		ch <- prometheus.MustNewConstMetric(c.copyBytes, prometheus.CounterValue, v, k.vma, k.kind)
		ch <- prometheus.MustNewConstMetric(c.zeroBytes, prometheus.CounterValue, zero[k], k.vma, k.kind)
	}
	for vma, n := range mismatches {
		ch <- prometheus.MustNewConstMetric(c.mismatches, prometheus.CounterValue, n, vma)
	}
	for s, n := range states {
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, n, s)
	}
	for _, r := range results {
		ch <- prometheus.MustNewConstMetric(c.finished, prometheus.CounterValue, states[r], r)
	}
	for _, kind := range []string{events.ReplicationInitial, events.ReplicationIncremental} {
		ch <- histogram(c.jobDuration, durationBuckets, durations[kind], kind)
	}
	ch <- histogram(c.syncBytes, bytesBuckets, changed)
}

// copied is what job j has written: its progress while it runs, what its
// VMA reported writing once it ended (an incremental job's bytes_done then
// counts its unchanged disks as done; its VMA's figure is what it wrote,
// and never less than the progress it reported).
func copied(j store.Job) int64 {
	if jobs.Final(j.State) {
		return j.BytesWritten
	}
	return j.BytesDone
}

// collectCutovers sends the cutovers' figures.
func (c *Collector) collectCutovers(ch chan<- prometheus.Metric, cuts []store.Cutover) {
	states := map[string]float64{}
	var down []float64
	for _, cut := range cuts {
		states[cut.State]++
		if cut.Measured.Total > 0 && cut.DoneAt != nil && (cut.State == events.CutoverCutOver || cut.State == events.CutoverCommitted || cut.State == events.CutoverRolledBack) {
			down = append(down, cut.Measured.Total)
		}
	}
	for s, n := range states {
		ch <- prometheus.MustNewConstMetric(c.cutovers, prometheus.GaugeValue, n, s)
	}
	ch <- histogram(c.downtime, downtimeBuckets, down)
}

// histogram makes a constant histogram of values in buckets.
func histogram(d *prometheus.Desc, buckets, values []float64, labels ...string) prometheus.Metric {
	counts := make(map[float64]uint64, len(buckets))
	var sum float64
	for _, v := range values {
		sum += v
		for _, b := range buckets {
			if v <= b {
				counts[b]++
			}
		}
	}
	return prometheus.MustNewConstHistogram(d, uint64(len(values)), sum, counts, labels...)
}
