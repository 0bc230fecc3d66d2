package testkit

import (
	"context"
	"testing"
	"time"
)

// MaxWait bounds a wait that has no test deadline to follow (a benchmark,
// or go test -timeout 0), and every wait of Eventually: long enough for a
// loaded machine, short enough that a wait that never ends fails the test
// before the whole package times out.
const MaxWait = 5 * time.Minute

// Eventually calls cond every 10 ms until it returns true, and fails the
// test, naming what it waited for, when it is still false at the end of
// Wait(tb).
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	limit := Wait(tb)
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s (%s)", what, limit.Round(time.Second))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Wait returns how long a test may wait for something before it fails:
// until shortly before its own deadline (go test -timeout), so that it
// fails naming what it waited for rather than in the panic of the
// timeout, and at most MaxWait.
func Wait(tb testing.TB) time.Duration {
	d, ok := tb.(interface{ Deadline() (time.Time, bool) })
	if !ok {
		return MaxWait
	}
	deadline, ok := d.Deadline()
	if !ok {
		return MaxWait
	}
	left := time.Until(deadline)
	left -= max(left/20, 5*time.Second) // time to fail and print
	return max(min(left, MaxWait), time.Second)
}

// Context returns a context that ends after Wait(tb), or when the test
// ends, for a blocking call whose duration follows the work it waits for.
func Context(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(tb.Context(), Wait(tb))
	tb.Cleanup(cancel)
	return ctx
}
