package appliance_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
)

// BenchmarkClusterApply measures what the cluster costs the OMA's apply
// path: 50 simulated VMAs with 20 copying jobs each (1,000 jobs) publish
// one progress event per job per round, a round a second (each VMA through
// a bus.Publisher, as a VMA does), for b.N rounds; first to an OMA on one
// embedded node (streams R1), then to an OMA on three nodes (every stream
// R3, and its state copied for a standby, each change acknowledged by the
// cluster). For each it reports the events applied per second over the
// whole run (published and applied), and the apply lag's median and p99
// of the measured rounds, after two rounds of warm-up
// (from the time the stream stored an event to its change committed, the
// OMA's godwit_event_apply_lag_seconds; goal: p99 under 1 s).
func BenchmarkClusterApply(b *testing.B) {
	const (
		vmas    = 50
		jobsPer = 20
	)
	single := benchApply(b, vmas, jobsPer, false)
	cluster := benchApply(b, vmas, jobsPer, true)
	b.ReportMetric(single.rate, "R1-applied/s")
	b.ReportMetric(cluster.rate, "R3-applied/s")
	b.ReportMetric(single.p50*1000, "R1-lag-p50-ms")
	b.ReportMetric(single.p99*1000, "R1-lag-p99-ms")
	b.ReportMetric(cluster.p50*1000, "R3-lag-p50-ms")
	b.ReportMetric(cluster.p99*1000, "R3-lag-p99-ms")
}

// applied is what one run of benchApply measured.
type applied struct {
	rate, p50, p99 float64
}

