package testkit_test

import (
	"testing"
	"time"

	"github.com/godwit/godwit/testkit"
)

// TestWaitFollowsTheDeadline: a test's waits end shortly before its own
// deadline, not after a fixed time.
func TestWaitFollowsTheDeadline(t *testing.T) {
	deadline, ok := t.Deadline()
	w := testkit.Wait(t)
	switch {
	case !ok && w != testkit.NoDeadline:
		t.Errorf("Wait without a deadline = %s, want %s", w, testkit.NoDeadline)
	case ok && (time.Now().Add(w).After(deadline) || w < time.Second):
		t.Errorf("Wait = %s with %s left, want less than what is left", w, time.Until(deadline))
	}
	ctx := testkit.Context(t)
	if d, ok := ctx.Deadline(); !ok || d.Sub(time.Now().Add(w)) > time.Second {
		t.Errorf("Context deadline = %v, %v, want about now + %s", d, ok, w)
	}
	var calls int
	testkit.Eventually(t, "the third call", func() bool { calls++; return calls == 3 })
}
