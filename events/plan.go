package events

import (
	"time"

	"github.com/godwit/godwit/events/subject"
)

// Plan VM states. A VM of a plan moves pending -> copying (its initial
// copy) -> synced -> syncing (an incremental) -> synced ..., or to failed,
// with the reason and the job; three failures in a row pause it (state
// paused) until a person retries it.
const (
	PlanVMPending = "pending"
	PlanVMCopying = "copying"
	PlanVMSynced  = "synced"
	PlanVMSyncing = "syncing"
	PlanVMFailed  = "failed"
	PlanVMPaused  = "paused"
)

// PlanVMStates lists every state of a plan's VM.
func PlanVMStates() []string {
	return []string{PlanVMPending, PlanVMCopying, PlanVMSynced, PlanVMSyncing, PlanVMFailed, PlanVMPaused}
}

// PlanSchedule is a plan's sync schedule as given.
type PlanSchedule struct {
	Interval string      `json:"interval,omitempty"`
	Cron     string      `json:"cron,omitempty"`
	Window   *PlanWindow `json:"window,omitempty"`
}

// PlanWindow is the daily window a plan's syncs run in: start and end as
// HH:MM in TZ (UTC when empty); end before start wraps midnight.
type PlanWindow struct {
	Start string `json:"start"`
	End   string `json:"end"`
	TZ    string `json:"tz,omitempty"`
}

// PlanVMRef names a VM of a plan and its wave (0 first).
type PlanVMRef struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Path         string `json:"path"`
	InstanceUUID string `json:"instance_uuid,omitempty"`
	Wave         int    `json:"wave"`
}

// PlanCreated announces a new migration plan.
type PlanCreated struct {
	Plan      string       `json:"plan"`
	VCenter   string       `json:"vcenter"`
	VMs       []PlanVMRef  `json:"vms"`
	Sync      PlanSchedule `json:"sync"`
	NextDue   time.Time    `json:"next_due"`
	CreatedAt time.Time    `json:"created_at"`
}

// EventType implements Payload.
func (*PlanCreated) EventType() string { return TypePlanCreated }

// NATSSubject implements Payload.
func (p *PlanCreated) NATSSubject() (string, error) { return subject.PlanCreated(p.Plan) }

// EventSubject implements Payload: the plan's name.
func (p *PlanCreated) EventSubject() string { return p.Plan }

// Plan changes, as PlanChanged.Change names them.
const (
	PlanChangeVMs      = "vms"      // VMs added or removed
	PlanChangeSchedule = "schedule" // schedule or window
	PlanChangeWaves    = "waves"
	PlanChangeLimits   = "limits" // max_concurrent, esxi_host, datastore
	PlanChangePriority = "priority"
	PlanChangeCutover  = "cutover" // target_dir, boot_prompt
	PlanChangePaused   = "paused"
	PlanChangeResumed  = "resumed"
	PlanChangeDeleted  = "deleted"
)

// PlanChanged announces a change to a plan.
type PlanChanged struct {
	Plan    string        `json:"plan"`
	Change  string        `json:"change"`
	Added   []PlanVMRef   `json:"added,omitempty"`
	Removed []string      `json:"removed,omitempty"`
	Sync    *PlanSchedule `json:"sync,omitempty"`
	// MaxConcurrent is the plan's new limits.max_concurrent (0: the
	// OMA's default), for a limits change.
	MaxConcurrent int `json:"max_concurrent,omitempty"`
	// ESXiHost and Datastore are the plan's new source limits (0: none
	// of its own), for a limits change.
	ESXiHost  int `json:"esxi_host,omitempty"`
	Datastore int `json:"datastore,omitempty"`
	// Priority is the plan's new priority in the OMA's queue, for a
	// priority change.
	Priority int `json:"priority,omitempty"`
	// NextDue is when the next scheduled sync is due (not for deleted).
	NextDue   *time.Time `json:"next_due,omitempty"`
	ChangedAt time.Time  `json:"changed_at"`
}

// EventType implements Payload.
func (*PlanChanged) EventType() string { return TypePlanChanged }

// NATSSubject implements Payload.
func (p *PlanChanged) NATSSubject() (string, error) { return subject.PlanChanged(p.Plan) }

// EventSubject implements Payload: the plan's name.
func (p *PlanChanged) EventSubject() string { return p.Plan }

// PlanVMStateChanged announces that a VM of a plan moved to another state.
type PlanVMStateChanged struct {
	Plan string `json:"plan"`
	VMID string `json:"vm_id"`
	Name string `json:"name"`
	From string `json:"from"`
	To   string `json:"to"`
	// Job is the job that moved it, if any.
	Job string `json:"job,omitempty"`
	// Error says why, when To is failed or paused.
	Error     string    `json:"error,omitempty"`
	ChangedAt time.Time `json:"changed_at"`
}

// EventType implements Payload.
func (*PlanVMStateChanged) EventType() string { return TypePlanVMStateChanged }

// NATSSubject implements Payload.
func (p *PlanVMStateChanged) NATSSubject() (string, error) { return subject.PlanVM(p.Plan, p.VMID) }

// EventSubject implements Payload: plan/vm.
func (p *PlanVMStateChanged) EventSubject() string { return p.Plan + "/" + p.VMID }

// PlanSyncScheduled announces a scheduled sync of a plan (or one asked
// for by a person): its VMs are due.
type PlanSyncScheduled struct {
	Plan string `json:"plan"`
	// Reason is schedule, missed (due while the OMA was down: run once at
	// start) or manual.
	Reason string `json:"reason"`
	// Sync counts the plan's scheduled syncs, this one included.
	Sync    int       `json:"sync"`
	DueVMs  int       `json:"due_vms"`
	DueAt   time.Time `json:"due_at"`
	NextDue time.Time `json:"next_due"`
	At      time.Time `json:"at"`
}

// Reasons of a PlanSyncScheduled.
const (
	SyncReasonSchedule = "schedule"
	SyncReasonMissed   = "missed"
	SyncReasonManual   = "manual"
)

// EventType implements Payload.
func (*PlanSyncScheduled) EventType() string { return TypePlanSyncScheduled }

// NATSSubject implements Payload.
func (p *PlanSyncScheduled) NATSSubject() (string, error) { return subject.PlanScheduled(p.Plan) }

// EventSubject implements Payload: the plan's name.
func (p *PlanSyncScheduled) EventSubject() string { return p.Plan }

// PlanSyncDone announces a completed copy of a plan's VM.
type PlanSyncDone struct {
	Plan            string    `json:"plan"`
	VMID            string    `json:"vm_id"`
	Name            string    `json:"name"`
	Job             string    `json:"job"`
	ReplicationType string    `json:"replication_type"`
	BytesChanged    int64     `json:"bytes_changed"`
	DurationSeconds float64   `json:"duration_seconds"`
	Verified        bool      `json:"verified"`
	FinishedAt      time.Time `json:"finished_at"`
}

// EventType implements Payload.
func (*PlanSyncDone) EventType() string { return TypePlanSyncDone }

// NATSSubject implements Payload.
func (p *PlanSyncDone) NATSSubject() (string, error) { return subject.PlanSynced(p.Plan, p.VMID) }

// EventSubject implements Payload: plan/vm.
func (p *PlanSyncDone) EventSubject() string { return p.Plan + "/" + p.VMID }
