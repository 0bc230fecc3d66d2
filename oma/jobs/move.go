package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/secret"
)

// DefaultTakeoverGrace is Config.TakeoverGrace's default.
const DefaultTakeoverGrace = 2 * time.Minute

// atRestContext binds a job's password sealed at rest to the job.
func atRestContext(jobID string) string { return "job " + jobID + " password" }

// movedError refuses a VMA's request about a job the OMA gave to another
// VMA: the asker must let the job go, and leave its snapshot alone (the
// job goes on from it elsewhere).
type movedError struct {
	job, to string
	attempt int
}

func (e *movedError) Error() string {
	return fmt.Sprintf("job %s was moved to VMA %s (attempt %d): this VMA's attempt is over", e.job, e.to, e.attempt)
}

// RemoteCode implements bus.Coded.
func (e *movedError) RemoteCode() string { return bus.CodeMoved }

// movedFrom returns the error for a request from vmaID about job j when j
// moved away from vmaID; nil when vmaID never held j.
func movedFrom(j store.Job, vmaID string) error {
	for _, mv := range j.Moves {
		if mv.From == vmaID {
			return &movedError{job: j.ID, to: j.VMAID, attempt: max(j.Attempt, 2)}
		}
	}
	return nil
}

// Move gives active job id, whose VMA from stopped beating, to VMA to,
// saying why. The job gets a new port in to's share of the pool and new
// export names (the old nbdkit is stopped first: from's attempt can write
// no more), its command is sealed to to, and it waits in the queue again,
// at its old place. A job that ran (Running: a takeover) goes on from the
// checkpoints the OMA recorded, in the snapshot they belong to, when the
// VM still has it. A Conflict when the job moved on meanwhile.
func (m *Manager) Move(ctx context.Context, id, from, to, reason string) (store.Job, error) {
	if m.cfg.AtRest == nil {
		return store.Job{}, fault.Errorf(fault.Unavailable, "", "job %s cannot move: the OMA has no at-rest key to keep passwords with", id)
	}
	m.mu.Lock()
	var (
		j      store.Job
		lease  store.Lease
		entry  store.QueueEntry
		target store.VMA
		leased = map[int]bool{}
	)
	err := m.store.View(func(tx *bbolt.Tx) error {
		var err error
		if j, err = store.GetJob(tx, id); err != nil {
			return err
		}
		if j.VMAID != from || !Active(j.State) || j.State == events.JobPaused {
			return fault.Errorf(fault.Conflict, "id", "job %s is %s on VMA %s: not moved", id, j.State, j.VMAID)
		}
		if entry, err = store.GetQueued(tx, id); errors.Is(err, store.ErrNotFound) {
			entry, err = queueEntry(tx, id)
		}
		if err != nil {
			return err
		}
		if entry.Command.JobID == "" || entry.PasswordAtRest == nil {
			return fault.Errorf(fault.Conflict, "id", "job %s cannot move: the OMA keeps no credentials for it (started by the VMA's own /replicate, or before this OMA kept them)", id)
		}
		if lease, err = store.GetLease(tx, id); err != nil {
			return fmt.Errorf("lease of job %s: %w", id, err)
		}
		if target, err = store.GetVMA(tx, to); err != nil {
			return fmt.Errorf("VMA %s: %w", to, err)
		}
		leases, err := store.Leases(tx)
		for _, l := range leases {
			leased[l.Port] = true
		}
		return err
	})
	if err != nil {
		m.mu.Unlock()
		return j, err
	}
	if r, ok := m.creating[id]; ok {
		m.mu.Unlock()
		return j, fault.Errorf(fault.Conflict, "id", "job %s is being moved already (port %d)", id, r.port)
	}
	for _, r := range m.creating {
		leased[r.port] = true
	}
	first, last := m.exports.Pool()
	ports, err := vmas.NBDPorts(target, store.Ports{First: first, Last: last})
	var port int
	if err == nil {
		port, err = m.exports.PickIn(ports.First, ports.Last, leased)
	}
	if err != nil {
		m.mu.Unlock()
		return j, fmt.Errorf("a port for job %s on VMA %s: %w", id, to, err)
	}
	m.creating[id] = reservation{replica: j.ReplicaID, port: port}
	m.mu.Unlock()
	defer m.unreserve(id)

	password, err := m.cfg.AtRest.Open(entry.PasswordAtRest, atRestContext(id))
	if err != nil {
		return j, fmt.Errorf("open job %s's password: %w", id, err)
	}
	sealed, err := m.vmas.Seal(to, password)
	if err != nil {
		return j, fmt.Errorf("seal job %s's password to VMA %s: %w", id, to, err)
	}

	// The new attempt's exports: new names, a directory of its own (the
	// old lease stays whole until the move commits), the same volumes.
	attempt := max(j.Attempt, 1) + 1
	newLease := store.Lease{JobID: id, Port: port, Dir: fmt.Sprintf("%s-a%d", m.exportDir(id), attempt)}
	disks := append([]store.JobDisk(nil), j.Disks...)
	var vols []exports.Volume
	for i, d := range disks {
		name, err := exports.Name(fmt.Sprintf("%s-disk-%d", id, d.Key))
		if err != nil {
			return j, err
		}
		disks[i].Export = events.Export{Host: m.cfg.ExportHost, Port: port, Name: name}
		newLease.Exports = append(newLease.Exports, name)
		vols = append(vols, exports.Volume{Name: name, Path: d.Volume, Capacity: d.CapacityBytes})
	}
	if err := exports.Prepare(newLease.Dir, vols); err != nil {
		return j, err
	}
	// Revoke the old attempt: its nbdkit no longer serves its names.
	m.exports.Stop(id)
	if err := m.exports.Serve(ctx, id, port, newLease.Dir); err != nil {
		if err2 := m.serveAgain(ctx, lease); err2 != nil {
			m.log.Error("job lost its exports in a failed move", "job", id, "err", err2)
		}
		return j, err
	}

	now := m.cfg.Now().UTC()
	running := entry.DispatchedAt != nil
	mv := store.JobMove{At: now, From: from, To: to, Running: running, Reason: reason}
	if running && j.Snapshot != "" {
		mv.Snapshot = j.Snapshot
		for _, d := range j.Disks {
			mv.Disks = append(mv.Disks, events.DiskCheckpoint{Key: d.Key, Checkpoint: d.Checkpoint, PlannedBytes: d.BytesTotal})
		}
	}
	err = m.store.Update(func(tx *bbolt.Tx) error {
		cur, err := store.GetJob(tx, id)
		if err != nil {
			return err
		}
		if cur.VMAID != from || !Active(cur.State) || cur.State == events.JobPaused {
			return fault.Errorf(fault.Conflict, "id", "job %s is %s on VMA %s: not moved", id, cur.State, cur.VMAID)
		}
		ev, err := m.newEvent(&events.QueueMoved{JobID: id, VMAID: to, FromVMA: from, Plan: cur.Plan, Attempt: attempt,
			Running: running, Reason: reason, Snapshot: mv.Snapshot, Disks: mv.Disks, MovedAt: now})
		if err != nil {
			return err
		}
		if err := store.Enqueue(tx, ev); err != nil {
			return err
		}
		if cur.State != events.JobQueued {
			st, err := m.newEvent(&events.JobStateChanged{JobID: id, VMAID: to, From: cur.State, To: events.JobQueued,
				Error: "moved to VMA " + to + ": " + reason, ChangedAt: now})
			if err != nil {
				return err
			}
			if err := store.Enqueue(tx, st); err != nil {
				return err
			}
			cur.State = events.JobQueued
		}
		cur.VMAID, cur.Attempt, cur.Disks, cur.LastSeq = to, attempt, disks, 0
		cur.DispatchedAt, cur.PauseRequestedAt, cur.UpdatedAt = nil, nil, now
		cur.RateBytesPerSecond = 0
		cur.Moves = append(cur.Moves, mv)
		if err := store.PutJob(tx, cur); err != nil {
			return err
		}
		if err := store.PutLease(tx, newLease); err != nil {
			return err
		}
		entry.VMAID, entry.DispatchedAt = to, nil
		entry.Command.VMAID, entry.Command.Password = to, sealed
		j = cur
		return m.cfg.Queue.Requeue(tx, entry)
	})
	if err != nil {
		m.exports.Stop(id)
		_ = os.RemoveAll(newLease.Dir)
		if err2 := m.serveAgain(ctx, lease); err2 != nil {
			m.log.Error("job lost its exports in a failed move", "job", id, "err", err2)
		}
		return j, fmt.Errorf("move job %s to VMA %s: %w", id, to, err)
	}
	_ = os.RemoveAll(lease.Dir) // links only: the volumes stay
	m.log.Warn("job moved to another VMA", "job", id, "from", from, "to", to, "attempt", attempt, "running", running, "reason", reason, "port", port)
	m.outbox.Kick()
	return j, nil
}

