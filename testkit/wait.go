package testkit

import (
	"context"
	"testing"
	"time"
)

const (
	// NoDeadline is how long Wait allows a test that has no deadline to
	// follow (a benchmark, or go test -timeout 0).
	NoDeadline = 10 * time.Minute
	// MaxEventually bounds a wait of Eventually: far more than a condition
	// takes on a loaded machine, and short enough that a condition that
	// never holds fails its test while the package's other tests still
	// have time to run.
	MaxEventually = 5 * time.Minute
)

// Eventually calls cond every 10 ms until it returns true. It fails the
// test, naming what it waited for, when cond is still false after
// Wait(tb) or MaxEventually, whichever is shorter.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	limit := min(Wait(tb), MaxEventually)
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s (%s)", what, limit.Round(time.Second))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Wait returns how long a test may wait for work before it fails: until
// shortly before its own deadline (go test -timeout), so that a loaded
// machine gets all the time the test has and the test still fails naming
// what it waited for rather than in the panic of the timeout; NoDeadline
// when it has none. It is at least a second.
func Wait(tb testing.TB) time.Duration {
	d, ok := tb.(interface{ Deadline() (time.Time, bool) })
	if !ok {
		return NoDeadline
	}
	deadline, ok := d.Deadline()
	if !ok {
		return NoDeadline
	}
	left := time.Until(deadline)
	left -= max(left/20, 5*time.Second) // time to fail and print
	return max(left, time.Second)
}

// Context returns a context that ends after Wait(tb), or when the test
// ends, for a blocking call that takes as long as its work does.
func Context(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(tb.Context(), Wait(tb))
	tb.Cleanup(cancel)
	return ctx
}
