package copier

import (
	"context"
	"math"
	"sync"
	"time"
)

// Clock is the time a Limiter waits on and Copy measures rates with.
// Tests inject one; nil means the system clock.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Limiter is a token bucket that bounds bytes per second. One Limiter can
// be shared by several copies (all the disks of a job) and its rate changed
// with SetRate while they run. Its methods are safe for concurrent use.
//
// The bucket starts empty and holds at most one second of tokens (or the
// request being waited for, when that is larger), so an idle copy cannot
// save up more than one second's burst.
type Limiter struct {
	clock Clock
	turn  chan struct{} // held by the one waiter that is being served

	mu      sync.Mutex
	rate    float64 // bytes/s; 0 means unlimited
	tokens  float64
	last    time.Time
	changed chan struct{} // closed by SetRate to wake the waiter
}

// NewLimiter returns a Limiter of bytesPerSecond; 0 or less means unlimited.
// A nil clock means the system clock.
func NewLimiter(bytesPerSecond int64, clock Clock) *Limiter {
	if clock == nil {
		clock = systemClock{}
	}
	l := &Limiter{clock: clock, turn: make(chan struct{}, 1), changed: make(chan struct{})}
	l.SetRate(bytesPerSecond)
	return l
}

// SetRate changes the rate to bytesPerSecond (0 or less: unlimited). It
// takes effect at once, also for a request already waiting.
func (l *Limiter) SetRate(bytesPerSecond int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if l.rate > 0 {
		l.tokens += now.Sub(l.last).Seconds() * l.rate // earned at the old rate
	} else {
		l.tokens = 0
	}
	l.last = now
	l.rate = max(0, float64(bytesPerSecond))
	close(l.changed)
	l.changed = make(chan struct{})
}

// Rate returns the rate in bytes per second; 0 means unlimited.
func (l *Limiter) Rate() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(l.rate)
}

// Wait blocks until n bytes may pass, or returns ctx's error (also when ctx
// is done already, even with no limit). Waiters are served one at a time.
func (l *Limiter) Wait(ctx context.Context, n int) error {
	select {
	case l.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.turn }()
	for {
		if err := ctx.Err(); err != nil { // never grant a cancelled wait
			return err
		}
		l.mu.Lock()
		if l.rate <= 0 {
			l.mu.Unlock()
			return nil
		}
		now := l.clock.Now()
		l.tokens = min(l.tokens+now.Sub(l.last).Seconds()*l.rate, max(l.rate, float64(n)))
		l.last = now
		if l.tokens >= float64(n) {
			l.tokens -= float64(n)
			l.mu.Unlock()
			return nil
		}
		need := time.Duration(math.Ceil((float64(n) - l.tokens) / l.rate * float64(time.Second)))
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.clock.After(need):
		case <-changed:
		}
	}
}
