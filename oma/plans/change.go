package plans

import (
	"context"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/store"
)

// Patch changes a plan while it runs. Every field is optional.
type Patch struct {
	// AddVMs names VMs to add (path or id), in the last wave unless Waves
	// places them.
	AddVMs []string
	// RemoveVMs names VMs to remove (id, path or name): their running
	// jobs are cancelled, their replicas kept.
	RemoveVMs []string
	Sync      *events.PlanSchedule
	// Waves, when set, replace the waves: VMs (path or id) wave by wave;
	// VMs in none come last.
	Waves [][]string
	// Limits, when set, replace the plan's limits.
	Limits *store.PlanLimits
	// Priority, when set, replaces the plan's priority in the OMA's queue.
	Priority *int
	// Cutover, when set, replaces its settings for its VMs' cutovers.
	Cutover *store.PlanCutover
	// Rate changes the bandwidth limit of all the plan's jobs together
	// (bytes per second, 0: none) and its windows.
	Rate store.RateChange
}

// Update applies ch to the plan named name and runs its preflight again.
// Nothing changes when ch is refused.
func (m *Manager) Update(ctx context.Context, name string, ch Patch) (View, error) {
	cur, err := m.Get(ctx, name)
	if err != nil {
		return View{}, err
	}
	if ch.Limits != nil {
		if err := checkLimits(*ch.Limits); err != nil {
			return View{}, err
		}
	}
	if ch.Cutover != nil {
		if err := checkCutover(*ch.Cutover); err != nil {
			return View{}, err
		}
	}
	if ch.Priority != nil {
		if err := checkPriority(*ch.Priority); err != nil {
			return View{}, err
		}
	}
	if ch.Rate.Rate != nil {
		if err := jobs.CheckRate("rate", *ch.Rate.Rate); err != nil {
			return View{}, err
		}
	}
	if ch.Rate.Windows != nil {
		if err := jobs.CheckRateWindows("rate_windows", *ch.Rate.Windows); err != nil {
			return View{}, err
		}
	}
	var sched string
	if ch.Sync != nil {
		s, err := m.parseSchedule(*ch.Sync)
		if err != nil {
			return View{}, err
		}
		sched = s.String()
	}
	vc, err := m.vcenters.Get(cur.VCenter)
	if err != nil {
		return View{}, err
	}
	var added []located
	if len(ch.AddVMs) > 0 {
		if added, err = m.resolve(ctx, vc, ch.AddVMs, "add_vms"); err != nil {
			return View{}, err
		}
	}
	var cancel []string
	m.mu.Lock()
	err = m.store.Update(func(tx *bbolt.Tx) error {
		p, vms, err := planAndVMs(tx, name)
		if err != nil {
			return err
		}
		now := m.cfg.Now().UTC()
		var removed []string
		for i, n := range ch.RemoveVMs {
			k := indexOf(vms, n)
			if k < 0 {
				return fault.Errorf(fault.Invalid, fmt.Sprintf("remove_vms[%d]", i), "remove_vms[%d] %q is not a VM of plan %s", i, n, name)
			}
			if busy(vms[k].State) {
				cancel = append(cancel, vms[k].Job)
			}
			removed = append(removed, vms[k].Key)
			if err := store.DeletePlanVM(tx, name, vms[k].Key); err != nil {
				return err
			}
			vms = slices.Delete(vms, k, k+1)
		}
		var fresh []store.PlanVM
		for _, f := range added {
			fresh = append(fresh, planVM(name, f, lastWave(vms)+1, now))
		}
		if err := inOtherPlan(tx, name, fresh, "add_vms"); err != nil {
			return err
		}
		for _, f := range fresh {
			if slices.ContainsFunc(vms, func(vm store.PlanVM) bool { return sameVM(vm, f) }) {
				return fault.Errorf(fault.Conflict, "add_vms", "VM %s (%s) is in plan %s already", f.Key, f.Path, name)
			}
		}
		vms = append(vms, fresh...)
		if len(vms) == 0 {
			return fault.Errorf(fault.Invalid, "remove_vms", "removing every VM would leave plan %s empty: delete the plan instead", name)
		}
		if ch.Waves != nil {
			if err := rewave(vms, ch.Waves); err != nil {
				return err
			}
		} else if len(fresh) > 0 && len(p.Waves) == 0 {
			for i := range vms {
				vms[i].Wave = 0
			}
		}
		for _, vm := range vms {
			if err := store.PutPlanVM(tx, vm); err != nil {
				return err
			}
		}
		p.Waves, p.UpdatedAt = waveLists(vms), now
		if ch.Limits != nil {
			p.Limits = *ch.Limits
		}
		if ch.Priority != nil {
			p.Priority = *ch.Priority
		}
		if ch.Cutover != nil {
			p.Cutover = *ch.Cutover
		}
		ch.Rate.Apply(&p.RateLimit, &p.RateWindows)
		if ch.Sync != nil {
			p.Sync = *ch.Sync
			s, _ := m.parseSchedule(p.Sync)
			p.NextDue = s.Next(now)
		}
		if err := store.PutPlan(tx, p); err != nil {
			return err
		}
		next := p.NextDue
		if len(fresh) > 0 || len(removed) > 0 {
			ev := &events.PlanChanged{Plan: name, Change: events.PlanChangeVMs, Removed: removed, NextDue: &next, ChangedAt: now}
			for _, f := range fresh {
				ev.Added = append(ev.Added, vmRef(f))
			}
			if err := m.emit(tx, ev); err != nil {
				return err
			}
		}
		if ch.Sync != nil {
			s := p.Sync
			if err := m.emit(tx, &events.PlanChanged{Plan: name, Change: events.PlanChangeSchedule, Sync: &s, NextDue: &next, ChangedAt: now}); err != nil {
				return err
			}
		}
		if ch.Waves != nil {
			if err := m.emit(tx, &events.PlanChanged{Plan: name, Change: events.PlanChangeWaves, NextDue: &next, ChangedAt: now}); err != nil {
				return err
			}
		}
		if !ch.Rate.Empty() {
			if err := m.emit(tx, &events.QueueLimits{Object: events.LimitsPlan, Name: name, Rate: &p.RateLimit, RateWindows: p.RateWindows, ChangedAt: now}); err != nil {
				return err
			}
		}
		if ch.Priority != nil {
			if err := m.emit(tx, &events.PlanChanged{Plan: name, Change: events.PlanChangePriority, Priority: p.Priority, NextDue: &next, ChangedAt: now}); err != nil {
				return err
			}
		}
		if ch.Cutover != nil {
			if err := m.emit(tx, &events.PlanChanged{Plan: name, Change: events.PlanChangeCutover, NextDue: &next, ChangedAt: now}); err != nil {
				return err
			}
		}
		if ch.Limits != nil {
			return m.emit(tx, &events.PlanChanged{Plan: name, Change: events.PlanChangeLimits, MaxConcurrent: p.Limits.MaxConcurrent,
				ESXiHost: p.Limits.ESXiHost, Datastore: p.Limits.Datastore, NextDue: &next, ChangedAt: now})
		}
		return nil
	})
	m.mu.Unlock()
	if err != nil {
		return View{}, err
	}
	m.outbox.Kick()
	m.cancelJobs(ctx, cancel)
	if sched != "" {
		m.log.Info("plan schedule changed", "plan", name, "schedule", sched)
	}
	if len(ch.AddVMs) > 0 || len(ch.RemoveVMs) > 0 {
		if _, err := m.Preflight(ctx, name); err != nil {
			return View{}, err
		}
	}
	m.Kick()
	return m.Get(ctx, name)
}

