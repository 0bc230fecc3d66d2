package api

import (
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/plans"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/tokens"
	"github.com/godwit/godwit/oma/vcenters"
	"github.com/godwit/godwit/secret"
)

// The bodies the API answers and takes that have no type elsewhere; the
// OpenAPI document (openapi.go) is derived from them.

// healthAnswer is GET /api/v1/health's answer: status and version to
// anyone, the rest to a valid token only.
type healthAnswer struct {
	// Status is ok, or degraded while NATS is down or a VMA's API port
	// is not held.
	Status  string `json:"status"`
	Version string `json:"version"`

	UptimeSeconds *int64        `json:"uptime_seconds,omitempty"`
	NATS          *natsHealth   `json:"nats,omitempty"`
	ConnectedVMAs *[]string     `json:"connected_vmas,omitempty"`
	Nbdkit        *nbdkitHealth `json:"nbdkit,omitempty"`
	// VMAAPIPortsNotHeld maps each VMA whose API port another process
	// holds to what holds it.
	VMAAPIPortsNotHeld map[string]string `json:"vma_api_ports_not_held,omitempty"`
}

// natsHealth is the OMA's bus connection in its health.
type natsHealth struct {
	Connected bool `json:"connected"`
	JetStream bool `json:"jetstream"`
}

// nbdkitHealth counts the exports' nbdkit processes that died and were
// started again.
type nbdkitHealth struct {
	Restarts uint64 `json:"restarts"`
}

// replicationList is GET /api/v1/replications's answer.
type replicationList struct {
	Replications []jobView `json:"replications"`
}

// discoverAnswer is POST /api/v1/discover's answer.
type discoverAnswer struct {
	VMAID   string            `json:"vma_id"`
	VCenter events.VCenterRef `json:"vcenter"`
	VMs     []events.VM       `json:"vms"`
}

// vmList is GET /api/v1/vms's answer.
type vmList struct {
	VMs []inventory.VM `json:"vms"`
}

// vmaView is a VMA as GET /api/v1/vmas shows it.
type vmaView struct {
	store.VMA
	Connected bool `json:"connected"`
	// Capacity is how many jobs it takes at once (its heartbeat's
	// max_jobs); Running its jobs the OMA's queue dispatched that have
	// not ended, Queued those waiting for it in the queue;
	// BytesPerSecond what its copies write now.
	Capacity       int   `json:"capacity"`
	Running        int   `json:"running"`
	Queued         int   `json:"queued"`
	BytesPerSecond int64 `json:"bytes_per_second"`
	// AuthorizedKey is the VMA's line for the sshd authorized_keys file.
	AuthorizedKey string `json:"authorized_key,omitempty"`
}

// vmaList is GET /api/v1/vmas's answer.
type vmaList struct {
	VMAs []vmaView `json:"vmas"`
}

// vmaRequest is the body of POST /api/v1/vmas.
type vmaRequest struct {
	ID           string `json:"id"`
	SSHPublicKey string `json:"ssh_public_key"`
	APIPort      int    `json:"api_port"`
}

// vmaLimits is PATCH /api/v1/vmas/{id}'s answer: the VMA's bandwidth
// limit and its windows.
type vmaLimits struct {
	ID          string             `json:"id"`
	Rate        int64              `json:"rate"`
	RateWindows []store.RateWindow `json:"rate_windows"`
}

// vcenterList is GET /api/v1/vcenters's answer.
type vcenterList struct {
	VCenters []vcenters.View `json:"vcenters"`
}

// vcenterUpdate is the body of PUT /api/v1/vcenters/{name}.
type vcenterUpdate struct {
	Password secret.String       `json:"password"`
	VMAs     []string            `json:"vmas"`
	Limits   *store.SourceLimits `json:"limits"`
}

// planList is GET /api/v1/plans's answer.
type planList struct {
	Plans []plans.View `json:"plans"`
}

// tokenRequest is the body of POST /api/v1/tokens.
type tokenRequest struct {
	Name  string `json:"name"`
	Scope string `json:"scope"`
}

// tokenSelf is GET /api/v1/token's answer: the request's own token.
type tokenSelf struct {
	Name  string       `json:"name"`
	Scope tokens.Scope `json:"scope"`
}

// tokenList is GET /api/v1/tokens's answer.
type tokenList struct {
	Tokens []tokens.Info `json:"tokens"`
}

// cutoverList is the answer of a plan's cutover, rollback and commit.
type cutoverList struct {
	Cutovers []cutoverView `json:"cutovers"`
}

// vmsRequest is the body of a plan's cutover rollback and commit: the
// plan's VMs to act on, all those with a cutover when empty.
type vmsRequest struct {
	VMs []string `json:"vms"`
}
