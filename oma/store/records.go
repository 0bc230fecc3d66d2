package store

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
)

// Job is a replication job as the OMA keeps it.
type Job struct {
	ID              string       `json:"job_id"`
	VMAID           string       `json:"vma_id"`
	VM              events.VMRef `json:"vm"`
	VCenter         string       `json:"vcenter"`
	ReplicationType string       `json:"replication_type"`
	State           string       `json:"state"`
	Disks           []JobDisk    `json:"disks"`
	// ReplicaID names the replica (VMA, vCenter, VM UUID) the job writes;
	// empty for jobs from before replicas.
	ReplicaID string `json:"replica_id,omitempty"`
	// Generation is the generation of the replica's volumes the job writes:
	// a new one for an initial job, its base's for an incremental one; 0
	// for jobs from before replicas.
	Generation int `json:"generation,omitempty"`
	// BaseJobID is the completed job an incremental job builds on.
	BaseJobID string `json:"base_job_id,omitempty"`
	// RemovedDisks are the keys of the base's disks the VM no longer has:
	// an incremental job leaves their volumes as the base wrote them.
	RemovedDisks []int32 `json:"removed_disks,omitempty"`
	BytesTotal   int64   `json:"bytes_total"`
	BytesDone    int64   `json:"bytes_done"`
	// BytesWritten is what the VMA says it wrote into the exports (its
	// status's bytes_transferred): for an incremental job, the changed
	// bytes, where BytesDone counts a disk without changes as done.
	BytesWritten int64 `json:"bytes_written,omitempty"`
	// ZeroBytes is the part of BytesWritten that read as zeros (skipped
	// or written as zeroes), as the VMA's status said.
	ZeroBytes          int64 `json:"zero_bytes,omitempty"`
	RateBytesPerSecond int64 `json:"rate_bytes_per_second"`
	// AverageRateBytesPerSecond is the rate since the copy began.
	AverageRateBytesPerSecond int64 `json:"average_rate_bytes_per_second,omitempty"`
	// CreatedBy names the API token that created the job.
	CreatedBy string `json:"created_by,omitempty"`
	// VerifyBytesTotal is what the VMA reads back from the exports to
	// check after copying, VerifyBytesDone what it has, and
	// VerifyRateBytesPerSecond its recent rate (0 without verification).
	VerifyBytesTotal         int64 `json:"verify_bytes_total,omitempty"`
	VerifyBytesDone          int64 `json:"verify_bytes_done,omitempty"`
	VerifyRateBytesPerSecond int64 `json:"verify_rate_bytes_per_second,omitempty"`
	// LastSeq is the highest progress or status sequence applied.
	LastSeq   uint64 `json:"last_seq"`
	LastError string `json:"last_error,omitempty"`
	// ErrorCode is the code of the VMA's failure (events.Failure*), when
	// it reported one.
	ErrorCode string    `json:"error_code,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// FinishedAt is set when the job reaches a final state.
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// ESXiHost and Datastores are where the source VM ran and its disks
	// were when the job was created: what the queue's limits count.
	ESXiHost   string   `json:"esxi_host,omitempty"`
	Datastores []string `json:"datastores,omitempty"`
	// Plan names the plan the job syncs a VM of; Priority orders the
	// OMA's queue (a plan's jobs have the plan's).
	Plan     string `json:"plan,omitempty"`
	Priority int    `json:"priority,omitempty"`
	// DispatchedAt is when the OMA's queue sent the job to its VMA.
	DispatchedAt *time.Time `json:"dispatched_at,omitempty"`
	// RateLimit is the job's own bandwidth limit, bytes per second; 0:
	// none.
	RateLimit int64 `json:"rate_limit,omitempty"`
	// PauseRequestedAt is when a pause was asked of the job's VMA, until
	// it pauses or resumes; PausedAt when it paused.
	PauseRequestedAt *time.Time `json:"pause_requested_at,omitempty"`
	PausedAt         *time.Time `json:"paused_at,omitempty"`
	// Attempt counts the VMAs the job was given to: 0 or 1 for the first,
	// one more each time the OMA moved it to another VMA (Moves).
	Attempt int `json:"attempt,omitempty"`
	// Snapshot is the VMware snapshot the VMA copies from, as its progress
	// said: the disks' checkpoints are offsets of what was copied from it.
	Snapshot string `json:"snapshot,omitempty"`
	// Moves are the job's moves from one VMA to another, oldest first.
	Moves []JobMove `json:"moves,omitempty"`
}

// JobMove is a job's move to another VMA whose heartbeat was missing.
type JobMove struct {
	At   time.Time `json:"at"`
	From string    `json:"from_vma"`
	To   string    `json:"to_vma"`
	// Running says the job had been dispatched: a takeover, which goes on
	// from Disks' checkpoints in Snapshot when the VM still has it.
	Running  bool                    `json:"running"`
	Reason   string                  `json:"reason"`
	Snapshot string                  `json:"snapshot,omitempty"`
	Disks    []events.DiskCheckpoint `json:"disks,omitempty"`
}

// JobDisk is one disk of a job: its export, volume and progress.
type JobDisk struct {
	Key           int32         `json:"key"`
	Label         string        `json:"label"`
	CapacityBytes int64         `json:"capacity_bytes"`
	Export        events.Export `json:"export"`
	// Volume is the path of the raw file the disk is written into.
	Volume     string `json:"volume"`
	BytesTotal int64  `json:"bytes_total"`
	BytesDone  int64  `json:"bytes_done"`
	// RateBytesPerSecond is the disk's recent copy rate.
	RateBytesPerSecond int64 `json:"rate_bytes_per_second,omitempty"`
	// Checkpoint is the last durable checkpoint the VMA reported: the
	// offset below which the disk's areas are written and flushed.
	Checkpoint int64 `json:"checkpoint,omitempty"`
	// VerifyBytesTotal and VerifyBytesDone are the disk's share of the
	// job's.
	VerifyBytesTotal int64 `json:"verify_bytes_total,omitempty"`
	VerifyBytesDone  int64 `json:"verify_bytes_done,omitempty"`
	// ChangeID is the CBT change id the disk was copied up to.
	ChangeID string `json:"change_id,omitempty"`
	// BaseChangeID is the change id an incremental copy starts from.
	BaseChangeID string `json:"base_change_id,omitempty"`
	// FullCopy says an incremental job copied this disk whole.
	FullCopy bool `json:"full_copy,omitempty"`
	// Verified says the VMA read every written area back and it matched;
	// Digest is the SHA-256 of those areas ("sha256:<hex>").
	Verified bool   `json:"verified,omitempty"`
	Digest   string `json:"digest,omitempty"`
}

// PutJob stores j, and indexes it by its replica and by its VM's id
// (JobsOf).
func PutJob(tx *bbolt.Tx, j Job) error {
	if err := put(tx, bucketJobs, j.ID, j); err != nil {
		return err
	}
	return indexJob(tx, j)
}

// indexJob adds j to the index of the jobs: under its VM's id, and under
// its replica's id when it has one.
func indexJob(tx *bbolt.Tx, j Job) error {
	if err := setRaw(tx, bucketJobsByVM, []byte(jobIndexKey("vm", j.VM.ID, j.ID)), []byte{}); err != nil {
		return err
	}
	if j.ReplicaID == "" {
		return nil
	}
	return setRaw(tx, bucketJobsByVM, []byte(jobIndexKey("replica", j.ReplicaID, j.ID)), []byte{})
}

func jobIndexKey(kind, value, jobID string) string { return kind + "\x00" + value + "\x00" + jobID }

// JobsOf returns the jobs of the replica replicaID and those whose VM has
// the id vmID (in any vCenter), each once, by id, through the index PutJob
// keeps: without reading the others.
func JobsOf(tx *bbolt.Tx, replicaID, vmID string) ([]Job, error) {
	ids := map[string]bool{}
	for _, prefix := range []string{jobIndexKey("replica", replicaID, ""), jobIndexKey("vm", vmID, "")} {
		c := tx.Bucket(bucketJobsByVM).Cursor()
		for k, _ := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, _ = c.Next() {
			ids[string(k[len(prefix):])] = true
		}
	}
	out := make([]Job, 0, len(ids))
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		j, err := GetJob(tx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

// HasJob reports whether a job with id exists.
func HasJob(tx *bbolt.Tx, id string) bool { return tx.Bucket(bucketJobs).Get([]byte(id)) != nil }

// indexJobsByVM builds the index of the jobs (by VM and by replica) when
// it is empty and there are jobs: a state database from before the index.
func indexJobsByVM(tx *bbolt.Tx) error {
	if k, _ := tx.Bucket(bucketJobsByVM).Cursor().First(); k != nil {
		return nil
	}
	jobs, err := Jobs(tx)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if err := indexJob(tx, j); err != nil {
			return err
		}
	}
	return nil
}

// GetJob reads a job; ErrNotFound when there is none.
func GetJob(tx *bbolt.Tx, id string) (Job, error) {
	var j Job
	return j, get(tx, bucketJobs, id, &j)
}

// Jobs returns every job, by id.
func Jobs(tx *bbolt.Tx) ([]Job, error) {
	var out []Job
	return out, each(tx, bucketJobs, func(j Job) error { out = append(out, j); return nil })
}

// Lease is the NBD export allocation of a job: a port and one nbdkit.
type Lease struct {
	JobID string `json:"job_id"`
	Port  int    `json:"port"`
	// Dir is the directory nbdkit serves: one entry per export.
	Dir     string   `json:"dir"`
	Exports []string `json:"exports"`
}

// PutLease stores l.
func PutLease(tx *bbolt.Tx, l Lease) error { return put(tx, bucketLeases, l.JobID, l) }

// GetLease returns the lease of job id; ErrNotFound when it has none.
func GetLease(tx *bbolt.Tx, id string) (Lease, error) {
	var l Lease
	return l, get(tx, bucketLeases, id, &l)
}

// DeleteLease removes the lease of a job.
func DeleteLease(tx *bbolt.Tx, jobID string) error {
	return delRaw(tx, bucketLeases, []byte(jobID))
}

// Leases returns every lease.
func Leases(tx *bbolt.Tx) ([]Lease, error) {
	var out []Lease
	return out, each(tx, bucketLeases, func(l Lease) error { out = append(out, l); return nil })
}

// Inventory is the last discovery result from one VMA for one vCenter.
type Inventory struct {
	VMAID    string                `json:"vma_id"`
	Result   events.DiscoverResult `json:"result"`
	StoredAt time.Time             `json:"stored_at"`
}

func inventoryKey(vmaID, vcenter string) string { return vmaID + "\x00" + vcenter }

// PutInventory stores the inventory of one VMA and vCenter, replacing the
// one before.
func PutInventory(tx *bbolt.Tx, inv Inventory) error {
	return put(tx, bucketInventory, inventoryKey(inv.VMAID, inv.Result.VCenter.Host), inv)
}

// GetInventory reads the inventory of one VMA and vCenter.
func GetInventory(tx *bbolt.Tx, vmaID, vcenter string) (Inventory, error) {
	var inv Inventory
	return inv, get(tx, bucketInventory, inventoryKey(vmaID, vcenter), &inv)
}

// Inventories returns every stored inventory.
func Inventories(tx *bbolt.Tx) ([]Inventory, error) {
	var out []Inventory
	return out, each(tx, bucketInventory, func(i Inventory) error { out = append(out, i); return nil })
}

// VMA is a registered VMA.
type VMA struct {
	ID string `json:"id"`
	// NKey is the public NKey the VMA authenticates to NATS with.
	NKey string `json:"nkey"`
	// PublicKey is the VMA's X25519 key (standard base64) from its heartbeat.
	PublicKey    string    `json:"public_key,omitempty"`
	Version      string    `json:"version,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
	// SSHPublicKey is the key the VMA opens its SSH connection to the OMA
	// with ("ssh-ed25519 AAAA..."), empty when none was given.
	SSHPublicKey string `json:"ssh_public_key"`
	// APIPort is the OMA loopback port the VMA's API is forwarded to
	// (9081, 9082...); 0 for VMAs registered before ports were assigned.
	APIPort int `json:"api_port"`
	// NBDPorts is the VMA's share of the NBD port pool: its jobs' exports
	// are served on these ports only, and its SSH key may open only them.
	// nil for VMAs registered before shares: they keep the whole pool.
	NBDPorts *Ports     `json:"nbd_ports,omitempty"`
	LastSeen *time.Time `json:"last_seen,omitempty"`
	// RateLimit bounds the bytes per second of all its jobs together; 0:
	// none. RateWindows replace it at their times of day.
	RateLimit   int64        `json:"rate_limit,omitempty"`
	RateWindows []RateWindow `json:"rate_windows,omitempty"`
	// Load is what the VMA said it was doing in its last heartbeat:
	// capacity, running, queued, bytes per second.
	Load *events.VMALoad `json:"load,omitempty"`
	// Tunnel sums up the outages of its SSH connection the VMA reported;
	// nil until the first.
	Tunnel *TunnelOutages `json:"tunnel,omitempty"`
}

