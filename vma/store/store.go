// Package store keeps the VMA's local state in bbolt: the replication jobs
// it accepted (so a repeated request is not published twice). Per-disk
// checkpoints join it with the copy engine.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var bucketJobs = []byte("jobs")

// ErrLocked is returned by Open when another VMA holds the database.
var ErrLocked = errors.New("state database is in use by another process")

// Store is the VMA's bbolt database.
type Store struct{ db *bbolt.DB }

// Job is a replication job the VMA accepted.
type Job struct {
	JobID      string    `json:"job_id"`
	EventID    string    `json:"event_id"`
	VMPaths    []string  `json:"vm_paths"`
	AcceptedAt time.Time `json:"accepted_at"`
}

// Open opens the database at path, waiting at most wait for a lock.
func Open(path string, wait time.Duration) (*Store, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: wait})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketJobs)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Accept records j unless a job with its id was accepted before; it
// returns the job as stored and whether it is new.
func (s *Store) Accept(j Job) (Job, bool, error) {
	var stored Job
	isNew := false
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		if v := b.Get([]byte(j.JobID)); v != nil {
			return json.Unmarshal(v, &stored)
		}
		v, err := json.Marshal(j)
		if err != nil {
			return err
		}
		stored, isNew = j, true
		return b.Put([]byte(j.JobID), v)
	})
	if err != nil {
		return Job{}, false, fmt.Errorf("accept job %s: %w", j.JobID, err)
	}
	return stored, isNew, nil
}