// indexOf returns the index in vms of the VM named n (its id, path or
// name), -1 when there is none.
func indexOf(vms []store.PlanVM, n string) int {
	return slices.IndexFunc(vms, func(vm store.PlanVM) bool { return vm.Key == n || vm.Path == n || vm.Name == n })
}

// lastWave returns the highest wave of vms, -1 when there are none.
func lastWave(vms []store.PlanVM) int {
	w := -1
	for _, vm := range vms {
		w = max(w, vm.Wave)
	}
	return w
}

// rewave sets the waves of vms from given, naming the entry at fault.
func rewave(vms []store.PlanVM, given [][]string) error {
	found := make([]located, len(vms))
	names := make([]string, len(vms))
	for i, vm := range vms {
		found[i] = located{vm: events.VM{ID: vm.Key, Path: vm.Path}}
		names[i] = vm.Key
	}
	w, err := waves(names, found, given)
	if err != nil {
		return err
	}
	for i := range vms {
		vms[i].Wave = w[i]
	}
	return nil
}

// cancelJobs cancels the jobs ids, logging what fails.
func (m *Manager) cancelJobs(ctx context.Context, ids []string) {
	for _, id := range ids {
		if _, err := m.jobs.Cancel(ctx, id); err != nil && fault.KindOf(err) != fault.Conflict {
			m.log.Warn("cancel a plan's job", "job", id, "err", err)
		}
	}
}

// SetPaused pauses (no new job starts; running ones finish) or resumes the
// plan named name. Resuming runs the preflight again.
func (m *Manager) SetPaused(ctx context.Context, name string, paused bool) (View, error) {
	m.mu.Lock()
	err := m.store.Update(func(tx *bbolt.Tx) error {
		p, err := store.GetPlan(tx, name)
		if err != nil {
			return notFound(name, err)
		}
		if p.Paused == paused {
			return nil
		}
		now := m.cfg.Now().UTC()
		p.Paused, p.UpdatedAt = paused, now
		if err := store.PutPlan(tx, p); err != nil {
			return err
		}
		change := events.PlanChangeResumed
		if paused {
			change = events.PlanChangePaused
		}
		next := p.NextDue
		return m.emit(tx, &events.PlanChanged{Plan: name, Change: change, NextDue: &next, ChangedAt: now})
	})
	m.mu.Unlock()
	if err != nil {
		return View{}, err
	}
	m.outbox.Kick()
	m.pauseJobs(ctx, name, paused)
	if !paused {
		if _, err := m.Preflight(ctx, name); err != nil {
			return View{}, err
		}
		m.Kick()
	}
	return m.Get(ctx, name)
}

