// Package metrics exposes a VMA's figures in Prometheus's text format (GET
// /metrics): its jobs, read from its bbolt store at each scrape (so a
// restart resets no counter), and how its bus connection and SSH tunnel
// fare now. Names and labels match the OMA's where they mean the same
// thing (godwit_copy_bytes_total{vma,kind}), so one dashboard reads both.
package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/vma/store"
	"github.com/godwit/godwit/vma/tunnel"
)

// Config configures a Collector.
type Config struct {
	// VMA is the VMA's id, the vma label.
	VMA string
	// Version is what godwit_build_info says.
	Version string
	// Connected reports whether the bus connection is up; nil omits
	// godwit_vma_bus_connected.
	Connected func() bool
	// Tunnel is the SSH tunnel to the OMA; nil (no tunnel) omits the
	// tunnel's figures.
	Tunnel interface{ State() tunnel.State }
}

// Collector is a prometheus.Collector of a VMA's jobs in st and its links.
type Collector struct {
	cfg Config
	st  *store.Store

	copyBytes, zeroBytes, jobs, finished, mismatches    *prometheus.Desc
	busUp, tunnelUp, reconnects, tunnelBytes, rtt, info *prometheus.Desc
}

// New returns the Collector of st.
func New(st *store.Store, cfg Config) *Collector {
	vma := prometheus.Labels{"vma": cfg.VMA}
	return &Collector{cfg: cfg, st: st,
		copyBytes:   prometheus.NewDesc("godwit_copy_bytes_total", "Bytes this VMA copied into the OMA's exports, by job kind (initial or incremental).", []string{"kind"}, vma),
		zeroBytes:   prometheus.NewDesc("godwit_copy_zero_bytes_total", "Of godwit_copy_bytes_total, the bytes that read as zeros: skipped or written as zeroes, never sent as data (counted as each disk's copy ends).", []string{"kind"}, vma),
		jobs:        prometheus.NewDesc("godwit_vma_jobs", "This VMA's jobs by its own state (accepted, queued, running, paused, completed, failed, cancelled).", []string{"state"}, vma),
		finished:    prometheus.NewDesc("godwit_vma_jobs_finished_total", "This VMA's jobs that ended, by result.", []string{"result"}, vma),
		mismatches:  prometheus.NewDesc("godwit_verify_mismatches_total", "Jobs whose verification found an export that differs from the source.", nil, vma),
		busUp:       prometheus.NewDesc("godwit_vma_bus_connected", "1 while the VMA's NATS connection to the OMA is up, else 0.", nil, vma),
		tunnelUp:    prometheus.NewDesc("godwit_vma_tunnel_up", "1 while the SSH tunnel to the OMA is connected, else 0.", nil, vma),
		reconnects:  prometheus.NewDesc("godwit_vma_tunnel_reconnects_total", "SSH connections made after the first, since the VMA started.", nil, vma),
		tunnelBytes: prometheus.NewDesc("godwit_vma_tunnel_bytes_total", "Bytes through the SSH tunnel, SSH framing included, since the VMA started, by direction (in: from the OMA).", []string{"direction"}, vma),
		rtt:         prometheus.NewDesc("godwit_vma_tunnel_rtt_seconds", "TCP's smoothed round-trip time on the tunnel's primary connection (0 while unknown).", nil, vma),
		info:        prometheus.NewDesc("godwit_build_info", "The VMA's version and Go version; always 1.", []string{"version", "goversion"}, vma),
	}
}

// Registry returns a registry with c, and Go's runtime and process
// collectors.
func Registry(c *Collector) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.copyBytes, c.zeroBytes, c.jobs, c.finished, c.mismatches,
		c.busUp, c.tunnelUp, c.reconnects, c.tunnelBytes, c.rtt, c.info} {
		ch <- d
	}
}

// states and results are the label values always present, zeros too.
var (
	states  = []string{store.StateAccepted, store.StateQueued, store.StateRunning, store.StatePaused, store.StateCompleted, store.StateFailed, store.StateCancelled}
	results = []string{store.StateCompleted, store.StateFailed, store.StateCancelled}
)

// Collect implements prometheus.Collector: it reads the store once.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, c.cfg.Version, runtime.Version())
	if c.cfg.Connected != nil {
		ch <- prometheus.MustNewConstMetric(c.busUp, prometheus.GaugeValue, one(c.cfg.Connected()))
	}
	if c.cfg.Tunnel != nil {
		s := c.cfg.Tunnel.State()
		ch <- prometheus.MustNewConstMetric(c.tunnelUp, prometheus.GaugeValue, one(s.Connected))
		ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(s.Reconnects))
		ch <- prometheus.MustNewConstMetric(c.tunnelBytes, prometheus.CounterValue, float64(s.BytesIn), "in")
		ch <- prometheus.MustNewConstMetric(c.tunnelBytes, prometheus.CounterValue, float64(s.BytesOut), "out")
		ch <- prometheus.MustNewConstMetric(c.rtt, prometheus.GaugeValue, s.RTT.Seconds())
	}
	jobs, err := c.st.Jobs()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.jobs, err)
		return
	}
	bytes := map[string]float64{events.ReplicationInitial: 0, events.ReplicationIncremental: 0}
	zero := map[string]float64{events.ReplicationInitial: 0, events.ReplicationIncremental: 0}
	byState := map[string]float64{}
	for _, s := range states {
		byState[s] = 0
	}
	mismatches := 0.0
	for _, j := range jobs {
		state := j.State
		if state == "" {
			state = store.StateAccepted
		}
		byState[state]++
		if j.ErrorCode == events.FailureMismatch {
			mismatches++
		}
		if j.ReplicationType == "" {
			continue // not started: nothing copied
		}
		for _, d := range j.Disks {
			bytes[j.ReplicationType] += float64(d.BytesDone)
			zero[j.ReplicationType] += float64(d.ZeroBytes)
		}
	}
	for kind, n := range bytes {
		ch <- prometheus.MustNewConstMetric(c.copyBytes, prometheus.CounterValue, n, kind)
		ch <- prometheus.MustNewConstMetric(c.zeroBytes, prometheus.CounterValue, zero[kind], kind)
	}
	for s, n := range byState {
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, n, s)
	}
	for _, r := range results {
		ch <- prometheus.MustNewConstMetric(c.finished, prometheus.CounterValue, byState[r], r)
	}
	ch <- prometheus.MustNewConstMetric(c.mismatches, prometheus.CounterValue, mismatches)
}

// one is 1 for true, 0 for false.
func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
