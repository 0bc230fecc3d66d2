package events

import (
	"time"

	"github.com/godwit/godwit/events/subject"
)

// Power actions of a PowerCommand.
const (
	// PowerOff powers the source VM off for its cutover.
	PowerOff = "off"
	// PowerOn powers it back on: a cutover's rollback.
	PowerOn = "on"
)

// How a PowerCommand powers a VM off.
const (
	// PowerOffGuest asks the guest to shut down through VMware Tools and
	// fails when it has not stopped in time.
	PowerOffGuest = "guest"
	// PowerOffHard powers the VM off at once.
	PowerOffHard = "hard"
	// PowerOffGuestThenHard asks the guest first, then powers the VM off
	// when it has not stopped in time (or has no Tools to ask).
	PowerOffGuestThenHard = "guest-then-hard"
)

// How a PowerReport says the action was done.
const (
	PowerMethodNone  = "none"  // it was in that state already
	PowerMethodGuest = "guest" // the guest shut down
	PowerMethodHard  = "hard"  // powered off by vCenter
	PowerMethodOn    = "on"    // powered on by vCenter
)

// vSphere's power states, as a PowerReport gives them.
const (
	PowerStateOn        = "poweredOn"
	PowerStateOff       = "poweredOff"
	PowerStateSuspended = "suspended"
)

// PowerCommand tells a VMA to power a source VM off (the first step of a
// cutover) or back on (its rollback). The VMA answers with a PowerReport.
type PowerCommand struct {
	// RequestID names this command; the report carries it.
	RequestID string `json:"request_id"`
	VMAID     string `json:"vma_id"`
	VCenter   string `json:"vcenter"`
	Username  string `json:"username"`
	// Password is the vCenter password sealed to the VMA's key.
	Password Sealed `json:"password"`
	// VM is the source VM: found by its path, checked by id and instance UUID.
	VM     VMRef  `json:"vm"`
	Action string `json:"action"`
	// Mode says how to power off (PowerOff* constants); "" for PowerOn.
	Mode string `json:"mode,omitempty"`
	// TimeoutSeconds bounds the wait for a guest shutdown.
	TimeoutSeconds int    `json:"timeout_seconds,omitempty"`
	CAPEM          string `json:"ca_pem,omitempty"`
	Thumbprint     string `json:"thumbprint,omitempty"`
	// NotAfter is when the command goes stale: a VMA that gets it later
	// (it was disconnected meanwhile, and the OMA gave up waiting) refuses
	// it, so that a source is never powered off long after its cutover.
	NotAfter time.Time `json:"not_after"`
}

// EventType implements Payload.
func (*PowerCommand) EventType() string { return TypePowerCommand }

// NATSSubject implements Payload: the VMA's command subject.
func (c *PowerCommand) NATSSubject() (string, error) { return subject.ReplicateCommand(c.VMAID) }

// EventSubject implements Payload: the request id.
func (c *PowerCommand) EventSubject() string { return c.RequestID }

// PowerReport is a VMA's answer to a PowerCommand: the VM's power state
// before and after, how the action was done and how long it took.
type PowerReport struct {
	RequestID string `json:"request_id"`
	VMAID     string `json:"vma_id"`
	VMID      string `json:"vm_id"`
	Action    string `json:"action"`
	// StateBefore is the VM's power state when the command arrived: what
	// a rollback restores.
	StateBefore string `json:"state_before,omitempty"`
	StateAfter  string `json:"state_after,omitempty"`
	Method      string `json:"method,omitempty"`
	// GuestTimedOut says the guest did not shut down in time (and the VM
	// was then powered off hard, or the command failed).
	GuestTimedOut bool `json:"guest_timed_out,omitempty"`
	// Seconds is how long the action took, from the command's start.
	Seconds float64 `json:"seconds"`
	// DoneAt is when the VM was found in its new state (or the command failed).
	DoneAt time.Time `json:"done_at"`
	Error  *Failure  `json:"error,omitempty"`
}

// EventType implements Payload.
func (*PowerReport) EventType() string { return TypePowerReport }

// NATSSubject implements Payload: a status subject of the VMA.
func (r *PowerReport) NATSSubject() (string, error) { return subject.Status(r.VMAID, r.RequestID) }

// EventSubject implements Payload: the request id.
func (r *PowerReport) EventSubject() string { return r.RequestID }
