package jobs

import (
	"testing"
	"time"
)

func TestPipeFor(t *testing.T) {
	for _, tc := range []struct {
		name        string
		rate        int64
		rtt         time.Duration
		depth, size int
		want        pipe
	}{
		{"unknown RTT", DefaultLinkRate, 0, 0, 0, pipe{connections: 4, depth: 16}},
		{"loopback", DefaultLinkRate, 50 * time.Microsecond, 0, 0, pipe{connections: 1, depth: 16}},
		{"1 Gbit/s, 20 ms", DefaultLinkRate, 20 * time.Millisecond, 0, 0, pipe{connections: 3, depth: 16}},
		{"1 Gbit/s, 100 ms", DefaultLinkRate, 100 * time.Millisecond, 0, 0, pipe{connections: 15, depth: 16}},
		{"100 Mbit/s, 80 ms", DefaultLinkRate / 10, 80 * time.Millisecond, 0, 0, pipe{connections: 2, depth: 16}},
		{"10 Gbit/s, 300 ms: bounded", 10 * DefaultLinkRate, 300 * time.Millisecond, 0, 0, pipe{connections: 16, depth: 64}},
		{"the configured depth stays when larger", DefaultLinkRate, 100 * time.Millisecond, 32, 0, pipe{connections: 15, depth: 32}},
		{"smaller requests, more of them", DefaultLinkRate, 100 * time.Millisecond, 0, 256 << 10, pipe{connections: 15, depth: 55}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pipeFor(tc.rate, tc.rtt, tc.depth, tc.size); got != tc.want {
				t.Errorf("pipeFor(%d, %s, %d, %d) = %+v, want %+v", tc.rate, tc.rtt, tc.depth, tc.size, got, tc.want)
			}
		})
	}
}

// fixedRTT is a Link whose minimum RTT is known.
type fixedRTT time.Duration

func (f fixedRTT) MinRTT() time.Duration { return time.Duration(f) }

// TestPipeShared: disk copies under way at once share the link rate, so
// their connections add up to about one link's worth; configured
// connections stay as they are.
func TestPipeShared(t *testing.T) {
	r := &Runner{cfg: Config{Link: fixedRTT(100 * time.Millisecond), LinkRate: DefaultLinkRate}}
	for _, tc := range []struct {
		copies int
		want   pipe
	}{
		{1, pipe{connections: 15, depth: 16}},
		{2, pipe{connections: 8, depth: 16}},
		{4, pipe{connections: 4, depth: 16}},
		{16, pipe{connections: 1, depth: 16}},
	} {
		if got := r.pipe(tc.copies); got != tc.want {
			t.Errorf("pipe(%d) = %+v, want %+v", tc.copies, got, tc.want)
		}
	}
	r.cfg.Connections = 6
	if got := r.pipe(4); got.connections != 6 {
		t.Errorf("with -nbd-connections 6, pipe(4) = %+v", got)
	}
}