// Ports is a range of ports, both ends included.
type Ports struct {
	First int `json:"first"`
	Last  int `json:"last"`
}

// String returns "first-last".
func (p Ports) String() string { return fmt.Sprintf("%d-%d", p.First, p.Last) }

// TunnelOutages sums up the outages of a VMA's SSH connection.
type TunnelOutages struct {
	Count       int     `json:"outages"`
	DownSeconds float64 `json:"down_seconds"` // all outages together
	// Last is the latest outage reported.
	Last events.TunnelOutage `json:"last"`
}

// PutVMA stores v.
func PutVMA(tx *bbolt.Tx, v VMA) error { return put(tx, bucketVMAs, v.ID, v) }

// GetVMA reads a VMA; ErrNotFound when it is not registered.
func GetVMA(tx *bbolt.Tx, id string) (VMA, error) {
	var v VMA
	return v, get(tx, bucketVMAs, id, &v)
}

// DeleteVMA forgets a VMA; deleting one that is not registered does nothing.
func DeleteVMA(tx *bbolt.Tx, id string) error { return delRaw(tx, bucketVMAs, []byte(id)) }

// VMAs returns every registered VMA.
func VMAs(tx *bbolt.Tx) ([]VMA, error) {
	var out []VMA
	return out, each(tx, bucketVMAs, func(v VMA) error { out = append(out, v); return nil })
}