func benchApply(b *testing.B, vmas, jobsPer int, clustered bool) applied {
	b.Helper()
	// The VMAs and their copying jobs are in the OMA's state before it
	// starts: 1,000 exports would be 1,000 nbdkits.
	type simVMA struct {
		id   string
		seed []byte
		jobs []string
	}
	var sims []*simVMA
	stateDir := b.TempDir()
	st, err := appliance.OpenStore(stateDir)
	if err != nil {
		b.Fatal(err)
	}
	first, _ := testkit.FreePorts(b, vmas)
	now := time.Now().UTC()
	err = st.Update(func(tx *bbolt.Tx) error {
		for v := range vmas {
			kp, err := nkeys.CreateUser()
			if err != nil {
				return err
			}
			pub, _ := kp.PublicKey()
			seed, _ := kp.Seed()
			s := &simVMA{id: fmt.Sprintf("vma-%02d", v+1), seed: seed}
			if err := store.PutVMA(tx, store.VMA{ID: s.id, NKey: pub, RegisteredAt: now, APIPort: first + v}); err != nil {
				return err
			}
			for j := range jobsPer {
				id := fmt.Sprintf("%s-job-%02d", s.id, j+1)
				s.jobs = append(s.jobs, id)
				if err := store.PutJob(tx, store.Job{ID: id, VMAID: s.id, VM: events.VMRef{ID: id + "-vm", Name: id}, ReplicationType: events.ReplicationInitial,
					State: events.JobCopying, BytesTotal: 1 << 40, CreatedAt: now, UpdatedAt: now}); err != nil {
					return err
				}
			}
			sims = append(sims, s)
		}
		return nil
	})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}

	ocfg := testbed.OMAConfig{Configure: func(c *appliance.Config) { c.StateDir = stateDir }}
	if clustered {
		c, keys := startKeyedCluster(b)
		ocfg.Configure = func(cfg *appliance.Config) {
			cfg.StateDir, cfg.NATSURL, cfg.KeysDir, cfg.StreamReplicas = stateDir, c.URLs(), keys.Dir, 3
		}
	}
	o := testbed.StartOMA(b, ocfg)
	var conns []*bus.Conn
	for _, s := range sims {
		var conn *bus.Conn
		testkit.Eventually(b, s.id+" connected", func() bool { // the nodes learn the VMAs from the OMA
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			inbox, _ := subject.InboxPrefix(s.id)
			conn, err = bus.Connect(ctx, o.NATSURL, bus.ClientConfig{Name: s.id, Source: "/godwit/vma/" + s.id, NKeySeed: s.seed,
				InboxPrefix: inbox, Confined: true})
			return err == nil
		})
		b.Cleanup(conn.Close)
		conns = append(conns, conn)
	}
	const progressType = `godwit_events_applied_total{type="` + events.TypeProgress + `"}`
	var before map[string]float64
	// rounds publishes n rounds from every VMA, from round first on.
	rounds := func(first, n int) {
		start := time.Now()
		var wg sync.WaitGroup
		for v, s := range sims {
			wg.Go(func() {
				pub := conns[v].NewPublisher(bus.PublisherConfig{})
				defer pub.Close()
				ctx := context.Background()
				// Each VMA's round is spread over the second, as real ones are.
				offset := time.Duration(v) * time.Second / time.Duration(len(sims))
				for round := range n {
					time.Sleep(time.Until(start.Add(offset + time.Duration(round)*time.Second)))
					for _, id := range s.jobs {
						seq := uint64(first + round + 1)
						if _, err := pub.Publish(ctx, &events.Progress{JobID: id, VMAID: s.id, Seq: seq, Phase: events.PhaseCopying, BytesTotal: 1 << 40,
							BytesDone: int64(seq) << 20, RateBytesPerSecond: 1 << 20, Disks: []events.DiskProgress{{Key: 2000, BytesTotal: 1 << 40, BytesDone: int64(seq) << 20}}}, nil); err != nil {
							b.Error(err)
							return
						}
					}
				}
				if err := pub.Flush(testkit.Context(b)); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		want := before[progressType] + float64(n*vmas*jobsPer)
		testkit.Eventually(b, "every progress event applied", func() bool { return scrape(b, o)[progressType] >= want })
	}
	before = scrape(b, o)
	rounds(0, 2) // warm up: the consumers, the first copy of the state
	before = scrape(b, o)

	b.ResetTimer()
	start := time.Now()
	rounds(2, b.N)
	elapsed := time.Since(start)
	b.StopTimer()
	m := scrape(b, o)
	for k, v := range before { // the measured rounds' lags only
		m[k] -= v
	}
	return applied{rate: float64(b.N*vmas*jobsPer) / elapsed.Seconds(),
		p50: quantile(m, `godwit_event_apply_lag_seconds`, bus.StreamProgress, 0.50),
		p99: quantile(m, `godwit_event_apply_lag_seconds`, bus.StreamProgress, 0.99)}
}

// quantile estimates the q quantile of histogram name for stream from its
// scraped buckets, as Prometheus's histogram_quantile does (linear within
// a bucket).
func quantile(m map[string]float64, name, stream string, q float64) float64 {
	type bucket struct{ le, count float64 }
	var bs []bucket
	prefix := name + `_bucket{stream="` + stream + `",le="`
	for k, v := range m {
		le, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		le = strings.TrimSuffix(le, `"}`)
		f := math.Inf(1)
		if le != "+Inf" {
			f, _ = strconv.ParseFloat(le, 64)
		}
		bs = append(bs, bucket{f, v})
	}
	if len(bs) == 0 {
		return math.NaN()
	}
	slices.SortFunc(bs, func(x, y bucket) int { return cmp.Compare(x.le, y.le) })
	total := bs[len(bs)-1].count
	rank := q * total
	prevLe, prevCount := 0.0, 0.0
	for _, bk := range bs {
		if bk.count >= rank {
			if math.IsInf(bk.le, 1) {
				return prevLe
			}
			if bk.count == prevCount {
				return bk.le
			}
			return prevLe + (bk.le-prevLe)*(rank-prevCount)/(bk.count-prevCount)
		}
		prevLe, prevCount = bk.le, bk.count
	}
	return prevLe
}
