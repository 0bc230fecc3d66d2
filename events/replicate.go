package events

import "github.com/godwit/godwit/events/subject"

// Replication types.
const (
	ReplicationInitial     = "initial"     // copy every allocated block
	ReplicationIncremental = "incremental" // copy what changed since the last completed job
)

// ReplicateCommand tells a VMA to run a replication job.
type ReplicateCommand struct {
	JobID string `json:"job_id"`
	// VMAID is the VMA that runs the job.
	VMAID    string `json:"vma_id"`
	VCenter  string `json:"vcenter"`
	Username string `json:"username"`
	// Password is the vCenter password sealed to the VMA's key.
	Password Sealed `json:"password"`
	// VMPaths are inventory paths of the VMs to replicate.
	VMPaths []string `json:"vm_paths"`
	// OMAURL is the OMA API the VMA reports to.
	OMAURL string `json:"oma_url"`
	// ReplicationType is initial or incremental; empty means initial.
	ReplicationType string `json:"replication_type,omitempty"`
	// OnCBTReset says what an incremental job does with a disk whose base
	// change id vCenter refuses: fail the job (OnCBTResetFail, the
	// default) or copy that disk whole (OnCBTResetFull).
	OnCBTReset string `json:"on_cbt_reset,omitempty"`
	// Verify, when set to false, skips reading the written areas back;
	// nil means verify.
	Verify *bool `json:"verify,omitempty"`
	// CAPEM and Thumbprint pin vCenter's certificate for the job's
	// logins, as in DiscoverRequest.
	CAPEM      string `json:"ca_pem,omitempty"`
	Thumbprint string `json:"thumbprint,omitempty"`
	// RateBytesPerSecond is the job's bandwidth limit from its start (0,
	// and omitted: none); ReplicateRate changes it.
	RateBytesPerSecond int64 `json:"rate_bytes_per_second,omitempty"`
}

// What an incremental job does when vCenter refuses a base change id.
const (
	OnCBTResetFail = "fail"
	OnCBTResetFull = "full"
)

// EventType implements Payload.
func (*ReplicateCommand) EventType() string { return TypeReplicateCommand }

// NATSSubject implements Payload.
func (c *ReplicateCommand) NATSSubject() (string, error) { return subject.ReplicateCommand(c.VMAID) }

// EventSubject implements Payload: the job id.
func (c *ReplicateCommand) EventSubject() string { return c.JobID }

// ReplicateCancel tells a VMA to stop a job.
type ReplicateCancel struct {
	JobID  string `json:"job_id"`
	VMAID  string `json:"vma_id"`
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (*ReplicateCancel) EventType() string { return TypeReplicateCancel }

// NATSSubject implements Payload.
func (c *ReplicateCancel) NATSSubject() (string, error) { return subject.ReplicateCancel(c.VMAID) }

// EventSubject implements Payload: the job id.
func (c *ReplicateCancel) EventSubject() string { return c.JobID }

// ReplicatePause tells a VMA to stop a job at a checkpoint and keep its
// snapshot: the job ends paused until a replicate command for it resumes
// it. It travels on the cancel subject: both stop a job, and the VMA's
// command consumer takes them in order.
type ReplicatePause struct {
	JobID  string `json:"job_id"`
	VMAID  string `json:"vma_id"`
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (*ReplicatePause) EventType() string { return TypeReplicatePause }

// NATSSubject implements Payload.
func (c *ReplicatePause) NATSSubject() (string, error) { return subject.ReplicateCancel(c.VMAID) }

// EventSubject implements Payload: the job id.
func (c *ReplicatePause) EventSubject() string { return c.JobID }

// ReplicateRate sets the bandwidth limit of a job its VMA holds, at once:
// the OMA's share of the limits that apply to it (its own, its plan's,
// its VMA's, the global one). It travels on the cancel subject, the VMA's
// control subject for jobs it holds.
type ReplicateRate struct {
	JobID string `json:"job_id"`
	VMAID string `json:"vma_id"`
	// BytesPerSecond is the job's limit; 0 means none.
	BytesPerSecond int64 `json:"bytes_per_second"`
}

// EventType implements Payload.
func (*ReplicateRate) EventType() string { return TypeReplicateRate }

// NATSSubject implements Payload.
func (c *ReplicateRate) NATSSubject() (string, error) { return subject.ReplicateCancel(c.VMAID) }

// EventSubject implements Payload: the job id.
func (c *ReplicateRate) EventSubject() string { return c.JobID }
