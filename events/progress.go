package events

import "github.com/godwit/godwit/events/subject"

// Phases a Progress event reports.
const (
	PhaseSnapshotting = "snapshotting"
	PhaseCopying      = "copying"
	// PhaseVerifying follows copying when the job verifies: every disk is
	// copied and flushed, and what was written is checked: the OMA hashes
	// its volumes and the VMA compares (or, from an OMA that does not,
	// the VMA reads it back from the exports) (Progress.Verify*).
	PhaseVerifying  = "verifying"
	PhaseFinalizing = "finalizing"
)

// Progress reports how far a VMA got with a job. Seq grows with every event
// of a job, so a consumer can drop duplicates and late arrivals.
type Progress struct {
	JobID string `json:"job_id"`
	VMAID string `json:"vma_id"`
	// Seq is 1 for the first progress event of a job, then grows by one or more.
	Seq   uint64 `json:"seq"`
	Phase string `json:"phase"`
	// BytesTotal is what the job will copy in all, BytesDone what it has.
	BytesTotal int64 `json:"bytes_total"`
	BytesDone  int64 `json:"bytes_done"`
	// RateBytesPerSecond is the recent copy rate.
	RateBytesPerSecond int64 `json:"rate_bytes_per_second"`
	// AverageRateBytesPerSecond is the rate since the copy began.
	AverageRateBytesPerSecond int64 `json:"average_rate_bytes_per_second,omitempty"`
	// Percent is BytesDone of BytesTotal, 0 to 100.
	Percent float64 `json:"percent,omitempty"`
	// ETASeconds is the time the rest will take at the recent rate (while
	// verifying, the rest of the verification); nil when unknown.
	ETASeconds *int64 `json:"eta_seconds,omitempty"`
	// VerifyBytesTotal is what a job that verifies checks on the OMA in
	// all (0 until known, and without verification), VerifyBytesDone
	// what it has checked, and
	// VerifyRateBytesPerSecond the recent rate of that.
	VerifyBytesTotal         int64          `json:"verify_bytes_total,omitempty"`
	VerifyBytesDone          int64          `json:"verify_bytes_done,omitempty"`
	VerifyRateBytesPerSecond int64          `json:"verify_rate_bytes_per_second,omitempty"`
	Disks                    []DiskProgress `json:"disks"`
	// Snapshot is the VMware snapshot (its managed object id) the job
	// copies from, once taken: the disks' checkpoints are offsets of what
	// was copied from it, and only a copy from the same snapshot may
	// start from them.
	Snapshot string `json:"snapshot,omitempty"`
}

// EventType implements Payload.
func (*Progress) EventType() string { return TypeProgress }

// NATSSubject implements Payload.
func (p *Progress) NATSSubject() (string, error) { return subject.Progress(p.VMAID, p.JobID) }

// EventSubject implements Payload: the job id.
func (p *Progress) EventSubject() string { return p.JobID }

// DiskProgress is the progress of one disk of a job.
type DiskProgress struct {
	// Key is the disk's device key.
	Key        int32 `json:"key"`
	BytesTotal int64 `json:"bytes_total"`
	BytesDone  int64 `json:"bytes_done"`
	// RateBytesPerSecond is the disk's recent copy rate.
	RateBytesPerSecond int64 `json:"rate_bytes_per_second,omitempty"`
	// VerifyBytesTotal and VerifyBytesDone are the disk's share of
	// Progress.VerifyBytesTotal and VerifyBytesDone.
	VerifyBytesTotal int64 `json:"verify_bytes_total,omitempty"`
	VerifyBytesDone  int64 `json:"verify_bytes_done,omitempty"`
	// Checkpoint is the offset below which the disk's areas are written
	// and flushed on the export, durable: a copy of the disk that starts
	// again may start from it. 0, and omitted, until the first.
	Checkpoint int64 `json:"checkpoint,omitempty"`
}

// Replication states a VMA reports.
const (
	StatusAccepted  = "accepted"
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
	// StatusPaused: the job stopped at a checkpoint, its snapshot kept; a
	// replicate command for it resumes it.
	StatusPaused = "paused"
)

// ReplicationStatus is a VMA's report of a job's state. A completed status
// carries the change id of every disk, the base of the next incremental job.
type ReplicationStatus struct {
	JobID string `json:"job_id"`
	VMAID string `json:"vma_id"`
	// Seq orders the status events of a job, like Progress.Seq.
	Seq   uint64 `json:"seq"`
	State string `json:"state"`
	// BytesTransferred is what was written to the OMA's exports.
	BytesTransferred int64 `json:"bytes_transferred"`
	// ZeroBytes is the part of BytesTransferred that read as zeros: never
	// read from the source (its extents said so) or found zero, and
	// skipped or written as zeroes, not as data. It counts the disks
	// copied to their end; a run cut off before that counts nothing.
	ZeroBytes int64 `json:"zero_bytes,omitempty"`
	// Disks carries the per-disk change ids (set when completed).
	Disks []DiskChange `json:"disks,omitempty"`
	// Error is set when State is failed or cancelled.
	Error *Failure `json:"error,omitempty"`
}

// EventType implements Payload.
func (*ReplicationStatus) EventType() string { return TypeReplicationStatus }

// NATSSubject implements Payload.
func (s *ReplicationStatus) NATSSubject() (string, error) { return subject.Status(s.VMAID, s.JobID) }

// EventSubject implements Payload: the job id.
func (s *ReplicationStatus) EventSubject() string { return s.JobID }

// DiskChange is the CBT change id a disk was copied up to.
type DiskChange struct {
	Key      int32  `json:"key"`
	ChangeID string `json:"change_id"`
	// FullCopy says the disk was copied whole in an incremental job: it
	// is new, or its base change id was refused (on_cbt_reset full).
	FullCopy bool `json:"full_copy,omitempty"`
	// Verified says every area written was checked on the OMA (hashed
	// there, or read back) and matched what was read from the source; Digest is the SHA-256 of
	// those areas' bytes in offset order ("sha256:<hex>").
	Verified bool   `json:"verified,omitempty"`
	Digest   string `json:"digest,omitempty"`
}
