package jobs

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// TestPowerReports: the OMA takes a VMA's power report only for a command
// it sent that VMA, once; a report of a command never sent, or from
// another VMA, is poison and changes nothing.
func TestPowerReports(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Update(func(tx *bbolt.Tx) error {
		return store.PutPowerRequest(tx, store.PowerRequest{ID: "vm-1-c1-off", VMAID: "vma-1", Cutover: "r1", SentAt: time.Now()})
	}); err != nil {
		t.Fatal(err)
	}
	report := func(req, vma, before string) error {
		return st.Update(func(tx *bbolt.Tx) error {
			r := &events.PowerReport{RequestID: req, VMAID: vma, VMID: "vm-1", Action: events.PowerOff, StateBefore: before, DoneAt: time.Now()}
			return powerReport(tx, events.Event{Type: events.TypePowerReport}, r)
		})
	}
	stored := func() *events.PowerReport {
		var r store.PowerRequest
		_ = st.View(func(tx *bbolt.Tx) error { r, err = store.GetPowerRequest(tx, "vm-1-c1-off"); return err })
		return r.Report
	}
	for _, bad := range []struct{ req, vma string }{{"vm-9-c1-off", "vma-1"}, {"vm-1-c1-off", "vma-2"}} {
		if err := report(bad.req, bad.vma, events.PowerStateOff); !errors.Is(err, bus.ErrPoison) {
			t.Errorf("report of %s from %s: %v, want poison", bad.req, bad.vma, err)
		}
	}
	if stored() != nil {
		t.Fatal("a refused report was stored")
	}
	if err := report("vm-1-c1-off", "vma-1", events.PowerStateOn); err != nil {
		t.Fatal(err)
	}
	if err := report("vm-1-c1-off", "vma-1", events.PowerStateOff); err != nil {
		t.Fatal(err)
	}
	if r := stored(); r == nil || r.StateBefore != events.PowerStateOn {
		t.Errorf("stored report %+v, want the first one (state before poweredOn)", r)
	}
}
