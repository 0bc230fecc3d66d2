// Package store keeps the VMA's local state in bbolt: the replication jobs
// it accepted (so a repeated request is not published twice), their state,
// the snapshot each one holds, and each disk's progress and checkpoint.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/godwit/godwit/events"
)

var bucketJobs = []byte("jobs")

// ErrLocked is returned by Open when another VMA holds the database.
var ErrLocked = errors.New("state database is in use by another process")

// ErrNotFound is returned for a job the VMA does not know.
var ErrNotFound = errors.New("no such job")

// Store is the VMA's bbolt database.
type Store struct{ db *bbolt.DB }

// Job states on the VMA.
const (
	// StateAccepted: accepted through the API; the runner has not seen the
	// command yet.
	StateAccepted = "accepted"
	// StateQueued: the runner has it and waits for a free slot (-max-jobs).
	StateQueued  = "queued"
	StateRunning = "running"
	// StatePaused: stopped at a checkpoint on the OMA's word, its snapshot
	// and sealed credentials kept; a replicate command for it resumes it.
	StatePaused    = "paused"
	StateCompleted = "completed"
	StateFailed    = "failed"
	StateCancelled = "cancelled"
)

// Final reports whether state is one a job never leaves.
func Final(state string) bool {
	return state == StateCompleted || state == StateFailed || state == StateCancelled
}

// Job is a replication job the VMA accepted, and how far it got.
type Job struct {
	JobID      string    `json:"job_id"`
	EventID    string    `json:"event_id"`
	VMPaths    []string  `json:"vm_paths"`
	AcceptedAt time.Time `json:"accepted_at"`

	// State is one of the State constants; "" reads as StateAccepted.
	State string `json:"state,omitempty"`
	// Phase is the running job's phase (events.Phase*).
	Phase string `json:"phase,omitempty"`
	// Error says why a job failed or was cancelled: the step, the disk,
	// the cause.
	Error string `json:"error,omitempty"`
	// ErrorCode is the events.Failure code of Error.
	ErrorCode string `json:"error_code,omitempty"`
	// ReplicationType is the job's kind (events.Replication*), once the
	// OMA allocated its exports.
	ReplicationType string `json:"replication_type,omitempty"`
	VCenter         string `json:"vcenter,omitempty"`
	Username        string `json:"username,omitempty"`
	// Password is the vCenter password sealed to this VMA's key (as in the
	// command), kept while the job is not final so that a restarted VMA
	// can log in to clean up; never in plaintext, and wiped when the job
	// ends.
	Password *events.Sealed `json:"password,omitempty"`
	// OnCBTReset and Verify are the command's options, kept so that a
	// restarted VMA resumes the job as it was asked.
	OnCBTReset string `json:"on_cbt_reset,omitempty"`
	Verify     *bool  `json:"verify,omitempty"`
	// CAPEM and Thumbprint are the command's pin of vCenter's certificate
	// (no secret), kept so that a restarted VMA logs in to resume or
	// clean up the job as it was asked.
	CAPEM      string `json:"ca_pem,omitempty"`
	Thumbprint string `json:"thumbprint,omitempty"`
	// VMRef is the VM's managed object id, once found.
	VMRef string `json:"vm_ref,omitempty"`
	// Snapshot is the managed object id of the job's snapshot while it
	// exists.
	Snapshot string `json:"snapshot,omitempty"`
	// Seq is the sequence number of the job's last progress or status event.
	Seq        uint64 `json:"seq"`
	BytesTotal int64  `json:"bytes_total"`
	BytesDone  int64  `json:"bytes_done"`
	// VerifyBytesTotal and VerifyBytesDone are what the job reads back to
	// check after copying, and has (0 without verification).
	VerifyBytesTotal int64      `json:"verify_bytes_total,omitempty"`
	VerifyBytesDone  int64      `json:"verify_bytes_done,omitempty"`
	Disks            []Disk     `json:"disks,omitempty"`
	StartedAt        *time.Time `json:"started_at,omitempty"`
	EndedAt          *time.Time `json:"ended_at,omitempty"`
	UpdatedAt        time.Time  `json:"updated_at"`
}

// Disk is how far the copy of one disk of a job got.
type Disk struct {
	Key        int32  `json:"key"`
	Label      string `json:"label,omitempty"`
	BytesTotal int64  `json:"bytes_total"`
	BytesDone  int64  `json:"bytes_done"`
	// Checkpoint is the offset below which the disk's areas are written,
	// acknowledged and flushed (the place a resume starts).
	Checkpoint int64 `json:"checkpoint"`
	// VerifyBytesTotal and VerifyBytesDone are the disk's share of the
	// job's.
	VerifyBytesTotal int64 `json:"verify_bytes_total,omitempty"`
	VerifyBytesDone  int64 `json:"verify_bytes_done,omitempty"`
	// ChangeID is the disk's CBT change id at the job's snapshot.
	ChangeID string `json:"change_id,omitempty"`
	// ZeroBytes is what the run that copied the disk to its end found
	// zero (skipped, or written as zeroes); 0 until then.
	ZeroBytes int64 `json:"zero_bytes,omitempty"`
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

// Get returns the job with id; ErrNotFound when there is none.
func (s *Store) Get(id string) (Job, error) {
	var j Job
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketJobs).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &j)
	})
	if err != nil {
		return Job{}, fmt.Errorf("job %s: %w", id, err)
	}
	return j, nil
}

// Update changes the job with id in one transaction: f gets the stored job
// (or, when create is true and there is none, a new Job with that id) and
// changes it; an error from f changes nothing. It returns the job as stored.
func (s *Store) Update(id string, create bool, f func(*Job) error) (Job, error) {
	var j Job
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		switch v := b.Get([]byte(id)); {
		case v != nil:
			if err := json.Unmarshal(v, &j); err != nil {
				return err
			}
		case create:
			j = Job{JobID: id}
		default:
			return ErrNotFound
		}
		if err := f(&j); err != nil {
			return err
		}
		v, err := json.Marshal(j)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), v)
	})
	if err != nil {
		return Job{}, fmt.Errorf("update job %s: %w", id, err)
	}
	return j, nil
}

// Jobs returns every job, ordered by id.
func (s *Store) Jobs() ([]Job, error) {
	var jobs []Job
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(_, v []byte) error {
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				return err
			}
			jobs = append(jobs, j)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return jobs, nil
}
