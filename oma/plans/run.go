package plans

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vmas"
)

// Run ticks every Config.Poll, and when kicked, until ctx ends; it
// returns nil then. A tick that fails is logged and tried again at the
// next.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Poll)
	defer t.Stop()
	for {
		if err := m.Tick(ctx); err != nil && ctx.Err() == nil {
			m.log.Error("plans tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.kick:
		}
	}
}

// start is a job a tick starts: for a VM of a plan.
type start struct {
	plan store.Plan
	vm   store.PlanVM
	// job is set for a job of the plan found pending (created by a tick
	// that did not get to start it).
	job string
}

// jobToken is the name a plan's jobs are created under.
func jobToken(plan string) string { return "plan:" + plan }

// Tick applies the states of the plans' jobs, schedules the syncs that
// are due, and starts the jobs that may start (see the package doc).
func (m *Manager) Tick(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now().UTC()
	var starts []start
	err := m.store.Update(func(tx *bbolt.Tx) error {
		plans, err := store.Plans(tx)
		if err != nil {
			return err
		}
		for _, p := range plans {
			s, err := m.tickPlan(tx, p, now)
			if err != nil {
				return fmt.Errorf("plan %s: %w", p.Name, err)
			}
			starts = append(starts, s...)
		}
		return nil
	})
	m.outbox.Kick()
	if err != nil {
		return err
	}
	if len(starts) == 0 {
		return nil
	}
	return m.startJobs(ctx, starts)
}

// tickPlan is Tick for one plan, inside tx: it returns the jobs to start.
func (m *Manager) tickPlan(tx *bbolt.Tx, p store.Plan, now time.Time) ([]start, error) {
	vms, err := store.PlanVMs(tx, p.Name)
	if err != nil {
		return nil, err
	}
	var out []start
	for i := range vms {
		changed, pending, err := m.observe(tx, &vms[i], now)
		if err != nil {
			return nil, err
		}
		if pending != "" {
			out = append(out, start{plan: p, vm: vms[i], job: pending})
		}
		if changed {
			if err := store.PutPlanVM(tx, vms[i]); err != nil {
				return nil, err
			}
		}
	}
	sched, err := m.parseSchedule(p.Sync)
	if err != nil {
		return nil, err
	}
	if !p.Paused && !now.Before(p.NextDue) {
		reason := events.SyncReasonSchedule
		if p.NextDue.Before(m.started) {
			reason = events.SyncReasonMissed
		}
		due := 0
		for i := range vms {
			if markDue(&vms[i], now) {
				due++
				if err := store.PutPlanVM(tx, vms[i]); err != nil {
					return nil, err
				}
			}
		}
		dueAt := p.NextDue
		p.Syncs++
		p.LastSyncAt, p.NextDue, p.UpdatedAt = &now, sched.Next(now), now
		if err := store.PutPlan(tx, p); err != nil {
			return nil, err
		}
		m.log.Info("plan sync scheduled", "plan", p.Name, "sync", p.Syncs, "reason", reason, "due_vms", due, "next_due", p.NextDue)
		if err := m.emit(tx, &events.PlanSyncScheduled{Plan: p.Name, Reason: reason, Sync: p.Syncs, DueVMs: due, DueAt: dueAt, NextDue: p.NextDue, At: now}); err != nil {
			return nil, err
		}
	}
	if p.Paused || p.PreflightAt.IsZero() || (p.PreflightErrors > 0 && !p.Force) || !sched.Within(now) {
		return out, nil
	}
	return append(out, m.startable(p, vms)...), nil
}

// markDue marks vm due for a scheduled sync: a synced or failed VM that is
// not paused; true when it changed.
func markDue(vm *store.PlanVM, now time.Time) bool {
	if vm.Paused || vm.Due || vm.Cutover != "" || (vm.State != events.PlanVMSynced && vm.State != events.PlanVMFailed) {
		return false
	}
	vm.Due, vm.UpdatedAt = true, now
	return true
}

