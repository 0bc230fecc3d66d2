package events

import (
	"time"

	"github.com/godwit/godwit/events/subject"
)

// QueueQueued announces a started job that waits in the OMA's queue: the
// first time the queue sees it waiting, with its place and why it waits.
// A job that is dispatched at once gets only a QueueDispatched.
type QueueQueued struct {
	JobID    string `json:"job_id"`
	VMAID    string `json:"vma_id"`
	Plan     string `json:"plan,omitempty"`
	Priority int    `json:"priority"`
	// Position is its place in the queue's order, from 1.
	Position int `json:"position"`
	// WaitingFor names the limit that keeps it waiting, such as
	// "esxi host esx-21: 4 of 4 running".
	WaitingFor string    `json:"waiting_for"`
	QueuedAt   time.Time `json:"queued_at"`
}

// EventType implements Payload.
func (*QueueQueued) EventType() string { return TypeQueueQueued }

// NATSSubject implements Payload.
func (q *QueueQueued) NATSSubject() (string, error) { return subject.JobQueue(q.VMAID, q.JobID) }

// EventSubject implements Payload: the job id.
func (q *QueueQueued) EventSubject() string { return q.JobID }

// QueueDispatched announces that the OMA's queue sent a job to its VMA: a
// slot was free under every limit. The job holds its slots until it ends.
type QueueDispatched struct {
	JobID string `json:"job_id"`
	VMAID string `json:"vma_id"`
	Plan  string `json:"plan,omitempty"`
	// Position was its place in the queue's order when it was picked.
	Position      int       `json:"position"`
	WaitedSeconds float64   `json:"waited_seconds"`
	DispatchedAt  time.Time `json:"dispatched_at"`
}

// EventType implements Payload.
func (*QueueDispatched) EventType() string { return TypeQueueDispatched }

// NATSSubject implements Payload.
func (q *QueueDispatched) NATSSubject() (string, error) { return subject.JobQueue(q.VMAID, q.JobID) }

// EventSubject implements Payload: the job id.
func (q *QueueDispatched) EventSubject() string { return q.JobID }

// QueueMoved announces that the OMA's queue gave a job to another VMA,
// because its own stopped beating: a job still waiting at once, a running
// one after a grace period (a takeover). The job's export names changed;
// the old VMA's are no longer served.
type QueueMoved struct {
	JobID string `json:"job_id"`
	// VMAID is the VMA the job goes to now, FromVMA the one it left.
	VMAID   string `json:"vma_id"`
	FromVMA string `json:"from_vma"`
	Plan    string `json:"plan,omitempty"`
	// Attempt counts the VMAs the job was given to, 2 after the first move.
	Attempt int `json:"attempt"`
	// Running says the job had been dispatched to FromVMA: a takeover.
	Running bool `json:"running"`
	// Reason says why, such as "vma-1: no heartbeat for 2m31s".
	Reason string `json:"reason"`
	// Snapshot and Disks are what a takeover resumes from: the snapshot
	// the checkpoints belong to, and each disk's checkpoint.
	Snapshot string           `json:"snapshot,omitempty"`
	Disks    []DiskCheckpoint `json:"disks,omitempty"`
	MovedAt  time.Time        `json:"moved_at"`
}

// DiskCheckpoint is a disk's durable checkpoint, out of the bytes its plan
// copies.
type DiskCheckpoint struct {
	Key          int32 `json:"key"`
	Checkpoint   int64 `json:"checkpoint"`
	PlannedBytes int64 `json:"planned_bytes"`
}

// EventType implements Payload.
func (*QueueMoved) EventType() string { return TypeQueueMoved }

// NATSSubject implements Payload: the new VMA's queue subject of the job.
func (q *QueueMoved) NATSSubject() (string, error) { return subject.JobQueue(q.VMAID, q.JobID) }

// EventSubject implements Payload: the job id.
func (q *QueueMoved) EventSubject() string { return q.JobID }

// Objects whose limits a QueueLimits event changes.
const (
	LimitsGlobal  = "global"
	LimitsVMA     = "vma"
	LimitsVCenter = "vcenter"
	LimitsPlan    = "plan"
	LimitsJob     = "job"
)

// QueueLimits announces a change to limits the OMA's queue applies: the
// global, a VMA's, a plan's or a job's bandwidth limit, or a vCenter's
// source limits. (A plan's limits of jobs at once change with its
// plan.changed events.)
type QueueLimits struct {
	// Object is LimitsGlobal, LimitsVMA, LimitsVCenter, LimitsPlan or LimitsJob;
	// Name names it ("all" for the global limits).
	Object string `json:"object"`
	Name   string `json:"name"`
	// Rate is the bandwidth limit in bytes per second (0: none), and
	// RateWindows the limits for times of day, for a bandwidth change.
	Rate        *int64       `json:"rate,omitempty"`
	RateWindows []RateWindow `json:"rate_windows,omitempty"`
	// VCenter, ESXiHost and Datastore are a vCenter's limits of jobs at
	// once, for a vCenter's change.
	VCenter   int       `json:"vcenter,omitempty"`
	ESXiHost  int       `json:"esxi_host,omitempty"`
	Datastore int       `json:"datastore,omitempty"`
	ChangedAt time.Time `json:"changed_at"`
}

// RateWindow is a bandwidth limit for a daily span of wall-clock time:
// Start to End ("HH:MM", wrapping midnight when End is before Start) in
// the zone TZ ("" is UTC). Rate is bytes per second, 0: none.
type RateWindow struct {
	Start string `json:"start"`
	End   string `json:"end"`
	TZ    string `json:"tz,omitempty"`
	Rate  int64  `json:"rate"`
}

// EventType implements Payload.
func (*QueueLimits) EventType() string { return TypeQueueLimits }

// NATSSubject implements Payload.
func (q *QueueLimits) NATSSubject() (string, error) { return subject.JobLimits(q.Object) }

// EventSubject implements Payload: the object and its name.
func (q *QueueLimits) EventSubject() string { return q.Object + "/" + q.Name }
