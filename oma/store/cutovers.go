package store

import (
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
)

// Bucket names of the cutovers.
var (
	bucketCutovers      = []byte("cutovers")
	bucketPowerRequests = []byte("powerrequests")
)

// CutoverOptions are what a cutover was asked to do.
type CutoverOptions struct {
	// When is now, at (At) or budget (sync until the prediction fits
	// BudgetSeconds, at most MaxPasses syncs).
	When          string     `json:"when"`
	At            *time.Time `json:"at,omitempty"`
	BudgetSeconds float64    `json:"downtime_budget_seconds,omitempty"`
	MaxPasses     int        `json:"max_passes,omitempty"`
	// PowerOff is guest, hard or guest-then-hard; ShutdownTimeout bounds
	// a guest shutdown, in seconds.
	PowerOff        string `json:"power_off"`
	ShutdownTimeout int    `json:"shutdown_timeout_seconds"`
	Convert         bool   `json:"convert"`
	BootCheck       bool   `json:"boot_check"`
	// BootPrompt is the regular expression a boot check waits for; ""
	// means a login prompt.
	BootPrompt string `json:"boot_prompt,omitempty"`
	// TargetDir is where the converted disks and the domain XML go.
	TargetDir string `json:"target_dir"`
	// TargetRoot, when set, is the storage TargetDir is in (the plan's
	// target_dir, or the OMA's -cutover-target-dir): CloudStack's disk
	// paths are relative to it.
	TargetRoot string `json:"target_root,omitempty"`
	// Format of the target disks: qcow2 or raw.
	Format string `json:"format"`
}

// CutoverPass is one sync of a budget cutover.
type CutoverPass struct {
	Job              string  `json:"job"`
	BytesChanged     int64   `json:"bytes_changed"`
	Seconds          float64 `json:"seconds"`
	PredictedSeconds float64 `json:"predicted_seconds"`
}

// CutoverBoot is the result of a cutover's boot check.
type CutoverBoot struct {
	Passed  bool    `json:"passed"`
	Accel   string  `json:"accel"`
	Seconds float64 `json:"seconds"`
	Reason  string  `json:"reason,omitempty"`
	// Console is the file that holds the serial console's output.
	Console string `json:"console"`
	// Screenshot is a PNG of the screen at a timeout, if one was taken.
	Screenshot string `json:"screenshot,omitempty"`
}

// CutoverTarget is what a cutover wrote for the target cloud.
type CutoverTarget struct {
	Dir string `json:"dir"`
	// Root is the storage Dir is in, which CloudStack's paths are relative to.
	Root      string              `json:"root,omitempty"`
	Disks     []CutoverTargetDisk `json:"disks"`
	DomainXML string              `json:"domain_xml"`
	// CloudStack are the commands that import the disks into CloudStack.
	CloudStack []string `json:"cloudstack"`
}

// CutoverTargetDisk is one disk written for the target cloud.
type CutoverTargetDisk struct {
	Key    int32  `json:"key"`
	Path   string `json:"path"`
	Format string `json:"format"`
	// Root says it is the disk the guest boots from.
	Root bool `json:"root,omitempty"`
}

// Cutover is a VM's cutover: its source powered off, the last sync, the
// conversion on overlays, the boot check, and what each step measured.
// There is one per replica (Key); a new cutover of the VM replaces a
// rolled-back one.
type Cutover struct {
	// ID names it in events: the VM id and the cutover's number.
	ID string `json:"id"`
	// Number counts the VM's cutovers, from 1.
	Number  int            `json:"number"`
	Key     string         `json:"key"`
	VM      events.VMRef   `json:"vm"`
	VMAID   string         `json:"vma_id"`
	VCenter string         `json:"vcenter_host"`
	Plan    string         `json:"plan,omitempty"`
	Options CutoverOptions `json:"options"`
	State   string         `json:"state"`
	// FailedStep and Error say what failed, when State is failed or budget_unmet.
	FailedStep string `json:"failed_step,omitempty"`
	Error      string `json:"error,omitempty"`
	// Attempt counts the conversions tried, each on new overlays in Dir.
	Attempt int    `json:"attempt"`
	Dir     string `json:"dir,omitempty"`
	// PowerRequest is the power command awaited, if any.
	PowerRequest string `json:"power_request,omitempty"`
	// PowerBefore is the source's power state before the cutover: what a
	// rollback restores.
	PowerBefore  string     `json:"power_before,omitempty"`
	PowerMethod  string     `json:"power_method,omitempty"`
	PoweredOffAt *time.Time `json:"powered_off_at,omitempty"`
	// DownSince is when the power-off command went out: the downtime's start.
	DownSince *time.Time `json:"down_since,omitempty"`
	// Passes are a budget cutover's syncs before the power-off.
	Passes   []CutoverPass `json:"passes,omitempty"`
	FinalJob string        `json:"final_job,omitempty"`
	// FinalSyncBytes is what the final sync copied.
	FinalSyncBytes int64 `json:"final_sync_bytes"`
	Converted      bool  `json:"converted"`
	// ConversionLog is virt-v2v's output of the last conversion.
	ConversionLog string         `json:"conversion_log,omitempty"`
	Boot          *CutoverBoot   `json:"boot,omitempty"`
	Target        *CutoverTarget `json:"target,omitempty"`
	// Measured is the downtime so far, by part; Predicted the prediction
	// made before the source was powered off.
	Measured  events.Downtime  `json:"measured"`
	Predicted *events.Downtime `json:"predicted,omitempty"`
	// StepAt is when the cutover entered its state.
	StepAt    time.Time  `json:"step_at"`
	CreatedBy string     `json:"created_by,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	DoneAt    *time.Time `json:"done_at,omitempty"`
}

// PowerRequest is a power command sent to a VMA, and its report once it came.
type PowerRequest struct {
	ID      string              `json:"id"`
	VMAID   string              `json:"vma_id"`
	Cutover string              `json:"cutover_key"`
	SentAt  time.Time           `json:"sent_at"`
	Report  *events.PowerReport `json:"report,omitempty"`
}

// PutCutover stores c under its key.
func PutCutover(tx *bbolt.Tx, c Cutover) error { return put(tx, bucketCutovers, c.Key, c) }

// GetCutover returns the cutover of replica key.
func GetCutover(tx *bbolt.Tx, key string) (Cutover, error) {
	var c Cutover
	err := get(tx, bucketCutovers, key, &c)
	return c, err
}

// Cutovers returns every cutover.
func Cutovers(tx *bbolt.Tx) ([]Cutover, error) {
	var out []Cutover
	err := each(tx, bucketCutovers, func(c Cutover) error { out = append(out, c); return nil })
	return out, err
}

// PutPowerRequest stores r.
func PutPowerRequest(tx *bbolt.Tx, r PowerRequest) error {
	return put(tx, bucketPowerRequests, r.ID, r)
}

// GetPowerRequest returns the power request id.
func GetPowerRequest(tx *bbolt.Tx, id string) (PowerRequest, error) {
	var r PowerRequest
	err := get(tx, bucketPowerRequests, id, &r)
	return r, err
}
