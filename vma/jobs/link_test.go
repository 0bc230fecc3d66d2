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
		{"1 Gbit/s, 100 ms", DefaultLinkRate, 100 * time.Millisecond, 0, 0, pipe{connections: 15, depth: 18}},
		{"100 Mbit/s, 80 ms", DefaultLinkRate / 10, 80 * time.Millisecond, 0, 0, pipe{connections: 2, depth: 16}},
		{"10 Gbit/s, 300 ms: bounded", 10 * DefaultLinkRate, 300 * time.Millisecond, 0, 0, pipe{connections: 16, depth: 64}},
		{"the configured depth stays when larger", DefaultLinkRate, 100 * time.Millisecond, 32, 0, pipe{connections: 15, depth: 32}},
		{"smaller requests, more of them", DefaultLinkRate, 100 * time.Millisecond, 0, 256 << 10, pipe{connections: 15, depth: 64}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pipeFor(tc.rate, tc.rtt, tc.depth, tc.size); got != tc.want {
				t.Errorf("pipeFor(%d, %s, %d, %d) = %+v, want %+v", tc.rate, tc.rtt, tc.depth, tc.size, got, tc.want)
			}
		})
	}
}
