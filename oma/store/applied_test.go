package store_test

import (
	"errors"
	"maps"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// TestApplyOnce: an event is applied once however often it comes, in
// separate transactions or twice in one; a failed apply records nothing,
// so the event is applied when it comes again. Each event applied is
// counted once, by type.
func TestApplyOnce(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	now := time.Now()
	ev := events.Event{ID: "ev-1", Type: events.TypeHeartbeat}
	calls := 0
	apply := func(*bbolt.Tx) error { calls++; return nil }
	fail := errors.New("failed")
	if err := st.ApplyOnce(ev, now, func(*bbolt.Tx) error { return fail }); !errors.Is(err, fail) {
		t.Fatalf("ApplyOnce of a failing apply = %v, want %v", err, fail)
	}
	for range 2 {
		if err := st.ApplyOnce(ev, now, apply); err != nil {
			t.Fatal(err)
		}
	}
	err := st.Update(func(tx *bbolt.Tx) error {
		other := events.Event{ID: "ev-2", Type: events.TypeProgress}
		if err := store.OnceIn(tx, other, now, apply); err != nil {
			return err
		}
		return store.OnceIn(tx, other, now, apply)
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("applied %d times, want 2 (once per event)", calls)
	}
	var counts map[string]uint64
	if err := st.View(func(tx *bbolt.Tx) error { counts = store.ApplyCounts(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := map[string]uint64{events.TypeHeartbeat: 1, events.TypeProgress: 1}; !maps.Equal(counts, want) {
		t.Errorf("ApplyCounts = %v, want %v", counts, want)
	}
	p, err := st.Prune(now.Add(time.Second))
	if err != nil || p.EventIDs != 2 {
		t.Errorf("Prune = %+v, %v, want 2 event ids", p, err)
	}
}