// pauseJobs pauses the running jobs of the plan named name, or resumes
// its paused ones. A job that cannot (it ended meanwhile) is left as it
// is.
func (m *Manager) pauseJobs(ctx context.Context, name string, pause bool) {
	var ids []string
	_ = m.store.View(func(tx *bbolt.Tx) error {
		vms, err := store.PlanVMs(tx, name)
		for _, vm := range vms {
			if vm.Job == "" || !busy(vm.State) {
				continue
			}
			if j, err := store.GetJob(tx, vm.Job); err == nil && (pause && jobs.Pausable(j.State) || !pause && j.State == events.JobPaused) {
				ids = append(ids, j.ID)
			}
		}
		return err
	})
	for _, id := range ids {
		var err error
		if pause {
			_, err = m.jobs.Pause(ctx, id, "its plan "+name+" was paused")
		} else {
			_, err = m.jobs.Resume(ctx, id)
		}
		if err != nil {
			m.log.Warn("pause or resume a plan's job", "plan", name, "job", id, "pause", pause, "err", err)
		}
	}
}

// SyncNow makes every synced or failed VM of the plan named name due at
// once; the schedule's next due time stays.
func (m *Manager) SyncNow(ctx context.Context, name string) (View, error) {
	m.mu.Lock()
	err := m.store.Update(func(tx *bbolt.Tx) error {
		p, vms, err := planAndVMs(tx, name)
		if err != nil {
			return err
		}
		now := m.cfg.Now().UTC()
		due := 0
		for i := range vms {
			if markDue(&vms[i], now) {
				due++
				if err := store.PutPlanVM(tx, vms[i]); err != nil {
					return err
				}
			}
		}
		return m.emit(tx, &events.PlanSyncScheduled{Plan: name, Reason: events.SyncReasonManual, Sync: p.Syncs, DueVMs: due, DueAt: now, NextDue: p.NextDue, At: now})
	})
	m.mu.Unlock()
	if err != nil {
		return View{}, err
	}
	m.outbox.Kick()
	m.Kick()
	return m.Get(ctx, name)
}

// Retry makes a failed or paused VM of the plan named name due at once,
// lifting its pause and forgetting its failures in a row. vm is its id,
// path or name.
func (m *Manager) Retry(ctx context.Context, name, vm string) (View, error) {
	m.mu.Lock()
	err := m.store.Update(func(tx *bbolt.Tx) error {
		_, vms, err := planAndVMs(tx, name)
		if err != nil {
			return err
		}
		k := indexOf(vms, vm)
		if k < 0 {
			return fault.Errorf(fault.NotFound, "vm", "plan %s has no VM %q", name, vm)
		}
		v := vms[k]
		if v.State != events.PlanVMFailed && v.State != events.PlanVMPaused {
			return fault.Errorf(fault.Conflict, "vm", "VM %s of plan %s is %s: only a failed or paused VM is retried", v.Key, name, v.State)
		}
		now := m.cfg.Now().UTC()
		v.Paused, v.PauseReason, v.Failures, v.Due = false, "", 0, true
		if err := m.move(tx, &v, events.PlanVMFailed, v.FailedJob, "retried: "+v.LastError, now); err != nil {
			return err
		}
		return store.PutPlanVM(tx, v)
	})
	m.mu.Unlock()
	if err != nil {
		return View{}, err
	}
	m.outbox.Kick()
	m.Kick()
	return m.Get(ctx, name)
}

// Delete deletes the plan named name: its running jobs are cancelled, its
// VMs' replicas kept.
func (m *Manager) Delete(ctx context.Context, name string) error {
	var cancel []string
	m.mu.Lock()
	err := m.store.Update(func(tx *bbolt.Tx) error {
		vms, err := store.PlanVMs(tx, name)
		if err != nil {
			return err
		}
		for _, vm := range vms {
			if busy(vm.State) {
				cancel = append(cancel, vm.Job)
			}
		}
		if err := store.DeletePlan(tx, name); err != nil {
			return notFound(name, err)
		}
		return m.emit(tx, &events.PlanChanged{Plan: name, Change: events.PlanChangeDeleted, ChangedAt: m.cfg.Now().UTC()})
	})
	m.mu.Unlock()
	if err != nil {
		return err
	}
	m.outbox.Kick()
	m.cancelJobs(ctx, cancel)
	m.log.Info("plan deleted", "plan", name, "jobs_cancelled", len(cancel))
	return nil
}

// planAndVMs reads the plan named name and its VMs in tx; a NotFound when
// there is no such plan.
func planAndVMs(tx *bbolt.Tx, name string) (store.Plan, []store.PlanVM, error) {
	p, err := store.GetPlan(tx, name)
	if err != nil {
		return p, nil, notFound(name, err)
	}
	vms, err := store.PlanVMs(tx, name)
	return p, vms, err
}