// startable picks the VMs of p whose jobs may start now, in wave and key
// order, at most the plan's limits.max_concurrent (else Config.MaxActive)
// running at once.
func (m *Manager) startable(p store.Plan, vms []store.PlanVM) []start {
	active, open := 0, openWave(vms)
	for _, vm := range vms {
		if busy(vm.State) {
			active++
		}
	}
	slices.SortFunc(vms, func(a, b store.PlanVM) int {
		if a.Wave != b.Wave {
			return a.Wave - b.Wave
		}
		return strings.Compare(a.Key, b.Key)
	})
	var out []start
	for _, vm := range vms {
		if active >= m.maxActive(p) {
			break
		}
		initial := vm.State == events.PlanVMPending && vm.Wave <= open
		again := vm.Due && !vm.Paused && (vm.State == events.PlanVMSynced || vm.State == events.PlanVMFailed)
		if (initial || again) && vm.Cutover == "" { // a cutover runs its own syncs
			out = append(out, start{plan: p, vm: vm})
			active++
		}
	}
	return out
}

// openWave returns the last wave whose VMs may start their initial copy:
// every VM of the waves before it has a completed copy.
func openWave(vms []store.PlanVM) int {
	first := -1 // the first wave with a VM that has no completed copy
	for _, vm := range vms {
		if vm.LastSync == nil && (first < 0 || vm.Wave < first) {
			first = vm.Wave
		}
	}
	if first < 0 {
		return int(^uint(0) >> 1)
	}
	return first
}

// busy says whether a VM in state s has a job running.
func busy(s string) bool { return s == events.PlanVMCopying || s == events.PlanVMSyncing }

// observe applies the state of vm's job to vm. It returns whether vm
// changed, and the job's id when the job is pending: created by a tick
// that did not get to start it.
func (m *Manager) observe(tx *bbolt.Tx, vm *store.PlanVM, now time.Time) (bool, string, error) {
	if !busy(vm.State) || vm.Job == "" {
		return false, "", nil
	}
	j, err := store.GetJob(tx, vm.Job)
	if errors.Is(err, store.ErrNotFound) {
		return true, "", m.failed(tx, vm, now, vm.Job, "its job "+vm.Job+" is gone from the OMA")
	}
	if err != nil {
		return false, "", err
	}
	switch j.State {
	case events.JobPending:
		return false, j.ID, nil
	case events.JobCompleted:
		return true, "", m.synced(tx, vm, j, now)
	case events.JobPausedExpired:
		// Not a failure: its next copy starts from its last completed one.
		to := events.PlanVMPending
		if vm.LastSync != nil {
			to = events.PlanVMSynced
		}
		vm.LastError = j.LastError
		return true, "", m.move(tx, vm, to, j.ID, j.LastError, now)
	case events.JobFailed, events.JobCancelled:
		why := j.LastError
		if why == "" {
			why = "job " + j.State
		}
		return true, "", m.failed(tx, vm, now, j.ID, why)
	}
	return false, "", nil
}

// synced records vm's completed job j.
func (m *Manager) synced(tx *bbolt.Tx, vm *store.PlanVM, j store.Job, now time.Time) error {
	done := store.PlanSyncDone{Job: j.ID, Type: j.ReplicationType, BytesChanged: j.BytesWritten, Verified: len(j.Disks) > 0}
	for _, d := range j.Disks {
		done.Verified = done.Verified && d.Verified
	}
	done.FinishedAt = now
	if j.FinishedAt != nil {
		done.FinishedAt = *j.FinishedAt
	}
	done.DurationSeconds = done.FinishedAt.Sub(j.CreatedAt).Seconds()
	vm.LastSync, vm.Failures, vm.LastError, vm.Syncs = &done, 0, "", vm.Syncs+1
	vm.BytesCopied += j.BytesWritten
	err := m.emit(tx, &events.PlanSyncDone{Plan: vm.Plan, VMID: vm.Key, Name: vm.Name, Job: j.ID, ReplicationType: j.ReplicationType,
		BytesChanged: done.BytesChanged, DurationSeconds: done.DurationSeconds, Verified: done.Verified, FinishedAt: done.FinishedAt})
	if err != nil {
		return err
	}
	return m.move(tx, vm, events.PlanVMSynced, j.ID, "", now)
}

