package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
)

// Plan is a migration plan: VMs of one registered vCenter, replicated on a
// schedule. Its VMs are PlanVM records of their own.
type Plan struct {
	Name    string `json:"name"`
	VCenter string `json:"vcenter"`
	// Waves lists the plan's VMs (PlanVM.Key) wave by wave.
	Waves [][]string          `json:"waves"`
	Sync  events.PlanSchedule `json:"sync"`
	// Verify, when false, skips the read-back verification; nil verifies.
	Verify     *bool  `json:"verify,omitempty"`
	OnCBTReset string `json:"on_cbt_reset,omitempty"`
	// Limits bound the plan's jobs.
	Limits PlanLimits `json:"limits"`
	// Priority orders the plan's jobs in the OMA's queue: higher first.
	Priority int `json:"priority,omitempty"`
	// RateLimit bounds the bytes per second of all its jobs together; 0:
	// none. RateWindows replace it at their times of day.
	RateLimit   int64        `json:"rate_limit,omitempty"`
	RateWindows []RateWindow `json:"rate_windows,omitempty"`
	// Cutover holds the plan's settings for its VMs' cutovers.
	Cutover PlanCutover `json:"cutover"`
	// Force lets the plan copy while its preflight finds errors.
	Force  bool `json:"force,omitempty"`
	Paused bool `json:"paused,omitempty"`
	// PreflightErrors counts the errors the last preflight found (at
	// PreflightAt): while there are some, the plan copies only if Force.
	PreflightErrors int       `json:"preflight_errors"`
	PreflightAt     time.Time `json:"preflight_at"`
	// NextDue is when the next scheduled sync is due.
	NextDue time.Time `json:"next_due"`
	// Syncs counts the scheduled syncs run (ticks), LastSyncAt the last.
	Syncs      int        `json:"syncs"`
	LastSyncAt *time.Time `json:"last_sync_at,omitempty"`
	CreatedBy  string     `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// PlanCutover is how a plan's VMs are cut over, unless a cutover request
// says otherwise.
type PlanCutover struct {
	// TargetDir is where converted disks go, such as a CloudStack primary
	// storage pool mounted on the OMA: each VM's in <TargetDir>/<name>-<id>.
	TargetDir string `json:"target_dir,omitempty"`
	// BootPrompt is the regular expression a boot check waits for; "":
	// a login prompt.
	BootPrompt string `json:"boot_prompt,omitempty"`
}

// PlanLimits bound a plan's jobs.
type PlanLimits struct {
	// MaxConcurrent is how many of its jobs run at once; 0 means the
	// OMA's default (plans.DefaultMaxActive).
	MaxConcurrent int `json:"max_concurrent,omitempty"`
	// ESXiHost and Datastore, when set, bound how many jobs read from one
	// ESXi host or datastore at once while one of the plan's jobs does,
	// below the vCenter's limits.
	ESXiHost  int `json:"esxi_host,omitempty"`
	Datastore int `json:"datastore,omitempty"`
}

// PlanVM is one VM of a plan and where its replication stands.
type PlanVM struct {
	Plan string `json:"plan"`
	// Key names the VM within the plan: its managed object id.
	Key          string `json:"key"`
	Name         string `json:"name"`
	Path         string `json:"path"`
	InstanceUUID string `json:"instance_uuid,omitempty"`
	VMAID        string `json:"vma_id"`
	// Host is the vCenter's host, as the inventory names it.
	Host      string `json:"vcenter_host"`
	ReplicaID string `json:"replica_id"`
	Wave      int    `json:"wave"`
	State     string `json:"state"`
	// Job is the VM's current job, or its last one.
	Job string `json:"job,omitempty"`
	// Due says a sync was asked for (by the schedule or a person) and not
	// yet started.
	Due bool `json:"due,omitempty"`
	// Waiting says why a due VM has not started.
	Waiting string `json:"waiting,omitempty"`
	// Failures counts the failed syncs in a row; Paused is set at
	// three, with the reason.
	Failures    int           `json:"failures"`
	Paused      bool          `json:"paused,omitempty"`
	PauseReason string        `json:"pause_reason,omitempty"`
	LastError   string        `json:"last_error,omitempty"`
	FailedJob   string        `json:"failed_job,omitempty"`
	LastSync    *PlanSyncDone `json:"last_sync,omitempty"`
	Syncs       int           `json:"syncs"`
	// BytesCopied adds up the bytes its completed copies wrote.
	BytesCopied int64 `json:"bytes_copied"`
	// Cutover is the state of its cutover while one is under way or
	// waits for commit (then committed): no sync starts meanwhile.
	Cutover   string    `json:"cutover,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// PlanSyncDone is a VM's last completed copy.
type PlanSyncDone struct {
	Job             string    `json:"job"`
	Type            string    `json:"type"`
	FinishedAt      time.Time `json:"finished_at"`
	BytesChanged    int64     `json:"bytes_changed"`
	DurationSeconds float64   `json:"duration_seconds"`
	Verified        bool      `json:"verified"`
}

// PutPlan stores p under its name.
func PutPlan(tx *bbolt.Tx, p Plan) error { return put(tx, bucketPlans, p.Name, p) }

// GetPlan reads a plan; ErrNotFound when there is none.
func GetPlan(tx *bbolt.Tx, name string) (Plan, error) {
	var p Plan
	return p, get(tx, bucketPlans, name, &p)
}

// Plans returns every plan, by name.
func Plans(tx *bbolt.Tx) ([]Plan, error) {
	var out []Plan
	return out, each(tx, bucketPlans, func(p Plan) error { out = append(out, p); return nil })
}

// DeletePlan removes a plan and its VMs; ErrNotFound when there is none.
func DeletePlan(tx *bbolt.Tx, name string) error {
	if tx.Bucket(bucketPlans).Get([]byte(name)) == nil {
		return fmt.Errorf("%s %q: %w", bucketPlans, name, ErrNotFound)
	}
	vms, err := PlanVMs(tx, name)
	if err != nil {
		return err
	}
	for _, vm := range vms {
		if err := DeletePlanVM(tx, name, vm.Key); err != nil {
			return err
		}
	}
	return delRaw(tx, bucketPlans, []byte(name))
}

func planVMKey(plan, key string) string { return plan + "\x00" + key }

// PutPlanVM stores vm under its plan and key.
func PutPlanVM(tx *bbolt.Tx, vm PlanVM) error {
	return put(tx, bucketPlanVMs, planVMKey(vm.Plan, vm.Key), vm)
}

// GetPlanVM reads a VM of a plan; ErrNotFound when there is none.
func GetPlanVM(tx *bbolt.Tx, plan, key string) (PlanVM, error) {
	var vm PlanVM
	return vm, get(tx, bucketPlanVMs, planVMKey(plan, key), &vm)
}

// DeletePlanVM removes a VM from a plan.
func DeletePlanVM(tx *bbolt.Tx, plan, key string) error {
	return delRaw(tx, bucketPlanVMs, []byte(planVMKey(plan, key)))
}

// PlanVMs returns the VMs of plan, by key.
func PlanVMs(tx *bbolt.Tx, plan string) ([]PlanVM, error) {
	var out []PlanVM
	prefix := []byte(plan + "\x00")
	c := tx.Bucket(bucketPlanVMs).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var vm PlanVM
		if err := json.Unmarshal(v, &vm); err != nil {
			return nil, fmt.Errorf("decode %s/%q: %w", bucketPlanVMs, k, err)
		}
		out = append(out, vm)
	}
	return out, nil
}

// AllPlanVMs returns the VMs of every plan.
func AllPlanVMs(tx *bbolt.Tx) ([]PlanVM, error) {
	var out []PlanVM
	return out, each(tx, bucketPlanVMs, func(vm PlanVM) error { out = append(out, vm); return nil })
}
