package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/replicas"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vmas"
)

// CreateRequest asks for a replication job.
type CreateRequest struct {
	// VM names the source VM; ID is required and must be in the inventory.
	VM events.VMRef
	// ReplicationType is initial or incremental.
	ReplicationType string
	// VMAID picks the VMA when several discovered a VM with this id;
	// required then.
	VMAID string
	// VCenter picks the vCenter when one VMA found a VM with this id in
	// several; required then.
	VCenter string
	// Token names the API token that asks: it may have at most
	// Config.MaxPendingJobs pending jobs.
	Token string
	// StartNow says the caller starts the job as soon as it is created (a
	// plan does): it is not counted against Token's pending jobs, which
	// spares reading every job.
	StartNow bool
	// Located, when set, is the VM as the caller found it in the
	// inventory, in place of a lookup by VM, VMAID and VCenter.
	Located *inventory.Located
}

// CreateJob creates a job for a VM of the inventory: it allocates a port,
// prepares one sparse volume per disk, starts nbdkit serving them, and
// commits the job, its lease and a job-created event together. An initial
// job writes a new generation of the replica's volumes, so the current
// replica stays whole until the job completes; an incremental job writes
// into the current replica, whose change ids it starts from.
func (m *Manager) CreateJob(ctx context.Context, req CreateRequest) (store.Job, error) {
	if req.ReplicationType != events.ReplicationInitial && req.ReplicationType != events.ReplicationIncremental {
		return store.Job{}, fault.Errorf(fault.Invalid, "replication_type", "must be %q or %q, not %q", events.ReplicationInitial, events.ReplicationIncremental, req.ReplicationType)
	}
	job, lease, vols, err := m.planJob(req)
	if err != nil {
		return store.Job{}, err
	}
	defer m.unreserve(job.ID)
	// Unlocked from here: other jobs are created while this nbdkit starts.
	id, port := job.ID, lease.Port
	if err := exports.Prepare(lease.Dir, vols); err != nil {
		return store.Job{}, err
	}
	if err := m.exports.Serve(ctx, id, port, lease.Dir); err != nil {
		_ = os.RemoveAll(lease.Dir) // links only: the volumes stay
		return store.Job{}, err
	}
	created, err := m.newEvent(&events.JobCreated{
		JobID: id, VMAID: job.VMAID, VM: job.VM, ReplicationType: job.ReplicationType,
		State: job.State, Disks: jobDisks(job), CreatedAt: job.CreatedAt,
	})
	if err != nil {
		m.exports.Stop(id)
		return store.Job{}, err
	}
	err = m.store.Update(func(tx *bbolt.Tx) error {
		if err := store.PutJob(tx, job); err != nil {
			return err
		}
		if err := store.PutLease(tx, lease); err != nil {
			return err
		}
		return store.Enqueue(tx, created)
	})
	if err != nil {
		m.exports.Stop(id)
		return store.Job{}, fmt.Errorf("store job %s: %w", id, err)
	}
	m.log.Info("job created", "job", id, "vm", job.VM.ID, "vma", job.VMAID, "port", port, "type", job.ReplicationType)
	m.outbox.Kick()
	return job, nil
}

// reservation is what a job being created holds until it is stored: its
// replica (no second active job), its id and its port.
type reservation struct {
	replica string
	port    int
	token   string
}

// unreserve drops the reservation of job id, stored or abandoned.
func (m *Manager) unreserve(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.creating, id)
}