// failed records a failed sync of vm: failed, or paused at the
// MaxFailures-th in a row.
func (m *Manager) failed(tx *bbolt.Tx, vm *store.PlanVM, now time.Time, job, why string) error {
	vm.Failures++
	vm.LastError, vm.FailedJob, vm.Due = why, job, false
	to := events.PlanVMFailed
	if vm.Failures >= MaxFailures {
		to, vm.Paused = events.PlanVMPaused, true
		vm.PauseReason = fmt.Sprintf("%d syncs failed in a row, the last: %s; fix the cause, then POST /api/v1/plans/%s/vms/%s/retry", vm.Failures, why, vm.Plan, vm.Key)
		why = vm.PauseReason
	}
	m.log.Warn("plan VM sync failed", "plan", vm.Plan, "vm", vm.Key, "job", job, "failures", vm.Failures, "err", why)
	return m.move(tx, vm, to, job, why, now)
}

// move moves vm to state to and writes the event.
func (m *Manager) move(tx *bbolt.Tx, vm *store.PlanVM, to, job, why string, now time.Time) error {
	from := vm.State
	vm.State, vm.UpdatedAt = to, now
	if from == to {
		return nil
	}
	return m.emit(tx, &events.PlanVMStateChanged{Plan: vm.Plan, VMID: vm.Key, Name: vm.Name, From: from, To: to, Job: job, Error: why, ChangedAt: now})
}

