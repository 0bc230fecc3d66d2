package store_test

import (
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/oma/store"
)

// openStore opens a store in a new directory, closed when the test ends.
func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "s.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func TestPruneApplied(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	now := time.Now()
	_ = st.Update(func(tx *bbolt.Tx) error {
		_ = store.MarkApplied(tx, "old", now.Add(-40*24*time.Hour))
		return store.MarkApplied(tx, "new", now.Add(-time.Hour))
	})
	if n, err := st.PruneApplied(now.Add(-30 * 24 * time.Hour)); err != nil || n != 1 {
		t.Fatalf("PruneApplied = %d, %v", n, err)
	}
	_ = st.View(func(tx *bbolt.Tx) error {
		if store.Applied(tx, "old") || !store.Applied(tx, "new") {
			t.Error("pruned the wrong ids")
		}
		return nil
	})
}

func TestOpenLocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// bbolt's lock is per process file descriptor: a second Open in the
	// same process waits like another process would.
	if _, err := store.Open(path, 100*time.Millisecond); err == nil {
		t.Error("opened a database in use")
	}
}
