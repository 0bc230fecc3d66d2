package events

import (
	"time"

	"github.com/godwit/godwit/events/subject"
)

// The states of a cutover, in the order they come.
const (
	CutoverScheduled   = "scheduled"    // when: at, waiting for its time
	CutoverSyncing     = "syncing"      // when: budget, syncing until the prediction fits
	CutoverBudgetUnmet = "budget_unmet" // when: budget gave up; waits for the operator
	CutoverPoweringOff = "powering_off" // the source is being shut down
	CutoverFinalSync   = "final_sync"   // the last incremental, verified; its snapshot removed
	CutoverConverting  = "converting"   // virt-v2v-in-place on the overlays
	CutoverExporting   = "exporting"    // the disks written to the target directory
	CutoverBootCheck   = "boot_check"   // the converted disks booting in an isolated qemu
	CutoverCutOver     = "cut_over"     // done: waits for commit or rollback
	CutoverFailed      = "failed"       // a step failed; the source stays off
	CutoverRollingBack = "rolling_back" // the source going back to its power state
	CutoverRolledBack  = "rolled_back"  // the source is back; syncs may resume
	CutoverCommitted   = "committed"    // the VM's migration has ended
)

// CutoverStateChanged announces a step of a VM's cutover.
type CutoverStateChanged struct {
	// Cutover names the cutover: the VM's replica and an attempt.
	Cutover string `json:"cutover"`
	VMID    string `json:"vm_id"`
	Name    string `json:"name"`
	Plan    string `json:"plan,omitempty"`
	From    string `json:"from"`
	To      string `json:"to"`
	// Job is the final sync's job, once it exists.
	Job string `json:"job,omitempty"`
	// Error says why a step failed (To is failed or budget_unmet).
	Error     string    `json:"error,omitempty"`
	ChangedAt time.Time `json:"changed_at"`
}

// EventType implements Payload.
func (*CutoverStateChanged) EventType() string { return TypeCutoverState }

// NATSSubject implements Payload.
func (c *CutoverStateChanged) NATSSubject() (string, error) { return subject.Cutover(c.VMID) }

// EventSubject implements Payload: the cutover.
func (c *CutoverStateChanged) EventSubject() string { return c.Cutover }

// Downtime is a cutover's downtime split into its parts, in seconds: from
// the source's power-off command to the converted disks passing their
// boot check.
type Downtime struct {
	PowerOff   float64 `json:"power_off"`
	FinalSync  float64 `json:"final_sync"`
	Conversion float64 `json:"conversion"`
	Export     float64 `json:"export"`
	BootCheck  float64 `json:"boot_check"`
	Total      float64 `json:"total"`
}

// CutoverDone announces a VM cut over: its measured downtime next to the
// prediction made before it began.
type CutoverDone struct {
	Cutover string `json:"cutover"`
	VMID    string `json:"vm_id"`
	Name    string `json:"name"`
	Plan    string `json:"plan,omitempty"`
	// Measured is the downtime as it happened.
	Measured Downtime `json:"measured"`
	// PredictedSeconds was the prediction when the source was powered off.
	PredictedSeconds float64 `json:"predicted_seconds"`
	// FinalSyncBytes is what the final incremental copied.
	FinalSyncBytes int64 `json:"final_sync_bytes"`
	// Converted says virt-v2v converted the guest; Accel is how the boot
	// check ran (kvm or tcg).
	Converted bool      `json:"converted"`
	Accel     string    `json:"accel,omitempty"`
	TargetDir string    `json:"target_dir"`
	DoneAt    time.Time `json:"done_at"`
}

// EventType implements Payload.
func (*CutoverDone) EventType() string { return TypeCutoverDone }

// NATSSubject implements Payload.
func (c *CutoverDone) NATSSubject() (string, error) { return subject.Cutover(c.VMID) }

// EventSubject implements Payload: the cutover.
func (c *CutoverDone) EventSubject() string { return c.Cutover }
