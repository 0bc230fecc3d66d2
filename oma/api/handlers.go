package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/queue"
	"github.com/godwit/godwit/oma/replicas"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/tokens"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/secret"
)

// health answers status and version to anyone; uptime, NATS state, the
// connected VMAs, how often an export's nbdkit died and was restarted, and
// the VMAs' API ports another process holds, only with a valid token. It
// is degraded while NATS is down or a VMA's API port is not held.
func (a *API) health(w http.ResponseWriter, r *http.Request) error {
	conn := a.ctl.Bus()
	h := healthAnswer{Status: "ok", Version: Version}
	var unheld map[string]string
	if a.cfg.VMAPorts != nil {
		unheld = a.cfg.VMAPorts.Unheld()
	}
	if !conn.Connected() || len(unheld) > 0 {
		h.Status = "degraded"
	}
	if !a.authorized(r) {
		return writeJSON(w, http.StatusOK, h)
	}
	connected, err := a.ctl.Connected()
	if err != nil {
		return err
	}
	up := int64(a.now().Sub(a.ctl.Started()).Seconds())
	h.UptimeSeconds = &up
	h.NATS = &natsHealth{Connected: conn.Connected(), JetStream: a.server == nil || a.server.JetStreamEnabled()}
	connected = nonNil(connected)
	h.ConnectedVMAs = &connected
	h.Nbdkit = &nbdkitHealth{Restarts: a.ctl.ExportRestarts()}
	if len(unheld) > 0 {
		h.VMAAPIPortsNotHeld = unheld
	}
	return writeJSON(w, http.StatusOK, h)
}

// replicationRequest is the body of POST /api/v1/replications.
type replicationRequest struct {
	SourceVM *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		Path string `json:"path"`
	} `json:"source_vm"`
	ReplicationType string `json:"replication_type"`
	VMAID           string `json:"vma_id"`
	VCenter         string `json:"vcenter"`
}

func (a *API) createReplication(w http.ResponseWriter, r *http.Request) error {
	var req replicationRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	switch {
	case req.SourceVM == nil:
		return badRequest("source_vm", "source_vm is required: {\"id\": \"vm-...\", \"name\": ..., \"path\": ...}")
	case req.SourceVM.ID == "":
		return badRequest("source_vm.id", "source_vm.id is required (the VM's managed object id, such as vm-143233)")
	case req.ReplicationType == "":
		return badRequest("replication_type", "replication_type is required: initial or incremental")
	case req.ReplicationType != events.ReplicationInitial && req.ReplicationType != events.ReplicationIncremental:
		return badRequest("replication_type", "replication_type must be initial or incremental, not %q", req.ReplicationType)
	}
	vm := events.VMRef{ID: req.SourceVM.ID, Name: req.SourceVM.Name, Path: req.SourceVM.Path}
	if err := a.checkFields(events.TypeJobCreated, field{"vm", "source_vm", vm}, optional("vma_id", req.VMAID)); err != nil {
		return err
	}
	j, err := a.ctl.CreateJob(r.Context(), jobs.CreateRequest{
		VM: vm, ReplicationType: req.ReplicationType, VMAID: req.VMAID, VCenter: req.VCenter, Token: holderOf(r).Name,
	})
	if err != nil {
		return err
	}
	v, err := a.viewWithReplica(r, j)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/replications/"+j.ID)
	return writeJSON(w, http.StatusCreated, v)
}

func (a *API) listReplications(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k := range q {
		if k != "state" && k != "vm" {
			return badRequest(k, "unknown query parameter %q (state, vm)", k)
		}
	}
	list, err := a.ctl.Jobs(q.Get("state"), q.Get("vm"))
	if err != nil {
		return err
	}
	out := make([]jobView, 0, len(list))
	for _, j := range list {
		out = append(out, a.view(r, j))
	}
	return writeJSON(w, http.StatusOK, replicationList{Replications: out})
}