// Token is an API token, kept as the SHA-256 of its secret.
type Token struct {
	Name string `json:"name"`
	Hash []byte `json:"hash"`
	// Scope is what the token may do: read, operate or admin; empty for
	// tokens from before scopes (admin: tokens.MigrateScopes).
	Scope     string    `json:"scope,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// LastUsedAt is when the token last authenticated a request, recorded
	// at most about once a minute (nil: never).
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// PutToken stores t under its name.
func PutToken(tx *bbolt.Tx, t Token) error { return put(tx, bucketTokens, t.Name, t) }

// Tokens returns every token.
func Tokens(tx *bbolt.Tx) ([]Token, error) {
	var out []Token
	return out, each(tx, bucketTokens, func(t Token) error { out = append(out, t); return nil })
}

// GetToken reads a token; ErrNotFound when there is none.
func GetToken(tx *bbolt.Tx, name string) (Token, error) {
	var t Token
	return t, get(tx, bucketTokens, name, &t)
}

// DeleteToken removes a token; ErrNotFound when there is none.
func DeleteToken(tx *bbolt.Tx, name string) error {
	if !HasToken(tx, name) {
		return fmt.Errorf("%s %q: %w", bucketTokens, name, ErrNotFound)
	}
	return delRaw(tx, bucketTokens, []byte(name))
}

// HasToken reports whether a token named name exists.
func HasToken(tx *bbolt.Tx, name string) bool {
	return tx.Bucket(bucketTokens).Get([]byte(name)) != nil
}

// VCenter is a registered vCenter. Its password is kept only sealed under
// the OMA's at-rest key (package oma/atrest), never in the clear.
type VCenter struct {
	Name     string `json:"name"`
	Host     string `json:"host"`
	Username string `json:"username"`
	// PasswordSealed is the password as atrest.Key.Seal returned it.
	PasswordSealed []byte   `json:"password_sealed"`
	Datacenters    []string `json:"datacenters,omitempty"`
	// CAPEM or Thumbprint pin the vCenter's certificate; neither: the
	// VMA's trust store.
	CAPEM      string `json:"ca_pem,omitempty"`
	Thumbprint string `json:"thumbprint,omitempty"`
	// VMAs may use it: those that proved access, unless set.
	VMAs []string `json:"vmas,omitempty"`
	// Limits bound the jobs that read from it at once; a zero field is
	// the OMA queue's default.
	Limits    SourceLimits `json:"limits"`
	CreatedAt time.Time    `json:"created_at"`
	UpdatedAt time.Time    `json:"updated_at"`
	// PasswordAt is when the password was last set (created or rotated).
	PasswordAt time.Time `json:"password_at"`
}

// SourceLimits bound how many jobs read from one source at once: from the
// whole vCenter, from one of its ESXi hosts, from one of its datastores. A
// zero field is not set.
type SourceLimits struct {
	VCenter   int `json:"vcenter,omitempty"`
	ESXiHost  int `json:"esxi_host,omitempty"`
	Datastore int `json:"datastore,omitempty"`
}

// PutVCenter stores v under its name.
func PutVCenter(tx *bbolt.Tx, v VCenter) error { return put(tx, bucketVCenters, v.Name, v) }

// GetVCenter reads a vCenter; ErrNotFound when there is none.
func GetVCenter(tx *bbolt.Tx, name string) (VCenter, error) {
	var v VCenter
	return v, get(tx, bucketVCenters, name, &v)
}

// VCenters returns every registered vCenter, by name.
func VCenters(tx *bbolt.Tx) ([]VCenter, error) {
	var out []VCenter
	return out, each(tx, bucketVCenters, func(v VCenter) error { out = append(out, v); return nil })
}

// DeleteVCenter removes a vCenter; ErrNotFound when there is none.
func DeleteVCenter(tx *bbolt.Tx, name string) error {
	if tx.Bucket(bucketVCenters).Get([]byte(name)) == nil {
		return fmt.Errorf("%s %q: %w", bucketVCenters, name, ErrNotFound)
	}
	return delRaw(tx, bucketVCenters, []byte(name))
}
