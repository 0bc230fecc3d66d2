package tunnel

import (
	"testing"
	"time"
)

func TestAutoConnections(t *testing.T) {
	tests := []struct {
		rtt  time.Duration
		want int
	}{
		{0, 1},                      // not measured
		{200 * time.Microsecond, 1}, // loopback
		{4 * time.Millisecond, 1},   // LAN
		{5 * time.Millisecond, 2},
		{20 * time.Millisecond, 2},
		{26 * time.Millisecond, 3},
		{80 * time.Millisecond, 5},
		{100 * time.Millisecond, 5},
		{time.Second, 5},
	}
	for _, tt := range tests {
		if got := autoConnections(tt.rtt); got != tt.want {
			t.Errorf("autoConnections(%s) = %d, want %d", tt.rtt, got, tt.want)
		}
	}
}
