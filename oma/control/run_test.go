package control_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/testkit"
)

// TestPruneWhileRunning: a running OMA forgets applied event ids, and the
// pages of a discovery that never completed, once they are older than the
// streams keep events, every hour of its clock, not only at start.
func TestPruneWhileRunning(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	now := h.clock.Now()
	err := h.st.Update(func(tx *bbolt.Tx) error {
		if err := store.MarkApplied(tx, "old", now.Add(-31*24*time.Hour+30*time.Minute)); err != nil {
			return err
		}
		if err := store.MarkApplied(tx, "recent", now); err != nil {
			return err
		}
		return store.PutDiscoverPage(tx, events.DiscoverResult{RequestID: "req-1", VMAID: "vma-1",
			VMs: []events.VM{}, Page: 1, Pages: 2}, now.Add(-31*24*time.Hour+30*time.Minute))
	})
	if err != nil {
		t.Fatal(err)
	}
	applied := func(id string) bool {
		var ok bool
		_ = h.st.View(func(tx *bbolt.Tx) error { ok = store.Applied(tx, id); return nil })
		return ok
	}
	pages := func() int {
		var n int
		_ = h.st.View(func(tx *bbolt.Tx) error {
			p, err := store.DiscoverPages(tx, "vma-1", "req-1")
			n = len(p)
			return err
		})
		return n
	}
	if !applied("old") || pages() != 1 {
		t.Fatal("pruned before the events were old enough")
	}
	h.clock.Add(time.Hour)
	testkit.Eventually(t, "old event id and page pruned", func() bool { return !applied("old") && pages() == 0 })
	if !applied("recent") {
		t.Error("a recent event id was pruned")
	}
}

// TestRunWaitsForWhatItStarted: when Run returns, none of the goroutines
// it started (consumers, outbox flusher, pruner) is left. Not parallel, so
// that no other test's Control is running.
func TestRunWaitsForWhatItStarted(t *testing.T) {
	h := newHarness(t)
	h.stop()
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, f := range []string{"control.(*Control).flushLoop", "control.(*Control).pruneLoop", "control.(*Control).Run", "bus.(*Conn).Consume"} {
		if strings.Contains(stacks, f) {
			t.Errorf("%s still runs after Run returned", f)
		}
	}
}
