package plans

import (
	"context"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// View is a plan as the API shows it.
type View struct {
	Name    string              `json:"name"`
	VCenter string              `json:"vcenter"`
	Sync    events.PlanSchedule `json:"sync"`
	// Schedule says the schedule in words.
	Schedule   string     `json:"schedule"`
	Waves      [][]string `json:"waves"`
	Verify     *bool      `json:"verify,omitempty"`
	OnCBTReset string     `json:"on_cbt_reset,omitempty"`
	Force      bool       `json:"force"`
	// Limits are the plan's; MaxConcurrent is what applies (its limit or
	// the OMA's default).
	Limits store.PlanLimits `json:"limits"`
	// Priority orders the plan's jobs in the OMA's queue.
	Priority int `json:"priority"`
	// Cutover holds its settings for its VMs' cutovers.
	Cutover store.PlanCutover `json:"cutover"`
	// RateLimit bounds the bytes per second of its jobs together (0:
	// none).
	RateLimit     int64              `json:"rate_limit"`
	RateWindows   []store.RateWindow `json:"rate_windows,omitempty"`
	MaxConcurrent int                `json:"max_concurrent"`
	Paused        bool               `json:"paused"`
	// Blocked says why the plan does not copy, when it does not.
	Blocked    string         `json:"blocked,omitempty"`
	NextDue    time.Time      `json:"next_due"`
	Syncs      int            `json:"syncs"`
	LastSyncAt *time.Time     `json:"last_sync_at,omitempty"`
	Counts     map[string]int `json:"counts"`
	// BytesCopied adds up what the completed copies of its VMs wrote.
	BytesCopied     int64     `json:"bytes_copied"`
	PreflightErrors int       `json:"preflight_errors"`
	PreflightAt     time.Time `json:"preflight_at"`
	VMs             []VMView  `json:"vms"`
	// Preflight is the report of the preflight run at creation.
	Preflight *Report   `json:"preflight,omitempty"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// VMView is a VM of a plan as the API shows it.
type VMView struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Path         string `json:"path"`
	InstanceUUID string `json:"instance_uuid,omitempty"`
	VMAID        string `json:"vma_id"`
	Wave         int    `json:"wave"`
	State        string `json:"state"`
	// CurrentJob is the job running for it, if any; LastJob its last.
	CurrentJob string              `json:"current_job,omitempty"`
	LastJob    string              `json:"last_job,omitempty"`
	LastSync   *store.PlanSyncDone `json:"last_sync"`
	// NextSync is when its next sync is due (null: none is, as it is
	// paused, busy, or waiting for its wave).
	NextSync    *time.Time `json:"next_sync"`
	Due         bool       `json:"due"`
	Waiting     string     `json:"waiting,omitempty"`
	Replica     string     `json:"replica_id"`
	Syncs       int        `json:"syncs"`
	BytesCopied int64      `json:"bytes_copied"`
	Failures    int        `json:"failures"`
	LastError   string     `json:"last_error,omitempty"`
	FailedJob   string     `json:"failed_job,omitempty"`
	PauseReason string     `json:"pause_reason,omitempty"`
	// Cutover is its cutover's state while one is under way or done.
	Cutover string `json:"cutover,omitempty"`
	// PredictedDowntimeSeconds is its cutover's downtime as predicted now
	// (see cutover.Predict), updated after every sync.
	PredictedDowntimeSeconds *float64 `json:"predicted_downtime_seconds,omitempty"`
	// MeasuredDowntimeSeconds is its cutover's downtime as measured, once
	// it is cut over.
	MeasuredDowntimeSeconds *float64 `json:"measured_downtime_seconds,omitempty"`
}

// Get returns the plan named name; a NotFound fault when there is none.
func (m *Manager) Get(_ context.Context, name string) (View, error) {
	var v View
	err := m.store.View(func(tx *bbolt.Tx) error {
		p, err := store.GetPlan(tx, name)
		if err != nil {
			return notFound(name, err)
		}
		vms, err := store.PlanVMs(tx, name)
		v = m.view(p, vms)
		return err
	})
	return v, err
}

// List returns every plan, by name.
func (m *Manager) List(_ context.Context) ([]View, error) {
	out := []View{}
	err := m.store.View(func(tx *bbolt.Tx) error {
		ps, err := store.Plans(tx)
		if err != nil {
			return err
		}
		for _, p := range ps {
			vms, err := store.PlanVMs(tx, p.Name)
			if err != nil {
				return err
			}
			out = append(out, m.view(p, vms))
		}
		return nil
	})
	return out, err
}

func (m *Manager) view(p store.Plan, vms []store.PlanVM) View {
	v := View{Name: p.Name, VCenter: p.VCenter, Sync: p.Sync, Waves: p.Waves, Verify: p.Verify, OnCBTReset: p.OnCBTReset,
		Force: p.Force, Limits: p.Limits, Priority: p.Priority, Cutover: p.Cutover, RateLimit: p.RateLimit, RateWindows: p.RateWindows, MaxConcurrent: m.maxActive(p), Paused: p.Paused, NextDue: p.NextDue, Syncs: p.Syncs, LastSyncAt: p.LastSyncAt,
		Counts: map[string]int{}, PreflightErrors: p.PreflightErrors, PreflightAt: p.PreflightAt, VMs: []VMView{},
		CreatedBy: p.CreatedBy, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if v.Waves == nil {
		v.Waves = [][]string{}
	}
	for _, s := range events.PlanVMStates() {
		v.Counts[s] = 0
	}
	now := m.cfg.Now().UTC()
	sched, err := m.parseSchedule(p.Sync)
	closed := false // outside the schedule's window: nothing starts
	if err == nil {
		v.Schedule = sched.String()
		closed = !sched.Within(now)
	}
	switch {
	case p.Paused:
		v.Blocked = "paused: POST /api/v1/plans/" + p.Name + "/resume"
	case p.PreflightAt.IsZero():
		v.Blocked = "its preflight has not run yet: GET /api/v1/plans/" + p.Name + "/preflight runs it"
	case p.PreflightErrors > 0 && !p.Force:
		v.Blocked = "preflight found errors: GET /api/v1/plans/" + p.Name + "/preflight says which; it runs again there"
	}
	open := openWave(vms)
	for _, vm := range vms {
		v.Counts[vm.State]++
		v.BytesCopied += vm.BytesCopied
		vv := VMView{ID: vm.Key, Name: vm.Name, Path: vm.Path, InstanceUUID: vm.InstanceUUID, VMAID: vm.VMAID, Wave: vm.Wave,
			State: vm.State, LastJob: vm.Job, LastSync: vm.LastSync, Due: vm.Due, Waiting: vm.Waiting, Replica: vm.ReplicaID,
			Syncs: vm.Syncs, BytesCopied: vm.BytesCopied, Failures: vm.Failures, LastError: vm.LastError,
			FailedJob: vm.FailedJob, PauseReason: vm.PauseReason, Cutover: vm.Cutover}
		if busy(vm.State) {
			vv.CurrentJob = vm.Job
		}
		startsNow := vm.Due || (vm.State == events.PlanVMPending && vm.Wave <= open)
		switch {
		case p.Paused || vm.Paused || busy(vm.State):
		case startsNow && closed:
			if vv.Waiting == "" {
				vv.Waiting = "outside the schedule's window (" + v.Schedule + "): it starts when the window opens"
			}
		case startsNow:
			vv.NextSync = &now
		case vm.State == events.PlanVMSynced || vm.State == events.PlanVMFailed:
			next := p.NextDue
			vv.NextSync = &next
		}
		v.VMs = append(v.VMs, vv)
	}
	return v
}
