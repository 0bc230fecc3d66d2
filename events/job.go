package events

import (
	"time"

	"github.com/godwit/godwit/events/subject"
)

// Job states, as the OMA keeps them. A job moves
// pending -> queued -> snapshotting -> copying -> verifying -> finalizing ->
// completed (verifying only when the job reads its copy back), or ends
// failed or cancelled. A queued or running job may be paused (stopped at a
// checkpoint, its snapshot kept) and resumed (queued again); a pause
// longer than the OMA's -pause-snapshot-max ends it paused-expired, its
// snapshot removed.
const (
	JobPending      = "pending"
	JobQueued       = "queued"
	JobSnapshotting = "snapshotting"
	JobCopying      = "copying"
	JobVerifying    = "verifying"
	JobFinalizing   = "finalizing"
	JobCompleted    = "completed"
	JobFailed       = "failed"
	JobCancelled    = "cancelled"
	JobPaused       = "paused"
	// JobPausedExpired: paused too long; its snapshot was removed, and
	// its VM's next copy starts from the last completed one.
	JobPausedExpired = "paused-expired"
)

// JobStates lists every job state in lifecycle order.
func JobStates() []string {
	return []string{JobPending, JobQueued, JobSnapshotting, JobCopying, JobVerifying, JobFinalizing,
		JobCompleted, JobFailed, JobCancelled, JobPaused, JobPausedExpired}
}

// JobCreated announces a job the OMA created, with its exports.
type JobCreated struct {
	JobID           string    `json:"job_id"`
	VMAID           string    `json:"vma_id"`
	VM              VMRef     `json:"vm"`
	ReplicationType string    `json:"replication_type"`
	State           string    `json:"state"`
	Disks           []JobDisk `json:"disks"`
	CreatedAt       time.Time `json:"created_at"`
}

// EventType implements Payload.
func (*JobCreated) EventType() string { return TypeJobCreated }

// NATSSubject implements Payload.
func (j *JobCreated) NATSSubject() (string, error) { return subject.JobCreated(j.VMAID, j.JobID) }

// EventSubject implements Payload: the job id.
func (j *JobCreated) EventSubject() string { return j.JobID }

// VMRef names the source VM of a job.
type VMRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Path string `json:"path"`
	// InstanceUUID is vCenter's instance UUID of the VM, when discovery
	// reported it: the VMA checks that the path still names this VM.
	InstanceUUID string `json:"instance_uuid,omitempty"`
}

// JobDisk is one disk of a job and the NBD export it is written into.
type JobDisk struct {
	Key           int32  `json:"key"`
	CapacityBytes int64  `json:"capacity_bytes"`
	Export        Export `json:"export"`
}

// Export is an NBD export on the OMA. Name carries a random part and is
// the export's only secret: it is told to the VMA (export allocation) and
// shown by the authenticated API, and left out of JobCreated events.
type Export struct {
	Host string `json:"host"`
	Port int    `json:"port"`
	Name string `json:"name,omitempty"`
}

// JobStateChanged announces that a job moved from one state to another.
type JobStateChanged struct {
	JobID string `json:"job_id"`
	VMAID string `json:"vma_id"`
	From  string `json:"from"`
	To    string `json:"to"`
	// Error says why, when To is failed or cancelled.
	Error     string    `json:"error,omitempty"`
	ChangedAt time.Time `json:"changed_at"`
}

// EventType implements Payload.
func (*JobStateChanged) EventType() string { return TypeJobStateChanged }

// NATSSubject implements Payload.
func (j *JobStateChanged) NATSSubject() (string, error) { return subject.JobState(j.VMAID, j.JobID) }

// EventSubject implements Payload: the job id.
func (j *JobStateChanged) EventSubject() string { return j.JobID }

// ExportAllocation is the OMA's reply to a VMA's export request (on
// subject.ExportRequest): where to write each disk of a job. It is a
// request/reply message, not an event.
type ExportAllocation struct {
	JobID           string          `json:"job_id"`
	VM              VMRef           `json:"vm"`
	ReplicationType string          `json:"replication_type"`
	State           string          `json:"state"`
	Disks           []AllocatedDisk `json:"disks"`
	// Attempt counts the VMAs the job was given to: 1 for the first; more
	// after the OMA moved it to another VMA (its export names are new each
	// time, and the earlier ones are no longer served).
	Attempt int `json:"attempt,omitempty"`
	// Snapshot, for a job moved while it ran, is the snapshot its disks'
	// checkpoints belong to: the new VMA goes on from the checkpoints when
	// the VM still has that snapshot (named SnapshotPrefix plus the job
	// id), else it takes a new one and copies from zero.
	Snapshot string `json:"snapshot,omitempty"`
}

// AllocatedDisk is one disk of an ExportAllocation.
type AllocatedDisk struct {
	Key           int32  `json:"key"`
	Label         string `json:"label"`
	CapacityBytes int64  `json:"capacity_bytes"`
	Export        Export `json:"export"`
	// BaseChangeID is where an incremental copy starts ("" for initial).
	BaseChangeID string `json:"base_change_id,omitempty"`
	// Checkpoint, with Snapshot, is where a moved job's disk goes on from:
	// below it the areas are written and flushed, out of PlannedBytes to
	// copy in all (a plan of another size is another plan: copy whole).
	Checkpoint   int64 `json:"checkpoint,omitempty"`
	PlannedBytes int64 `json:"planned_bytes,omitempty"`
}