func (a *API) getReplication(w http.ResponseWriter, r *http.Request) error {
	j, err := a.ctl.Job(mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	v, err := a.viewWithReplica(r, j)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

func (a *API) cancelReplication(w http.ResponseWriter, r *http.Request) error {
	j, err := a.ctl.Cancel(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, a.view(r, j))
}

// credentialsRequest holds vCenter credentials.
type credentialsRequest struct {
	VCenter  string        `json:"vcenter"`
	Username string        `json:"username"`
	Password secret.String `json:"password"`
	// CAPEM and Thumbprint come only from a registered vCenter.
	CAPEM      string `json:"-"`
	Thumbprint string `json:"-"`
}

func (c credentialsRequest) validate(vcenterRequired bool) error {
	switch {
	case vcenterRequired && strings.TrimSpace(c.VCenter) == "":
		return badRequest("vcenter", "vcenter is required (host name or address)")
	case strings.TrimSpace(c.Username) == "":
		return badRequest("username", "username is required")
	case c.Password.Empty():
		return badRequest("password", "password is required")
	}
	return nil
}

// startRequest is the body of POST /api/v1/replications/{id}/start.
type startRequest struct {
	credentialsRequest
	OnCBTReset string `json:"on_cbt_reset"`
	Verify     *bool  `json:"verify"`
	// Priority orders the job in the OMA's queue: higher first, 0 by
	// default.
	Priority int `json:"priority"`
}

func (a *API) startReplication(w http.ResponseWriter, r *http.Request) error {
	var req startRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := checkOnCBTReset(req.OnCBTReset); err != nil {
		return err
	}
	if err := checkPriority("priority", req.Priority); err != nil {
		return err
	}
	if req.Username == "" && req.Password.Empty() {
		cred, err := a.registeredCredentials(mux.Vars(r)["id"], req.VCenter)
		if err != nil {
			return err
		}
		req.credentialsRequest = cred
	}
	if err := req.validate(false); err != nil {
		return err
	}
	if err := a.checkCredentials(events.TypeReplicateCommand, req.credentialsRequest, optional("vcenter", req.VCenter)); err != nil {
		return err
	}
	j, err := a.ctl.Start(r.Context(), mux.Vars(r)["id"], vmas.VCenterCredentials(req.credentialsRequest),
		jobs.StartOptions{OnCBTReset: req.OnCBTReset, Verify: req.Verify, Priority: req.Priority})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, a.view(r, j))
}

// registeredCredentials are the credentials of the registered vCenter a
// start request without username and password means: the one named
// vcenter, else the one whose host is the job's and whose VMAs include
// the job's VMA. A 400 naming password when there is none.
func (a *API) registeredCredentials(jobID, vcenter string) (credentialsRequest, error) {
	j, err := a.ctl.Job(jobID)
	if err != nil {
		return credentialsRequest{}, err
	}
	list, err := a.ctl.VCenters().List()
	if err != nil {
		return credentialsRequest{}, err
	}
	for _, v := range list {
		mine := v.Host == j.VCenter && slices.Contains(v.VMAs, j.VMAID)
		if vcenter == v.Name && !mine {
			return credentialsRequest{}, badRequest("vcenter", "registered vCenter %q (%s, VMAs %s) is not where job %s's VM was found (%s through VMA %s)",
				v.Name, v.Host, strings.Join(v.VMAs, ", "), j.ID, j.VCenter, j.VMAID)
		}
		if mine && (vcenter == "" || vcenter == v.Name) {
			pw, err := a.ctl.VCenters().Password(v.Name)
			if err != nil {
				return credentialsRequest{}, err
			}
			return credentialsRequest{VCenter: v.Host, Username: v.Username, Password: pw, CAPEM: v.CAPEM, Thumbprint: v.Thumbprint}, nil
		}
	}
	return credentialsRequest{}, badRequest("password", "password is required: no registered vCenter of host %s lets VMA %s use it (register it with POST /api/v1/vcenters, or send username and password)", j.VCenter, j.VMAID)
}

// discoverRequest is the body of POST /api/v1/discover.
type discoverRequest struct {
	credentialsRequest
	VMAID          string `json:"vma_id"`
	Datacenter     string `json:"datacenter"`
	Filter         string `json:"filter"`
	TimeoutSeconds int    `json:"timeout_seconds"`
}

func (a *API) discover(w http.ResponseWriter, r *http.Request) error {
	var req discoverRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := req.validate(true); err != nil {
		return err
	}
	if err := a.checkCredentials(events.TypeDiscoverRequest, req.credentialsRequest, field{"vcenter", "vcenter", req.VCenter},
		optional("vma_id", req.VMAID), field{"datacenter", "datacenter", req.Datacenter}, field{"filter", "filter", req.Filter}); err != nil {
		return err
	}
	if req.TimeoutSeconds < 0 || req.TimeoutSeconds > 600 {
		return badRequest("timeout_seconds", "timeout_seconds must be between 1 and 600 (0: the default)")
	}
	res, err := a.ctl.Discover(r.Context(), inventory.DiscoverRequest{
		VMAID: req.VMAID, Cred: vmas.VCenterCredentials(req.credentialsRequest), Datacenter: req.Datacenter,
		Filter: req.Filter, Timeout: time.Duration(req.TimeoutSeconds) * time.Second,
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, discoverAnswer{VMAID: res.VMAID, VCenter: res.VCenter, VMs: nonNil(res.VMs)})
}

func (a *API) vms(w http.ResponseWriter, _ *http.Request) error {
	inv, err := a.ctl.Inventory()
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, vmList{VMs: nonNil(inv)})
}

func (a *API) vmas(w http.ResponseWriter, _ *http.Request) error {
	list, err := a.ctl.VMAs()
	if err != nil {
		return err
	}
	connected, err := a.ctl.Connected()
	if err != nil {
		return err
	}
	fw, err := a.ctl.Forwards()
	if err != nil {
		return err
	}
	running, inQueue := a.ctl.Queue().Running(), a.ctl.Queue().PerVMA()
	out := make([]vmaView, 0, len(list))
	for _, v := range list {
		on := false
		for _, id := range connected {
			on = on || id == v.ID
		}
		line, err := vmas.AuthorizedKey(fw, v)
		if err != nil && fault.KindOf(err) != fault.Unavailable { // Unavailable: its share is outside the pool, no line
			return err
		}
		vv := vmaView{VMA: v, Connected: on, AuthorizedKey: line, Running: running[v.ID], Queued: inQueue[v.ID] - running[v.ID]}
		vv.Capacity = queue.Capacity(v)
		if v.Load != nil {
			vv.BytesPerSecond = v.Load.BytesPerSecond
		}
		out = append(out, vv)
	}
	return writeJSON(w, http.StatusOK, vmaList{VMAs: out})
}

func (a *API) addVMA(w http.ResponseWriter, r *http.Request) error {
	var req vmaRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.ID == "" {
		return badRequest("id", "id is required")
	}
	cred, err := a.ctl.AddVMA(r.Context(), vmas.Registration{ID: req.ID, SSHPublicKey: req.SSHPublicKey, APIPort: req.APIPort})
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusCreated, cred)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// jobView is a job as the API shows it.
type jobView struct {
	JobID           string       `json:"job_id"`
	VMAID           string       `json:"vma_id"`
	SourceVM        events.VMRef `json:"source_vm"`
	VCenter         string       `json:"vcenter"`
	ReplicationType string       `json:"replication_type"`
	State           string       `json:"state"`
	BaseJobID       string       `json:"base_job_id,omitempty"`
	// RemovedDisks are the base's disks the VM no longer has.
	RemovedDisks []int32 `json:"removed_disks,omitempty"`
	// Verified is true when every disk of a completed job was verified.
	Verified   bool   `json:"verified"`
	ReplicaID  string `json:"replica_id,omitempty"`
	Generation int    `json:"generation"`
	// CurrentReplica is which files hold the VM's last completed copy
	// (null: none yet); only on a single job.
	CurrentReplica *replicas.Replica `json:"current_replica,omitempty"`
	events.Figures
	// BytesWritten is what the VMA wrote into the exports (for an
	// incremental job, the changed bytes), once it reported an end.
	BytesWritten int64 `json:"bytes_written"`
	// ZeroBytes is the part of BytesWritten that read as zeros (skipped,
	// or written as zeroes rather than data).
	ZeroBytes int64      `json:"zero_bytes"`
	Disks     []diskView `json:"disks"`
	LastError string     `json:"last_error,omitempty"`
	// ErrorCode is the code of the VMA's failure, such as verify_mismatch.
	ErrorCode string `json:"error_code,omitempty"`
	// ESXiHost and Datastores are where the source was, Plan the plan
	// the job syncs a VM of, Priority its place in the queue's order.
	ESXiHost   string   `json:"esxi_host,omitempty"`
	Datastores []string `json:"datastores,omitempty"`
	Plan       string   `json:"plan,omitempty"`
	Priority   int      `json:"priority"`
	// Queue says, while the job waits in the OMA's queue, its place and
	// what it waits for; DispatchedAt is when the queue sent it to its VMA.
	Queue        *queueStatus `json:"queue,omitempty"`
	DispatchedAt *time.Time   `json:"dispatched_at,omitempty"`
	// PauseRequestedAt is when a pause was asked of its VMA (until it
	// pauses), PausedAt when it paused.
	PauseRequestedAt *time.Time `json:"pause_requested_at,omitempty"`
	PausedAt         *time.Time `json:"paused_at,omitempty"`
	// RateLimit is the job's own bandwidth limit (0: none).
	RateLimit int64 `json:"rate_limit"`
	// Attempt counts the VMAs the job was given to (1, or more after
	// moves); Moves are its moves from a gone VMA to another; Snapshot is
	// the VMware snapshot its VMA copies from.
	Attempt    int             `json:"attempt"`
	Moves      []store.JobMove `json:"moves,omitempty"`
	Snapshot   string          `json:"snapshot,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
}

type diskView struct {
	Key           int32         `json:"key"`
	Label         string        `json:"label"`
	CapacityBytes int64         `json:"capacity_bytes"`
	Export        events.Export `json:"export"`
	// NBDURL and Export.Name are shown to admin tokens only.
	NBDURL             string `json:"nbd_url,omitempty"`
	VolumePath         string `json:"volume_path"`
	BytesTotal         int64  `json:"bytes_total"`
	BytesDone          int64  `json:"bytes_done"`
	RateBytesPerSecond int64  `json:"rate_bytes_per_second"`
	// Checkpoint is the offset below which the disk is durable on the
	// OMA, as its VMA last reported.
	Checkpoint       int64  `json:"checkpoint"`
	VerifyBytesTotal int64  `json:"verify_bytes_total"`
	VerifyBytesDone  int64  `json:"verify_bytes_done"`
	ChangeID         string `json:"change_id,omitempty"`
	BaseChangeID     string `json:"base_change_id,omitempty"`
	FullCopy         bool   `json:"full_copy,omitempty"`
	Verified         bool   `json:"verified"`
	Digest           string `json:"digest,omitempty"`
}

func viewOf(j store.Job) jobView {
	v := jobView{
		JobID: j.ID, VMAID: j.VMAID, SourceVM: j.VM, VCenter: j.VCenter, ReplicationType: j.ReplicationType,
		State: j.State, BaseJobID: j.BaseJobID, RemovedDisks: j.RemovedDisks, ReplicaID: j.ReplicaID, Generation: j.Generation,
		Figures: events.Figures{BytesTotal: j.BytesTotal, BytesDone: j.BytesDone,
			RateBytesPerSecond: j.RateBytesPerSecond, AverageRateBytesPerSecond: j.AverageRateBytesPerSecond},
		LastError: j.LastError, ErrorCode: j.ErrorCode, BytesWritten: j.BytesWritten, ZeroBytes: j.ZeroBytes, ESXiHost: j.ESXiHost, Datastores: j.Datastores,
		Plan: j.Plan, Priority: j.Priority, DispatchedAt: j.DispatchedAt, PauseRequestedAt: j.PauseRequestedAt, PausedAt: j.PausedAt, RateLimit: j.RateLimit,
		Attempt: max(j.Attempt, 1), Moves: j.Moves, Snapshot: j.Snapshot, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt, FinishedAt: j.FinishedAt,
	}
	if j.BytesTotal > 0 {
		v.Percent = float64(int64(1000*float64(j.BytesDone)/float64(j.BytesTotal))) / 10
	}
	if j.RateBytesPerSecond > 0 && j.BytesTotal >= j.BytesDone {
		eta := (j.BytesTotal - j.BytesDone + j.RateBytesPerSecond - 1) / j.RateBytesPerSecond
		v.ETASeconds = &eta
	}
	v.VerifyBytesTotal, v.VerifyBytesDone, v.VerifyRateBytesPerSecond = j.VerifyBytesTotal, j.VerifyBytesDone, j.VerifyRateBytesPerSecond
	if j.VerifyBytesTotal > 0 {
		v.VerifyPercent = float64(int64(1000*float64(j.VerifyBytesDone)/float64(j.VerifyBytesTotal))) / 10
	}
	if j.State == events.JobVerifying && j.VerifyRateBytesPerSecond > 0 && j.VerifyBytesTotal >= j.VerifyBytesDone {
		eta := (j.VerifyBytesTotal - j.VerifyBytesDone + j.VerifyRateBytesPerSecond - 1) / j.VerifyRateBytesPerSecond
		v.ETASeconds = &eta
	}
	v.Verified = j.State == events.JobCompleted && len(j.Disks) > 0
	for _, d := range j.Disks {
		v.Verified = v.Verified && d.Verified
		v.Disks = append(v.Disks, diskView{
			Key: d.Key, Label: d.Label, CapacityBytes: d.CapacityBytes, Export: d.Export,
			NBDURL:     fmt.Sprintf("nbd://%s:%d/%s", d.Export.Host, d.Export.Port, d.Export.Name),
			VolumePath: d.Volume,
			BytesTotal: d.BytesTotal, BytesDone: d.BytesDone, RateBytesPerSecond: d.RateBytesPerSecond, Checkpoint: d.Checkpoint,
			VerifyBytesTotal: d.VerifyBytesTotal, VerifyBytesDone: d.VerifyBytesDone,
			ChangeID: d.ChangeID, BaseChangeID: d.BaseChangeID, FullCopy: d.FullCopy, Verified: d.Verified, Digest: d.Digest,
		})
	}
	return v
}

// viewFor is viewOf(j) as the holder of r's token may see it: the NBD
// export names, which are all it takes to write into a job's volumes,
// only for an admin token. (The job's VMA learns them on the bus.)
func viewFor(r *http.Request, j store.Job) jobView {
	v := viewOf(j)
	if holderOf(r).Scope.Allows(tokens.Admin) {
		return v
	}
	for i := range v.Disks {
		v.Disks[i].Export.Name = ""
		v.Disks[i].NBDURL = ""
	}
	return v
}

// viewWithReplica is a.view(r, j) with the current replica of j's VM.
func (a *API) viewWithReplica(r *http.Request, j store.Job) (jobView, error) {
	v := a.view(r, j)
	rep, err := a.ctl.CurrentReplica(j)
	v.CurrentReplica = rep
	return v, err
}

// checkOnCBTReset checks the on_cbt_reset field of a start request.
func checkOnCBTReset(v string) error {
	switch v {
	case "", events.OnCBTResetFail, events.OnCBTResetFull:
		return nil
	}
	return badRequest("on_cbt_reset", "on_cbt_reset must be %q (the default: a disk whose base change id vCenter refuses fails the job) or %q (copy that disk whole), not %q",
		events.OnCBTResetFail, events.OnCBTResetFull, v)
}