// queueEntry returns job id's dispatched entry of the queue.
func queueEntry(tx *bbolt.Tx, id string) (store.QueueEntry, error) {
	running, err := store.Running(tx)
	if err != nil {
		return store.QueueEntry{}, err
	}
	for _, e := range running {
		if e.JobID == id {
			return e, nil
		}
	}
	return store.QueueEntry{}, fault.Errorf(fault.Conflict, "id", "job %s is not in the queue", id)
}

// RunFailover moves the jobs of VMAs that stopped beating until ctx ends,
// checking every second: a job still waiting for its VMA once the VMA's
// heartbeat is missing for Config.HeartbeatTimeout, a running one after
// Config.TakeoverGrace more. Each goes to the VMA that found the same VM,
// is allowed for its vCenter, beats, and has the most free capacity. A job
// with nowhere to go stays, and is tried again.
func (m *Manager) RunFailover(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	told := map[string]string{} // job -> why it could not move, as last logged
	// A VMA's silence counts from the OMA's start at the earliest: while
	// the OMA was down it heard nobody.
	started := m.cfg.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.failover(ctx, told, started); err != nil && ctx.Err() == nil {
			m.log.Error("move the jobs of gone VMAs", "err", err)
		}
	}
}

// move is a job failover decided to move.
type move struct {
	job, from, to, reason string
}

