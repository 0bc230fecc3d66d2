package store_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
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

// TestJobsOf: the jobs of a replica and of a VM id come from the index,
// which a state database from before it gets when it is opened.
func TestJobsOf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	jobs := []store.Job{
		{ID: "j1", ReplicaID: "r1", VM: events.VMRef{ID: "vm-1"}},
		{ID: "j2", ReplicaID: "r1", VM: events.VMRef{ID: "vm-9"}}, // the VM re-registered under another id
		{ID: "j3", VM: events.VMRef{ID: "vm-1"}},                  // from before replica ids
		{ID: "j4", ReplicaID: "r2", VM: events.VMRef{ID: "vm-2"}},
	}
	err = st.Update(func(tx *bbolt.Tx) error {
		for _, j := range jobs {
			if err := store.PutJob(tx, j); err != nil {
				return err
			}
		}
		return store.PutJob(tx, jobs[0]) // again: indexed once
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		err := st.View(func(tx *bbolt.Tx) error {
			got, err := store.JobsOf(tx, "r1", "vm-1")
			var ids []string
			for _, j := range got {
				ids = append(ids, j.ID)
			}
			if want := "[j1 j2 j3]"; fmt.Sprint(ids) != want {
				t.Errorf("%s: JobsOf(r1, vm-1) = %v, want %s", when, ids, want)
			}
			if !store.HasJob(tx, "j4") || store.HasJob(tx, "j5") {
				t.Errorf("%s: HasJob is wrong", when)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check("indexed as stored")

	// A database from before the index: the jobs, no index.
	err = st.Update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket([]byte("jobsbyvm")); err != nil {
			return err
		}
		_, err := tx.CreateBucket([]byte("jobsbyvm"))
		return err
	})
	if err == nil {
		err = st.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if st, err = store.Open(path, time.Second); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	check("indexed when opened")
}