// planJob decides a new job under m.mu, from the store and the jobs being
// created, and reserves its replica, id and port until unreserve.
func (m *Manager) planJob(req CreateRequest) (store.Job, store.Lease, []exports.Volume, error) {
	m.mu.Lock()
	defer m.mu.Unlock()

	var (
		loc     inventory.Located
		rid     string
		base    *store.Job // the current replica's job
		lastGen int        // the highest generation any job of the replica wrote
		leased  = map[int]bool{}
		taken   = map[string]bool{}
		pending int // the token's pending jobs
		vma     store.VMA
		now     = m.cfg.Now().UTC()
		id      string
	)
	err := m.store.View(func(tx *bbolt.Tx) error {
		var err error
		if req.Located != nil {
			loc = *req.Located
		} else if loc, err = m.locate(tx, req); err != nil {
			return err
		}
		rid = replicas.ID(loc.VMAID, loc.VCenter, loc.VM)
		// The VMA's share of the pool; one that is not registered (its
		// inventory stayed) has none, and so the whole pool, as the VMAs
		// registered before shares.
		if vma, err = store.GetVMA(tx, loc.VMAID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		vma.ID = loc.VMAID
		if !req.StartNow {
			if pending, err = pendingOf(tx, req.Token); err != nil {
				return err
			}
		}
		// The replica's jobs, which the store indexes by replica (and, for
		// jobs from before replica ids, by VM id).
		mine, err := store.JobsOf(tx, rid, loc.VM.ID)
		if err != nil {
			return err
		}
		for _, j := range mine {
			taken[j.ID] = true
			if !replicas.Belongs(j, rid, loc.VMAID, loc.VCenter, loc.VM.ID) {
				continue
			}
			if Active(j.State) {
				return fault.Errorf(fault.Conflict, "source_vm.id", "VM %s already has an active job %s (%s): cancel it or wait for it to end", req.VM.ID, j.ID, j.State)
			}
			lastGen = max(lastGen, j.Generation)
			if j.State == events.JobCompleted && (base == nil || replicas.Newer(j, *base)) {
				base = &j
			}
		}
		leases, err := store.Leases(tx)
		if err != nil {
			return err
		}
		for _, l := range leases {
			leased[l.Port] = true
		}
		id = jobID(loc.VM.ID, now, func(id string) bool {
			_, creating := m.creating[id]
			return taken[id] || creating || store.HasJob(tx, id)
		})
		return nil
	})
	if err != nil {
		return store.Job{}, store.Lease{}, nil, err
	}
	for id, r := range m.creating {
		if r.replica == rid {
			return store.Job{}, store.Lease{}, nil, fault.Errorf(fault.Conflict, "source_vm.id", "VM %s already has a job %s being created: wait for it", req.VM.ID, id)
		}
		leased[r.port] = true
		if r.token == req.Token {
			pending++
		}
	}
	if !req.StartNow && pending >= m.cfg.MaxPendingJobs {
		return store.Job{}, store.Lease{}, nil, fault.Errorf(fault.Limit, "", "token %q has %d pending jobs, the most one token may have (-max-pending-jobs %d): start or cancel one first (pending jobs expire after %s)",
			req.Token, pending, m.cfg.MaxPendingJobs, m.cfg.PendingJobTTL)
	}
	incremental := req.ReplicationType == events.ReplicationIncremental
	if incremental && base == nil {
		return store.Job{}, store.Lease{}, nil, fault.Errorf(fault.Conflict, "replication_type", "incremental needs a completed earlier job of VM %s; run an initial replication first", req.VM.ID)
	}
	gen := lastGen + 1
	if incremental {
		gen = base.Generation
	}
	if len(loc.VM.Disks) == 0 {
		return store.Job{}, store.Lease{}, nil, fault.Errorf(fault.Conflict, "source_vm.id", "VM %s has no disks in the inventory", req.VM.ID)
	}

	if err := subject.ValidID(id); err != nil {
		return store.Job{}, store.Lease{}, nil, fault.Errorf(fault.Invalid, "source_vm.id", "VM id %q cannot make a job id: %v", loc.VM.ID, err)
	}
	first, last := m.exports.Pool()
	ports, err := vmas.NBDPorts(vma, store.Ports{First: first, Last: last})
	if err != nil {
		return store.Job{}, store.Lease{}, nil, err
	}
	port, err := m.exports.PickIn(ports.First, ports.Last, leased)
	if errors.Is(err, exports.ErrExhausted) && vma.NBDPorts == nil {
		return store.Job{}, store.Lease{}, nil, &fault.Error{Kind: fault.Unavailable, Msg: fmt.Sprintf("every NBD port of the pool %s is in use by an active job: wait for one to end or widen the pool", ports), Err: err}
	}
	if errors.Is(err, exports.ErrExhausted) {
		return store.Job{}, store.Lease{}, nil, &fault.Error{Kind: fault.Unavailable, Field: "vma_id", Msg: fmt.Sprintf("every NBD port of VMA %s's share %s of the pool (-nbd-ports-per-vma %d) is in use by an active job: wait for one to end or cancel one", vma.ID, ports, ports.Last-ports.First+1), Err: err}
	}
	if err != nil {
		return store.Job{}, store.Lease{}, nil, err
	}

	job := store.Job{
		ID: id, VMAID: loc.VMAID, VCenter: loc.VCenter, ReplicaID: rid, Generation: gen,
		VM:              events.VMRef{ID: loc.VM.ID, Name: loc.VM.Name, Path: loc.VM.Path, InstanceUUID: loc.VM.InstanceUUID},
		ReplicationType: req.ReplicationType, State: events.JobPending, CreatedBy: req.Token,
		CreatedAt: now, UpdatedAt: now, ESXiHost: loc.VM.ESXiHost,
	}
	for _, d := range loc.VM.Disks {
		if d.Datastore != "" && !slices.Contains(job.Datastores, d.Datastore) {
			job.Datastores = append(job.Datastores, d.Datastore)
		}
	}
	lease := store.Lease{JobID: id, Port: port, Dir: m.exportDir(id)}
	var vols []exports.Volume
	for _, d := range loc.VM.Disks {
		name, err := exports.Name(fmt.Sprintf("%s-disk-%d", id, d.Key))
		if err != nil {
			return store.Job{}, store.Lease{}, nil, err
		}
		jd := store.JobDisk{
			Key: d.Key, Label: d.Label, CapacityBytes: d.CapacityBytes, BytesTotal: d.CapacityBytes,
			Export: events.Export{Host: m.cfg.ExportHost, Port: port, Name: name},
			Volume: replicas.VolumePath(m.cfg.DataDir, rid, d.Key, gen),
		}
		fresh := !incremental
		if incremental {
			// A disk of the base writes over its volume from its change id
			// (none: the VMA copies it whole over the old copy); a disk new
			// since the base gets a fresh volume and a full copy.
			if bd, ok := baseDisk(*base, d.Key); ok && bd.Volume != "" {
				jd.BaseChangeID, jd.Volume = bd.ChangeID, bd.Volume
			} else {
				fresh = true
			}
			job.BaseJobID = base.ID
		}
		job.Disks = append(job.Disks, jd)
		job.BytesTotal += d.CapacityBytes
		lease.Exports = append(lease.Exports, name)
		vols = append(vols, exports.Volume{Name: name, Path: jd.Volume, Capacity: d.CapacityBytes, Fresh: fresh})
	}
	if incremental {
		for _, bd := range base.Disks {
			if _, ok := baseDisk(job, bd.Key); !ok {
				job.RemovedDisks = append(job.RemovedDisks, bd.Key)
			}
		}
	}
	m.creating[id] = reservation{replica: rid, port: port, token: req.Token}
	return job, lease, vols, nil
}

// jobID names a VM's job created at now: repl-<vm>-<unix seconds>, with
// -2, -3... added when jobs of the VM were created in the same second.
func jobID(vmID string, now time.Time, taken func(string) bool) string {
	id := fmt.Sprintf("repl-%s-%d", vmID, now.Unix())
	for n := 2; taken(id); n++ {
		id = fmt.Sprintf("repl-%s-%d-%d", vmID, now.Unix(), n)
	}
	return id
}

// pendingOf counts the pending jobs created by token.
func pendingOf(tx *bbolt.Tx, token string) (int, error) {
	n := 0
	all, err := store.Jobs(tx)
	for _, j := range all {
		if j.State == events.JobPending && j.CreatedBy == token {
			n++
		}
	}
	return n, err
}

// baseDisk returns disk key of job j.
func baseDisk(j store.Job, key int32) (store.JobDisk, bool) {
	for _, d := range j.Disks {
		if d.Key == key {
			return d, true
		}
	}
	return store.JobDisk{}, false
}

func jobDisks(j store.Job) []events.JobDisk {
	out := make([]events.JobDisk, len(j.Disks))
	for i, d := range j.Disks {
		// The export name stays out: it is the export's only secret, and
		// the JOBS stream is readable by every observer.
		out[i] = events.JobDisk{Key: d.Key, CapacityBytes: d.CapacityBytes, Export: events.Export{Host: d.Export.Host, Port: d.Export.Port}}
	}
	return out
}

// Job returns a job by id.
func (m *Manager) Job(id string) (store.Job, error) {
	var j store.Job
	err := m.store.View(func(tx *bbolt.Tx) error {
		var err error
		j, err = store.GetJob(tx, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return j, fault.Errorf(fault.NotFound, "id", "no replication job %q", id)
	}
	return j, err
}

// Jobs returns the jobs in state (any when "") of VM vmID (any when ""),
// newest first.
func (m *Manager) Jobs(state, vmID string) ([]store.Job, error) {
	if state != "" && !Valid(state) {
		return nil, fault.Errorf(fault.Invalid, "state", "unknown job state %q (one of %s)", state, strings.Join(events.JobStates(), ", "))
	}
	var out []store.Job
	err := m.store.View(func(tx *bbolt.Tx) error {
		all, err := store.Jobs(tx)
		for _, j := range all {
			if (state == "" || j.State == state) && (vmID == "" || j.VM.ID == vmID) {
				out = append(out, j)
			}
		}
		return err
	})
	slices.SortFunc(out, func(a, b store.Job) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, err
}

// transition moves j to state "to" inside tx and queues the lifecycle
// event. It does nothing (false) when the move is not allowed.
func (m *Manager) transition(tx *bbolt.Tx, j *store.Job, to, why string) (bool, error) {
	if !CanMove(j.State, to) {
		return false, nil
	}
	now := m.cfg.Now().UTC()
	ev, err := m.newEvent(&events.JobStateChanged{JobID: j.ID, VMAID: j.VMAID, From: j.State, To: to, Error: why, ChangedAt: now})
	if err != nil {
		return false, err
	}
	j.State, j.UpdatedAt = to, now
	if why != "" {
		j.LastError = why
	}
	if Final(to) {
		j.FinishedAt = &now
		if err := m.cfg.Queue.Remove(tx, j.ID); err != nil {
			return false, err
		}
	}
	j.PauseRequestedAt = nil
	if to == events.JobPaused {
		j.PausedAt = &now
		if err := m.cfg.Queue.Park(tx, j.ID); err != nil {
			return false, err
		}
	}
	return true, store.Enqueue(tx, ev)
}

// StartOptions are how a job runs.
type StartOptions struct {
	// OnCBTReset is what an incremental job does with a disk whose base
	// change id vCenter refuses: events.OnCBTResetFail ("" too) or
	// events.OnCBTResetFull.
	OnCBTReset string
	// Verify, when false, skips reading the written areas back; nil
	// verifies.
	Verify *bool
	// Plan names the plan the job syncs a VM of, "" for none: the
	// queue counts the job against the plan's limits and orders it by the
	// plan's priority.
	Plan string
	// Priority orders a job of no plan in the queue: higher first.
	Priority int
}

// Start queues a pending job: it moves the job to queued and puts it in the
// OMA's queue with the replicate command for its VMA (the password sealed
// to the VMA's key, and opts) in one transaction. The queue writes the
// command to the outbox when a slot is free under every limit, which
// publishes it with its event id as Nats-Msg-Id, now or, when the bus is
// down, as soon as it is back: a crash can neither lose it nor send it
// twice.
func (m *Manager) Start(ctx context.Context, id string, cred vmas.VCenterCredentials, opts StartOptions) (store.Job, error) {
	j, err := m.Job(id)
	if err != nil {
		return j, err
	}
	if j.State != events.JobPending {
		return j, fault.Errorf(fault.Conflict, "id", "job %s is %s: only a pending job can be started", id, j.State)
	}
	if cred.VCenter == "" {
		cred.VCenter = j.VCenter
	}
	sealed, err := m.vmas.Seal(j.VMAID, cred.Password)
	if err != nil {
		return j, err
	}
	cmd := events.ReplicateCommand{
		JobID: j.ID, VMAID: j.VMAID, VCenter: cred.VCenter, Username: cred.Username, Password: sealed,
		VMPaths: []string{j.VM.Path}, OMAURL: m.cfg.APIURL, ReplicationType: j.ReplicationType,
		OnCBTReset: opts.OnCBTReset, Verify: opts.Verify, CAPEM: cred.CAPEM, Thumbprint: cred.Thumbprint,
	}
	if _, err := m.newEvent(&cmd); err != nil { // checks that it makes an event
		return j, err
	}
	kept, err := m.keepPassword(id, cred.Password)
	if err != nil {
		return j, err
	}
	err = m.store.Update(func(tx *bbolt.Tx) error {
		cur, err := store.GetJob(tx, id)
		if err != nil {
			return err
		}
		if cur.State != events.JobPending { // started or cancelled meanwhile
			return fault.Errorf(fault.Conflict, "id", "job %s is %s: only a pending job can be started", id, cur.State)
		}
		if _, err := m.transition(tx, &cur, events.JobQueued, ""); err != nil {
			return err
		}
		cur.Plan, cur.Priority = opts.Plan, opts.Priority
		err = m.cfg.Queue.Enqueue(tx, store.QueueEntry{
			JobID: cur.ID, VMAID: cur.VMAID, ReplicationType: cur.ReplicationType, Plan: opts.Plan, Priority: opts.Priority, RateLimit: cur.RateLimit,
			VCenter: cur.VCenter, ESXiHost: cur.ESXiHost, Datastores: cur.Datastores, QueuedAt: cur.UpdatedAt, Command: cmd,
			PasswordAtRest: kept,
		})
		if err != nil {
			return err
		}
		j = cur
		return store.PutJob(tx, cur)
	})
	if err != nil {
		return j, err
	}
	m.outbox.PublishSoon(ctx)
	return j, nil
}

// Cancel cancels an active job: it moves the job to cancelled, out of the
// queue, and, unless it waited in the queue, writes the cancel for its VMA
// to the outbox, in one transaction; then it releases the job's export: at
// once when the job was pending or waiting in the queue, else when its VMA
// reports that it stopped, or after Config.CancelGrace. Cancelling a
// cancelled job is a no-op.
func (m *Manager) Cancel(ctx context.Context, id string) (store.Job, error) {
	j, err := m.Job(id)
	if err != nil {
		return j, err
	}
	cancel, err := m.newEvent(&events.ReplicateCancel{JobID: j.ID, VMAID: j.VMAID, Reason: "cancelled through the OMA API"})
	if err != nil {
		return j, err
	}
	moved, started, waiting := false, false, false
	err = m.store.Update(func(tx *bbolt.Tx) error {
		cur, err := store.GetJob(tx, id)
		if err != nil {
			return err
		}
		j = cur
		if cur.State == events.JobCancelled {
			return nil
		}
		// A job waiting in the queue never reached its VMA: it ends here.
		// Any other may run on its VMA (a pending one too, started by
		// the VMA's own /replicate), which is told to cancel it.
		_, qerr := store.GetQueued(tx, id)
		if qerr != nil && !errors.Is(qerr, store.ErrNotFound) {
			return qerr
		}
		waiting = qerr == nil
		started = cur.State != events.JobPending && !waiting
		if Final(cur.State) {
			return fault.Errorf(fault.Conflict, "id", "job %s is %s: only an active job can be cancelled", id, cur.State)
		}
		if moved, err = m.transition(tx, &cur, events.JobCancelled, "cancelled through the OMA API"); err != nil || !moved {
			return err
		}
		if !waiting {
			if err := store.Enqueue(tx, cancel); err != nil {
				return err
			}
		}
		j = cur
		return store.PutJob(tx, cur)
	})
	if err != nil || !moved {
		return j, err
	}
	if started {
		m.releaseLater(id) // the VMA may be writing: let it stop on the cancel
	} else {
		m.release(id)
	}
	m.outbox.PublishSoon(ctx)
	return j, nil
}

// CurrentReplica returns the current replica of the source VM of job j:
// which files hold the last completed copy. It is nil when no job of that
// replica has completed.
func (m *Manager) CurrentReplica(j store.Job) (*replicas.Replica, error) {
	return replicas.CurrentOf(m.store, j)
}
