package console

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/watch"
)

// Throughput samples: one every sampleEvery, an hour of them.
const (
	sampleEvery = 10 * time.Second
	samples     = 360
	// heartbeatFresh is how old a VMA's last heartbeat may be to count.
	heartbeatFresh = time.Minute
)

// throughput is the sum of the VMAs' copy rates (from their heartbeats)
// over the last hour, for the overview's chart.
type throughput struct {
	mu     sync.Mutex
	byVMA  map[string]load
	points []point
}

type load struct {
	rate int64
	at   time.Time
}

type point struct {
	at   time.Time
	rate int64
}

func newThroughput() *throughput { return &throughput{byVMA: map[string]load{}} }

// sample follows the VMAs' heartbeats and records the sum of their rates
// every sampleEvery, until ctx ends.
func (c *Console) sample(ctx context.Context) {
	filters := []string{"godwit.vma.heartbeat.*"}
	pos := map[string]uint64{bus.StreamPresence: 0} // the heartbeats the ring holds, then the new ones
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		msgs, _, notify := c.hub.since(pos, filters)
		for _, m := range msgs {
			pos[m.Stream] = max(pos[m.Stream], m.Seq)
			c.rates.heartbeat(m)
		}
		if len(msgs) > 0 && c.rates.stale(c.cfg.Now()) {
			c.rates.record(c.cfg.Now())
		}
		select {
		case <-ctx.Done():
			return
		case <-notify:
		case now := <-tick.C:
			c.rates.record(now)
		}
	}
}

// heartbeat takes a VMA's load from its heartbeat.
func (t *throughput) heartbeat(m message) {
	var ev events.Event
	var hb events.Heartbeat
	if json.Unmarshal(m.Data, &ev) != nil || ev.Decode(&hb) != nil || hb.Load == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byVMA[hb.VMAID] = load{rate: hb.Load.BytesPerSecond, at: m.Stored}
}

// stale says the last point is older than sampleEvery, or there is none.
func (t *throughput) stale(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.points) == 0 || now.Sub(t.points[len(t.points)-1].at) >= sampleEvery
}

// record adds a point: the fresh heartbeats' rates summed.
func (t *throughput) record(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sum int64
	for _, l := range t.byVMA {
		if now.Sub(l.at) <= heartbeatFresh {
			sum += l.rate
		}
	}
	if len(t.points) == samples {
		t.points = append(t.points[:0:0], t.points[1:]...)
	}
	t.points = append(t.points, point{at: now, rate: sum})
}

// chart is the overview's chart of the last hour: an SVG polyline.
type chart struct {
	// Points are the polyline's "x,y" pairs in a 360x100 box.
	Points string
	// Peak and Now say the highest and the last rate.
	Peak, Now string
	// Empty says there is nothing to draw yet.
	Empty bool
}

func (t *throughput) chart(now time.Time) chart {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.points) == 0 {
		return chart{Empty: true, Peak: "0 B/s", Now: "0 B/s"}
	}
	var peak int64
	for _, p := range t.points {
		peak = max(peak, p.rate)
	}
	var b strings.Builder
	for _, p := range t.points {
		x := 360 - now.Sub(p.at).Seconds()/10
		y := 100.0
		if peak > 0 {
			y = 100 - 95*float64(p.rate)/float64(peak)
		}
		fmt.Fprintf(&b, "%.1f,%.1f ", max(x, 0), y)
	}
	return chart{Points: strings.TrimSpace(b.String()), Peak: watch.Bytes(peak) + "/s", Now: watch.Bytes(t.points[len(t.points)-1].rate) + "/s"}
}
