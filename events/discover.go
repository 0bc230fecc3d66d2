package events

import "github.com/godwit/godwit/events/subject"

// DiscoverRequest asks a VMA to list the VMs of a vCenter.
type DiscoverRequest struct {
	// RequestID identifies the request; the result carries it back.
	RequestID string `json:"request_id"`
	// VMAID is the VMA that runs the discovery.
	VMAID string `json:"vma_id"`
	// VCenter is the vCenter host name or address.
	VCenter string `json:"vcenter"`
	// Username is the vCenter user.
	Username string `json:"username"`
	// Password is the vCenter password sealed to the VMA's key.
	Password Sealed `json:"password"`
	// Datacenter limits discovery to one datacenter; empty means all.
	Datacenter string `json:"datacenter,omitempty"`
	// Filter is a comma-separated list of case-insensitive name matches.
	Filter string `json:"filter,omitempty"`
	// CAPEM and Thumbprint pin vCenter's certificate for this login, on
	// top of the VMA's own trust; at most one is set. CAPEM holds PEM CA
	// certificates the VMA trusts besides its own. Thumbprint is the
	// SHA-1 or SHA-256 fingerprint of vCenter's certificate as
	// colon-separated hex pairs: the certificate must have it.
	CAPEM      string `json:"ca_pem,omitempty"`
	Thumbprint string `json:"thumbprint,omitempty"`
}

// EventType implements Payload.
func (*DiscoverRequest) EventType() string { return TypeDiscoverRequest }

// NATSSubject implements Payload.
func (r *DiscoverRequest) NATSSubject() (string, error) { return subject.DiscoverRequest(r.VMAID) }

// EventSubject implements Payload: the request id.
func (r *DiscoverRequest) EventSubject() string { return r.RequestID }

// DiscoverResult is the VM inventory a VMA found for one DiscoverRequest.
type DiscoverResult struct {
	// RequestID is the id of the request answered.
	RequestID string `json:"request_id"`
	// VMAID is the VMA that ran the discovery.
	VMAID string `json:"vma_id"`
	// VCenter is where the VMs were found.
	VCenter VCenterRef `json:"vcenter"`
	// Filter is the request's name filter: with one, VMs is not the whole
	// datacenter, and VMs missing from it were not removed.
	Filter string `json:"filter,omitempty"`
	// VMs are the VMs found; empty when Error is set. In a paged result
	// they are this page's share.
	VMs []VM `json:"vms"`
	// Error is set when discovery failed.
	Error *Failure `json:"error,omitempty"`
	// Page and Pages number the pages of a result too large for one
	// message (see Paginate): page Page of Pages, from 1. Both are omitted
	// when the result is whole.
	Page  int `json:"page,omitempty"`
	Pages int `json:"pages,omitempty"`
}

// EventType implements Payload.
func (*DiscoverResult) EventType() string { return TypeDiscoverResult }

// NATSSubject implements Payload.
func (r *DiscoverResult) NATSSubject() (string, error) {
	return subject.DiscoverResult(r.VMAID, r.RequestID)
}

// EventSubject implements Payload: the request id.
func (r *DiscoverResult) EventSubject() string { return r.RequestID }

// VCenterRef names a vCenter and the datacenter looked at (empty: all).
type VCenterRef struct {
	Host       string `json:"host"`
	Datacenter string `json:"datacenter"`
}

// Failure codes of a DiscoverResult or a ReplicationStatus.
const (
	FailureAuth        = "auth_failed"     // vCenter refused the credentials
	FailureUnreachable = "unreachable"     // vCenter did not answer
	FailureNotFound    = "not_found"       // a datacenter, VM or disk does not exist
	FailureInvalid     = "invalid_request" // the request cannot be carried out as asked
	FailureInternal    = "internal"        // anything else
	FailureCancelled   = "cancelled"       // the work was cancelled
	// FailureMismatch: the verification found an export that differs from
	// the source (a ReplicationStatus only).
	FailureMismatch = "verify_mismatch"
)

// Failure says why a request failed, in a form a REST API can map to a status.
type Failure struct {
	// Code is one of the Failure* codes.
	Code string `json:"code"`
	// Message is for people; it never holds a secret.
	Message string `json:"message"`
}

// VM is one virtual machine as discovered.
type VM struct {
	// ID is the managed object id, such as vm-143233.
	ID string `json:"id"`
	// Name is the VM's display name.
	Name string `json:"name"`
	// Path is the inventory path, such as /DatabanxDC/vm/PGWINTESTBIOS.
	Path       string `json:"path"`
	Datacenter string `json:"datacenter"`
	// UUID is the BIOS UUID.
	UUID string `json:"uuid"`
	// InstanceUUID is vCenter's instance UUID (config.instanceUuid), unique
	// within a vCenter where morefs and BIOS UUIDs may repeat; empty when
	// the VMA did not report it.
	InstanceUUID string `json:"instance_uuid,omitempty"`
	// ESXiHost names the ESXi host the VM runs on (runtime.host); empty,
	// and omitted, when the VMA did not report it.
	ESXiHost string `json:"esxi_host,omitempty"`
	// PowerState is poweredOn, poweredOff or suspended.
	PowerState string `json:"power_state"`
	GuestOS    string `json:"guest_os"`
	NumCPU     int    `json:"num_cpu"`
	MemoryMB   int    `json:"memory_mb"`
	// Firmware is bios or efi.
	Firmware   string `json:"firmware"`
	CBTEnabled bool   `json:"cbt_enabled"`
	// HardwareVersion is the virtual hardware version, 13 for
	// config.version "vmx-13"; 0 (absent) when unknown.
	HardwareVersion int `json:"hardware_version,omitempty"`
	// Snapshots is how many snapshots the VM has: every node of its
	// snapshot tree. SnapshotDepth is how many snapshots the current one
	// stands on, itself included: the length of the chain from its root
	// to the current snapshot (each a delta disk level the VM runs on).
	// Without a current snapshot it is the tree's greatest depth. Both are
	// 0, and omitted, without snapshots.
	Snapshots     int       `json:"snapshots,omitempty"`
	SnapshotDepth int       `json:"snapshot_depth,omitempty"`
	Disks         []Disk    `json:"disks"`
	Networks      []Network `json:"networks"`
}

// Disk is one virtual disk of a VM.
type Disk struct {
	// Key is the device key, unique within the VM (such as 2000).
	Key           int32  `json:"key"`
	Label         string `json:"label"`
	CapacityBytes int64  `json:"capacity_bytes"`
	Datastore     string `json:"datastore"`
	// File is the backing file name, such as "[datastore1] vm/vm.vmdk".
	File       string `json:"file"`
	Thin       bool   `json:"thin"`
	Controller string `json:"controller"`
	UnitNumber int32  `json:"unit_number"`
	// Mode is the backing's disk mode, such as persistent,
	// independent_persistent or independent_nonpersistent (vSphere's
	// VirtualDiskMode); "", and omitted, when the backing has none.
	Mode string `json:"mode,omitempty"`
	// RDM is true for a raw disk: a raw device mapping
	// (VirtualDiskRawDiskMappingVer1BackingInfo) or a raw disk backing
	// (VirtualDiskRawDiskVer2BackingInfo, PartitionedRawDiskVer2).
	RDM bool `json:"rdm,omitempty"`
}

// Network is one network adapter of a VM.
type Network struct {
	Label       string `json:"label"`
	Network     string `json:"network"`
	MACAddress  string `json:"mac_address"`
	AdapterType string `json:"adapter_type"`
	Connected   bool   `json:"connected"`
}