// failover moves, once, every job whose VMA is gone long enough: silent
// since its last heartbeat, or since started when that is later.
func (m *Manager) failover(ctx context.Context, told map[string]string, started time.Time) error {
	now := m.cfg.Now()
	var moves []move
	stuck := map[string]string{}
	err := m.store.View(func(tx *bbolt.Tx) error {
		all, err := store.VMAs(tx)
		if err != nil {
			return err
		}
		gone := map[string]time.Duration{} // VMA -> how long without a heartbeat
		for _, v := range all {
			if v.LastSeen == nil {
				continue // never seen: none of its jobs ran
			}
			if silent := now.Sub(later(*v.LastSeen, started)); silent > m.cfg.HeartbeatTimeout {
				gone[v.ID] = silent
			}
		}
		if len(gone) == 0 {
			return nil
		}
		waiting, err := store.Queued(tx)
		if err != nil {
			return err
		}
		running, err := store.Running(tx)
		if err != nil {
			return err
		}
		for _, e := range append(waiting, running...) {
			silent, ok := gone[e.VMAID]
			if !ok || e.DispatchedAt != nil && silent <= m.cfg.HeartbeatTimeout+m.cfg.TakeoverGrace {
				continue
			}
			reason := fmt.Sprintf("%s: no heartbeat for %s", e.VMAID, silent.Round(time.Second))
			to, why := m.replacement(tx, e)
			if to == "" {
				stuck[e.JobID] = why
				continue
			}
			moves = append(moves, move{job: e.JobID, from: e.VMAID, to: to, reason: reason})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for id, why := range stuck {
		if told[id] != why {
			m.log.Warn("job of a gone VMA has no VMA to move to", "job", id, "why", why)
			told[id] = why
		}
	}
	for _, mv := range moves {
		delete(told, mv.job)
		if _, err := m.Move(ctx, mv.job, mv.from, mv.to, mv.reason); err != nil && fault.KindOf(err) != fault.Conflict {
			m.log.Error("move job", "job", mv.job, "from", mv.from, "to", mv.to, "err", err)
		} else if err != nil && told[mv.job] != err.Error() {
			m.log.Warn("job not moved", "job", mv.job, "err", err)
			told[mv.job] = err.Error()
		}
	}
	return nil
}

// replacement chooses the VMA entry e's job moves to, or says why there is
// none.
func (m *Manager) replacement(tx *bbolt.Tx, e store.QueueEntry) (string, string) {
	if e.Command.JobID == "" || e.PasswordAtRest == nil {
		return "", "the OMA keeps no credentials for it (started by the VMA's own /replicate)"
	}
	j, err := store.GetJob(tx, e.JobID)
	if err != nil {
		return "", err.Error()
	}
	found, err := inventory.FindAll(tx, inventory.Ref{VMID: j.VM.ID, VCenter: j.VCenter})
	if err != nil {
		return "", err.Error()
	}
	var others []inventory.Located
	for _, f := range found {
		if f.VMAID != e.VMAID && f.VCenter == j.VCenter && (j.VM.InstanceUUID == "" || f.VM.InstanceUUID == j.VM.InstanceUUID) {
			others = append(others, f)
		}
	}
	if len(others) == 0 {
		return "", "no other VMA found the VM in vCenter " + j.VCenter
	}
	loc, err := m.chooseVMA(tx, others, events.ReplicationInitial) // the job keeps its replica: any VMA will do
	if err != nil {
		return "", err.Error()
	}
	return loc.VMAID, ""
}

// keepPassword seals password at rest for job id, to seal it again to
// another VMA if the job moves; nil without an at-rest key.
func (m *Manager) keepPassword(id string, password secret.String) ([]byte, error) {
	if m.cfg.AtRest == nil {
		return nil, nil
	}
	sealed, err := m.cfg.AtRest.Seal(password, atRestContext(id))
	if err != nil {
		return nil, fmt.Errorf("keep job %s's password: %w", id, err)
	}
	return sealed, nil
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
