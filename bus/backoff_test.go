package bus

import (
	"testing"
	"time"
)

func TestBackoffDoublesUpToTheCapWithJitter(t *testing.T) {
	t.Parallel()
	delay := backoff(100*time.Millisecond, 2*time.Second)
	tests := []struct {
		attempts int
		base     time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{5, 1600 * time.Millisecond},
		{6, 2 * time.Second},
		{1000, 2 * time.Second},
	}
	for _, tt := range tests {
		for range 50 {
			got := delay(tt.attempts)
			if got < tt.base || got > tt.base+tt.base/5 {
				t.Fatalf("backoff(%d) = %v, want %v plus at most 20%%", tt.attempts, got, tt.base)
			}
		}
	}
}
