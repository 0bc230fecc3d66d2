package store

import (
	"errors"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
)

// Bucket names of the OMA's queue.
var (
	// bucketQueue holds the started jobs that wait for a slot, by job id.
	bucketQueue = []byte("queue")
	// bucketRunning holds the jobs dispatched to their VMA and not ended,
	// by job id: what the queue's limits count.
	bucketRunning = []byte("running")
	// bucketPaused holds the paused jobs, by job id, with their commands
	// for the resume.
	bucketPaused = []byte("paused")
)

// QueueEntry is a started job in the OMA's queue: waiting for a slot under
// every limit that applies to it, or dispatched to its VMA and not ended.
// It names what the limits count the job against.
type QueueEntry struct {
	JobID           string `json:"job_id"`
	VMAID           string `json:"vma_id"`
	ReplicationType string `json:"replication_type"`
	// Plan names the plan the job syncs a VM of; "" for a job of its own.
	Plan string `json:"plan,omitempty"`
	// Priority orders the queue: higher first. A plan's jobs have the
	// plan's.
	Priority int `json:"priority,omitempty"`
	// VCenter is the source vCenter's host, ESXiHost the ESXi host the VM
	// runs on ("" when unknown), Datastores those of its disks.
	VCenter    string    `json:"vcenter"`
	ESXiHost   string    `json:"esxi_host,omitempty"`
	Datastores []string  `json:"datastores,omitempty"`
	QueuedAt   time.Time `json:"queued_at"`
	// RateLimit is the job's own bandwidth limit (bytes per second, 0:
	// none).
	RateLimit int64 `json:"rate_limit,omitempty"`
	// Command is the replicate command published when the job is
	// dispatched (again when it resumes); its password is sealed to the
	// VMA.
	Command events.ReplicateCommand `json:"command"`
	// PasswordAtRest is the command's password sealed with the OMA's
	// at-rest key (bound to the job id), so that it can be sealed again to
	// another VMA when the job moves; nil for a job queued without it.
	PasswordAtRest []byte `json:"password_at_rest,omitempty"`
	// DispatchedAt is when the command was written to the outbox.
	DispatchedAt *time.Time `json:"dispatched_at,omitempty"`
}

// PutQueued stores e as waiting in the queue.
func PutQueued(tx *bbolt.Tx, e QueueEntry) error { return put(tx, bucketQueue, e.JobID, e) }

// GetQueued returns the waiting entry of job id; ErrNotFound when the job
// does not wait (dispatched, ended or never queued).
func GetQueued(tx *bbolt.Tx, id string) (QueueEntry, error) {
	var e QueueEntry
	return e, get(tx, bucketQueue, id, &e)
}

// Queued returns every waiting entry, by job id.
func Queued(tx *bbolt.Tx) ([]QueueEntry, error) {
	var out []QueueEntry
	return out, each(tx, bucketQueue, func(e QueueEntry) error { out = append(out, e); return nil })
}

// PutRunning stores e as dispatched and removes it from the waiting ones.
func PutRunning(tx *bbolt.Tx, e QueueEntry) error {
	if err := delRaw(tx, bucketQueue, []byte(e.JobID)); err != nil {
		return err
	}
	return put(tx, bucketRunning, e.JobID, e)
}

// Running returns every dispatched entry whose job has not ended, by job id.
func Running(tx *bbolt.Tx) ([]QueueEntry, error) {
	var out []QueueEntry
	return out, each(tx, bucketRunning, func(e QueueEntry) error { out = append(out, e); return nil })
}

// Park moves job id, waiting or running, to the paused ones; ErrNotFound
// when it is neither.
func Park(tx *bbolt.Tx, id string) (QueueEntry, error) {
	var e QueueEntry
	err := get(tx, bucketQueue, id, &e)
	if errors.Is(err, ErrNotFound) {
		err = get(tx, bucketRunning, id, &e)
	}
	if err != nil {
		return e, err
	}
	if _, err := Dequeue(tx, id); err != nil {
		return e, err
	}
	return e, put(tx, bucketPaused, id, e)
}

// Unpark moves paused job id back to the waiting ones, queued at; it
// returns the entry, ErrNotFound when the job is not paused in the queue.
func Unpark(tx *bbolt.Tx, id string, at time.Time) (QueueEntry, error) {
	var e QueueEntry
	if err := get(tx, bucketPaused, id, &e); err != nil {
		return e, err
	}
	if err := delRaw(tx, bucketPaused, []byte(id)); err != nil {
		return e, err
	}
	e.QueuedAt, e.DispatchedAt = at, nil
	return e, PutQueued(tx, e)
}

// Requeue stores e as waiting again, no longer dispatched or paused.
func Requeue(tx *bbolt.Tx, e QueueEntry) error {
	if _, err := Dequeue(tx, e.JobID); err != nil {
		return err
	}
	return PutQueued(tx, e)
}

// Dequeue removes job id from the queue, waiting, dispatched or paused; it
// reports whether it was there.
func Dequeue(tx *bbolt.Tx, id string) (bool, error) {
	was := false
	for _, b := range [][]byte{bucketQueue, bucketRunning, bucketPaused} {
		bk := tx.Bucket(b)
		if bk.Get([]byte(id)) != nil {
			was = true
			if err := delRaw(tx, b, []byte(id)); err != nil {
				return false, err
			}
		}
	}
	return was, nil
}

// bucketSettings holds the OMA's settings that the API changes.
var bucketSettings = []byte("settings")

// Settings are the OMA-wide settings the API changes.
type Settings struct {
	// RateLimit bounds the bytes per second of every job together; 0:
	// none. RateWindows replace it at their times of day.
	RateLimit   int64        `json:"rate_limit,omitempty"`
	RateWindows []RateWindow `json:"rate_windows,omitempty"`
}

// RateWindow is a bandwidth limit for a daily span of wall-clock time, as
// events carry it.
type RateWindow = events.RateWindow

// GetSettings reads the settings; zero when never set.
func GetSettings(tx *bbolt.Tx) (Settings, error) {
	var s Settings
	err := get(tx, bucketSettings, "settings", &s)
	if errors.Is(err, ErrNotFound) {
		return Settings{}, nil
	}
	return s, err
}

// PutSettings stores the settings.
func PutSettings(tx *bbolt.Tx, s Settings) error { return put(tx, bucketSettings, "settings", s) }

// SetQueueRate sets the rate limit of job id's entry, waiting, running or
// paused; it reports whether the job has one.
func SetQueueRate(tx *bbolt.Tx, id string, rate int64) (bool, error) {
	for _, b := range [][]byte{bucketQueue, bucketRunning, bucketPaused} {
		var e QueueEntry
		if err := get(tx, b, id, &e); errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return false, err
		}
		e.RateLimit = rate
		return true, put(tx, b, id, e)
	}
	return false, nil
}

// RateChange changes a bandwidth limit and its windows: a nil field keeps
// what is set.
type RateChange struct {
	Rate    *int64
	Windows *[]RateWindow
}

// Empty reports whether c changes nothing.
func (c RateChange) Empty() bool { return c.Rate == nil && c.Windows == nil }

// Apply makes c's changes to a limit and its windows.
func (c RateChange) Apply(rate *int64, windows *[]RateWindow) {
	if c.Rate != nil {
		*rate = *c.Rate
	}
	if c.Windows != nil {
		*windows = *c.Windows
	}
}
