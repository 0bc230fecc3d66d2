package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket names.
var (
	bucketJobs      = []byte("jobs")
	bucketInventory = []byte("inventory")
	bucketLeases    = []byte("leases")
	bucketVMAs      = []byte("vmas")
	bucketTokens    = []byte("tokens")
	bucketApplied   = []byte("applied")
	bucketVCenters  = []byte("vcenters")
	bucketPlans     = []byte("plans")
	bucketPlanVMs   = []byte("planvms")
	// bucketJobsByVM indexes the jobs by their VM's id and by their
	// replica: vm|replica \x00 <id> \x00 <job id>.
	bucketJobsByVM = []byte("jobsbyvm")
	// bucketApplyCounts counts the events applied, by type: type ->
	// uint64, big-endian.
	bucketApplyCounts = []byte("applycounts")
)

func buckets() [][]byte {
	return [][]byte{bucketJobs, bucketInventory, bucketLeases, bucketVMAs, bucketTokens, bucketApplied, bucketOutbox, bucketPages, bucketRequests, bucketVCenters, bucketPlans, bucketPlanVMs, bucketJobsByVM, bucketQueue, bucketRunning, bucketPaused, bucketSettings, bucketCutovers, bucketPowerRequests, bucketApplyCounts}
}

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrLocked is returned by Open when another process (a running OMA) holds
// the database.
var ErrLocked = errors.New("state database is in use by another process")

// Store is the OMA's bbolt database. It is safe for concurrent use.
type Store struct {
	db *bbolt.DB
	// committed, when set, is called after each committed write
	// transaction with the journal's last seq (see SetCommitHook).
	committed atomic.Pointer[func(seq uint64)]
}

// SetCommitHook makes fn be called after every write transaction that
// commits while the journal is on, with the seq of the journal's last
// change: a shipper waits there until the change is copied to the
// cluster, so that what a caller acts on after Update returns is not lost
// with this OMA. nil removes it.
func (s *Store) SetCommitHook(fn func(seq uint64)) {
	if fn == nil {
		s.committed.Store(nil)
		return
	}
	s.committed.Store(&fn)
}

// Open opens (creating if needed) the database at path. It waits at most
// wait for another process to release it, then fails with ErrLocked.
func Open(path string, wait time.Duration) (*Store, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: wait})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range buckets() {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.Update(indexJobsByVM); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: index the jobs by VM: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Update runs fn in one read-write transaction, committed when fn returns nil.
func (s *Store) Update(fn func(*bbolt.Tx) error) error { return s.update(fn) }

// update runs fn in a read-write transaction, then calls the commit hook.
func (s *Store) update(fn func(*bbolt.Tx) error) error {
	var seq uint64
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if j := tx.Bucket(bucketJournal); j != nil {
			seq = j.Sequence()
		}
		return nil
	})
	if hook := s.committed.Load(); err == nil && seq > 0 && hook != nil {
		(*hook)(seq)
	}
	return err
}

// View runs fn in one read-only transaction.
func (s *Store) View(fn func(*bbolt.Tx) error) error { return s.db.View(fn) }

func put(tx *bbolt.Tx, bucket []byte, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	return setRaw(tx, bucket, []byte(key), b)
}

func get(tx *bbolt.Tx, bucket []byte, key string, v any) error {
	b := tx.Bucket(bucket).Get([]byte(key))
	if b == nil {
		return fmt.Errorf("%s %q: %w", bucket, key, ErrNotFound)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s/%s: %w", bucket, key, err)
	}
	return nil
}

func each[T any](tx *bbolt.Tx, bucket []byte, fn func(T) error) error {
	return tx.Bucket(bucket).ForEach(func(k, b []byte) error {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("decode %s/%s: %w", bucket, k, err)
		}
		return fn(v)
	})
}