// startJobs creates the jobs of starts (or adopts those of the plan a
// crash left pending), records them on their VMs, then starts them with
// the vCenter's registered credentials.
func (m *Manager) startJobs(ctx context.Context, starts []start) error {
	type created struct {
		start
		id, typ string
		err     error
	}
	// The VMs as discovered, read once for every job of the tick.
	found := map[string]*inventory.Located{}
	err := m.store.View(func(tx *bbolt.Tx) error {
		invs, err := store.Inventories(tx)
		for _, inv := range invs {
			for _, vm := range inv.Result.VMs {
				found[inv.VMAID+"\x00"+inv.Result.VCenter.Host+"\x00"+vm.ID] = &inventory.Located{VM: vm, VMAID: inv.VMAID, VCenter: inv.Result.VCenter.Host}
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	var made []created
	for _, s := range starts {
		c := created{start: s, id: s.job}
		if c.id == "" {
			c.typ = events.ReplicationInitial
			if s.vm.LastSync != nil {
				c.typ = events.ReplicationIncremental
			}
			c.id, c.err = m.createJob(ctx, s.plan, s.vm, c.typ, found[s.vm.VMAID+"\x00"+s.vm.Host+"\x00"+s.vm.Key])
		}
		made = append(made, c)
	}
	now := m.cfg.Now().UTC()
	var run []created
	err = m.store.Update(func(tx *bbolt.Tx) error {
		for _, c := range made {
			vm, err := store.GetPlanVM(tx, c.plan.Name, c.vm.Key)
			if errors.Is(err, store.ErrNotFound) {
				continue // removed meanwhile: the job stays pending and expires
			}
			if err != nil {
				return err
			}
			var waiting *fault.Error
			switch {
			case errors.As(c.err, &waiting) && (waiting.Kind == fault.Conflict || waiting.Kind == fault.Unavailable || waiting.Kind == fault.Limit):
				vm.Waiting = waiting.Error()
			case c.err != nil:
				if err := m.failed(tx, &vm, now, "", "create the job: "+c.err.Error()); err != nil {
					return err
				}
			default:
				if c.job == "" {
					to := events.PlanVMCopying
					if c.typ == events.ReplicationIncremental {
						to = events.PlanVMSyncing
					}
					vm.Job, vm.Due, vm.Waiting = c.id, false, ""
					if err := m.move(tx, &vm, to, c.id, "", now); err != nil {
						return err
					}
				}
				run = append(run, c)
			}
			if err := store.PutPlanVM(tx, vm); err != nil {
				return err
			}
		}
		return nil
	})
	m.outbox.Kick()
	if err != nil {
		return err
	}
	var failed []created
	for _, c := range run {
		if err := m.startJob(ctx, c.plan, c.id); err != nil {
			c.err = err
			failed = append(failed, c)
			if _, cerr := m.jobs.Cancel(ctx, c.id); cerr != nil {
				m.log.Warn("cancel a plan's job that did not start", "job", c.id, "err", cerr)
			}
		}
	}
	if len(failed) == 0 {
		return nil
	}
	err = m.store.Update(func(tx *bbolt.Tx) error {
		for _, c := range failed {
			vm, err := store.GetPlanVM(tx, c.plan.Name, c.vm.Key)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if err := m.failed(tx, &vm, now, c.id, "start the job: "+c.err.Error()); err != nil {
				return err
			}
			if err := store.PutPlanVM(tx, vm); err != nil {
				return err
			}
		}
		return nil
	})
	m.outbox.Kick()
	return err
}

// createJob creates a job of type typ for vm, or returns the plan's own
// active job of vm that a crash left behind.
func (m *Manager) createJob(ctx context.Context, p store.Plan, vm store.PlanVM, typ string, loc *inventory.Located) (string, error) {
	j, err := m.jobs.CreateJob(ctx, jobs.CreateRequest{
		VM:              events.VMRef{ID: vm.Key, Name: vm.Name, Path: vm.Path, InstanceUUID: vm.InstanceUUID},
		ReplicationType: typ, VMAID: vm.VMAID, VCenter: vm.Host, Token: jobToken(p.Name), StartNow: true, Located: loc,
	})
	if err == nil {
		return j.ID, nil
	}
	var fe *fault.Error
	if typ == events.ReplicationIncremental && errors.As(err, &fe) && fe.Kind == fault.Conflict && fe.Field == "replication_type" {
		return m.createJob(ctx, p, vm, events.ReplicationInitial, loc) // its replica has no completed copy any more
	}
	if fault.KindOf(err) != fault.Conflict {
		return "", err
	}
	var own string
	_ = m.store.View(func(tx *bbolt.Tx) error {
		all, err := store.Jobs(tx)
		for _, j := range all {
			if j.VM.ID == vm.Key && j.VMAID == vm.VMAID && j.VCenter == vm.Host && j.CreatedBy == jobToken(p.Name) && jobs.Active(j.State) {
				own = j.ID
			}
		}
		return err
	})
	if own != "" {
		return own, nil
	}
	return "", err
}

// startJob starts the pending job id of plan p with its vCenter's
// registered credentials.
func (m *Manager) startJob(ctx context.Context, p store.Plan, id string) error {
	vc, err := m.vcenters.Get(p.VCenter)
	if err != nil {
		return err
	}
	pw, err := m.vcenters.Password(p.VCenter)
	if err != nil {
		return err
	}
	_, err = m.jobs.Start(ctx, id, vmas.VCenterCredentials{VCenter: vc.Host, Username: vc.Username, Password: pw, CAPEM: vc.CAPEM, Thumbprint: vc.Thumbprint},
		jobs.StartOptions{OnCBTReset: p.OnCBTReset, Verify: p.Verify, Plan: p.Name, Priority: p.Priority})
	if fault.KindOf(err) == fault.Conflict {
		return nil // started meanwhile
	}
	return err
}
