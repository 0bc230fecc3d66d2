package store_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/godwit/godwit/vma/store"
)

func TestJobUpdates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("job-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Update("job-1", false, func(*store.Job) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Update(unknown, no create) = %v, want ErrNotFound", err)
	}
	if _, err := s.Update("job-1", true, func(j *store.Job) error {
		j.State, j.Disks = store.StateQueued, []store.Disk{{Key: 2000, BytesTotal: 10}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if _, err := s.Update("job-1", false, func(j *store.Job) error {
		j.State = store.StateFailed
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update with a failing f = %v, want boom", err)
	}
	s.Close()
	if s, err = store.Open(path, time.Second); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	j, err := s.Get("job-1")
	if err != nil || j.State != store.StateQueued || len(j.Disks) != 1 || j.Disks[0].BytesTotal != 10 {
		t.Fatalf("Get after reopen = %+v, %v; want the queued job, unchanged by the failed update", j, err)
	}
	if _, _, err := s.Accept(store.Job{JobID: "job-0"}); err != nil {
		t.Fatal(err)
	}
	jobs, err := s.Jobs()
	if err != nil || len(jobs) != 2 || jobs[0].JobID != "job-0" || jobs[1].JobID != "job-1" {
		t.Fatalf("Jobs = %+v, %v", jobs, err)
	}
	for state, final := range map[string]bool{store.StateAccepted: false, store.StateQueued: false, store.StateRunning: false,
		store.StateCompleted: true, store.StateFailed: true, store.StateCancelled: true} {
		if store.Final(state) != final {
			t.Errorf("Final(%s) = %v", state, !final)
		}
	}
}
