package plans_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
)

// renameVM renames the simulator's VM at path: its path no longer names it,
// so its jobs fail.
func (b *bed) renameVM(path, name string) {
	b.t.Helper()
	ctx := testkit.Context(b.t)
	u := *b.sim.URL
	u.User = url.UserPassword(b.sim.Username, b.sim.Password)
	c, err := govmomi.NewClient(ctx, &u, true)
	if err != nil {
		b.t.Fatal(err)
	}
	defer func() { _ = c.Logout(context.WithoutCancel(ctx)) }()
	vm, err := find.NewFinder(c.Client, false).VirtualMachine(ctx, path)
	if err != nil {
		b.t.Fatal(err)
	}
	task, err := vm.Rename(ctx, name)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		b.t.Fatalf("rename %s: %v", path, err)
	}
}

// vmState returns the state of the plan's VM at path, with its view.
func (p planView) vm(path string) (state string, syncs int, lastError string) {
	for _, vm := range p.VMs {
		if vm.Path == path {
			return vm.State, vm.Syncs, vm.LastError
		}
	}
	return "", 0, ""
}

// TestPlanChangesWhileItRuns: a sync now, VMs added and removed, a new
// schedule and waves, pause and resume, a VM whose syncs fail three times
// in a row paused and retried, and the plan deleted with its replicas kept.
func TestPlanChangesWhileItRuns(t *testing.T) {
	testkit.Long(t)
	b := newBed(t, 3)
	o := b.oma
	vm1, vm2, vm3 := b.paths[0], b.paths[1], b.paths[2]
	if code := o.Do(http.MethodPost, "/api/v1/plans", map[string]any{"name": "p", "vcenter": "sim", "vms": []string{vm1, vm2},
		"sync": map[string]any{"interval": "1h"}}, nil); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/plans = %d", code)
	}
	synced := func(path string, syncs int) func() bool {
		return func() bool {
			state, n, _ := b.plan("p").vm(path)
			return state == events.PlanVMSynced && n >= syncs
		}
	}
	testkit.Eventually(t, "both VMs' initial copies", func() bool { return synced(vm1, 1)() && synced(vm2, 1)() })

	// Sync now: each VM gets an incremental; the schedule stays.
	before := b.plan("p")
	var p planView
	if code := o.Do(http.MethodPost, "/api/v1/plans/p/sync", nil, &p); code != http.StatusOK {
		t.Fatalf("POST sync = %d", code)
	}
	testkit.Eventually(t, "a second copy of each", func() bool { return synced(vm1, 2)() && synced(vm2, 2)() })
	p = b.plan("p")
	if !p.NextDue.Equal(before.NextDue) || p.Syncs != before.Syncs {
		t.Errorf("a sync now moved the schedule: next due %s -> %s, syncs %d -> %d", before.NextDue, p.NextDue, before.Syncs, p.Syncs)
	}
	if sched := b.scheduled("p"); len(sched) != 1 || sched[0].Reason != events.SyncReasonManual || sched[0].DueVMs != 2 {
		t.Errorf("sync-scheduled events = %+v, want one manual with 2 VMs due", sched)
	}

	// Add a VM and change the schedule while it runs.
	changeAt := time.Now()
	if code := o.Do(http.MethodPatch, "/api/v1/plans/p", map[string]any{"add_vms": []string{vm3}, "sync": map[string]any{"interval": "2h"}}, &p); code != http.StatusOK {
		t.Fatalf("PATCH add_vms, sync = %d", code)
	}
	if len(p.VMs) != 3 || p.NextDue.Before(changeAt.Add(2*time.Hour-time.Minute)) || p.NextDue.After(time.Now().Add(2*time.Hour)) {
		t.Errorf("after PATCH: %d VMs, next due %s, want 3 VMs and 2h from now", len(p.VMs), p.NextDue)
	}
	testkit.Eventually(t, "the added VM's initial copy", synced(vm3, 1))

	// New waves, then a VM removed.
	if code := o.Do(http.MethodPatch, "/api/v1/plans/p", map[string]any{"waves": [][]string{{vm3}, {vm1, vm2}}}, &p); code != http.StatusOK {
		t.Fatalf("PATCH waves = %d", code)
	}
	for _, vm := range p.VMs {
		if want := map[string]int{vm3: 0, vm1: 1, vm2: 1}[vm.Path]; vm.Wave != want {
			t.Errorf("%s is in wave %d, want %d", vm.Path, vm.Wave, want)
		}
	}
	if code := o.Do(http.MethodPatch, "/api/v1/plans/p", map[string]any{"remove_vms": []string{vm1}}, &p); code != http.StatusOK || len(p.VMs) != 2 {
		t.Fatalf("PATCH remove_vms = %d, %d VMs left", code, len(p.VMs))
	}

	// Paused, a sync asked for starts nothing; resumed, it runs.
	if code := o.Do(http.MethodPost, "/api/v1/plans/p/pause", nil, &p); code != http.StatusOK || !strings.HasPrefix(p.Blocked, "paused") {
		t.Fatalf("pause = %d, blocked %q", code, p.Blocked)
	}
	o.Do(http.MethodPost, "/api/v1/plans/p/sync", nil, &p)
	for _, vm := range p.VMs {
		if vm.State != events.PlanVMSynced || vm.NextSync != nil {
			t.Errorf("paused plan: %s is %s, next sync %v; want synced with none", vm.Path, vm.State, vm.NextSync)
		}
	}
	var resumed planView
	if code := o.Do(http.MethodPost, "/api/v1/plans/p/resume", nil, &resumed); code != http.StatusOK || resumed.Blocked != "" {
		t.Fatalf("resume = %d, blocked %q", code, resumed.Blocked)
	}
	testkit.Eventually(t, "the due syncs after resume", func() bool { return synced(vm2, 3)() && synced(vm3, 2)() })

	// A VM whose syncs fail: failed twice, paused at the third, retried.
	b.renameVM(vm2, "renamed-away")
	for i := 1; i <= 3; i++ {
		o.Do(http.MethodPost, "/api/v1/plans/p/sync", nil, nil)
		want := events.PlanVMFailed
		if i == 3 {
			want = events.PlanVMPaused
		}
		testkit.Eventually(t, "failure "+want, func() bool {
			p := b.plan("p")
			for _, vm := range p.VMs {
				if vm.Path == vm2 && vm.State == want && vm.Failures == i {
					return true
				}
			}
			return false
		})
	}
	p = b.plan("p")
	for _, vm := range p.VMs {
		if vm.Path == vm2 && (vm.LastError == "" || p.Counts[events.PlanVMPaused] != 1) {
			t.Errorf("the paused VM = %+v, counts %v", vm, p.Counts)
		}
	}
	var raw map[string]any
	o.Do(http.MethodGet, "/api/v1/plans/p", nil, &raw)
	if s := toJSON(t, raw); !strings.Contains(s, "3 syncs failed in a row") || !strings.Contains(s, "/retry") {
		t.Errorf("the paused VM does not say why and what to do: %s", s)
	}
	var prob problem
	if code := o.Do(http.MethodPost, "/api/v1/plans/p/vms/"+strings.ReplaceAll(vm3, "/", "%2F")+"/retry", nil, &prob); code != http.StatusConflict && code != http.StatusNotFound {
		t.Errorf("retry a synced VM = %d, want 409", code)
	}
	ids := map[string]string{}
	for _, vm := range p.VMs {
		ids[vm.Path] = vm.ID
	}
	if code := o.Do(http.MethodPost, "/api/v1/plans/p/vms/"+ids[vm3]+"/retry", nil, &prob); code != http.StatusConflict {
		t.Errorf("retry a synced VM = %d (%s), want 409", code, prob.Detail)
	}
	if code := o.Do(http.MethodPost, "/api/v1/plans/p/vms/"+ids[vm2]+"/retry", nil, &p); code != http.StatusOK {
		t.Fatalf("retry the paused VM = %d", code)
	}
	testkit.Eventually(t, "the retried VM failing again, once", func() bool {
		p := b.plan("p")
		for _, vm := range p.VMs {
			if vm.Path == vm2 && vm.State == events.PlanVMFailed && vm.Failures == 1 {
				return true
			}
		}
		return false
	})

	// Deleted: the plan is gone, its replicas stay.
	replica := b.job(b.planLastJob("p", vm3)).Disks[0].VolumePath
	if code := o.Do(http.MethodDelete, "/api/v1/plans/p", nil, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE = %d", code)
	}
	if code := o.Do(http.MethodGet, "/api/v1/plans/p", nil, &prob); code != http.StatusNotFound {
		t.Errorf("GET a deleted plan = %d", code)
	}
	if _, err := os.Stat(replica); err != nil {
		t.Errorf("the deleted plan's replica: %v", err)
	}
}

// planLastJob returns the last job of the plan's VM at path.
func (b *bed) planLastJob(plan, path string) string {
	b.t.Helper()
	for _, vm := range b.plan(plan).VMs {
		if vm.Path == path && vm.LastSync != nil {
			return vm.LastSync.Job
		}
	}
	b.t.Fatalf("%s of plan %s has no completed sync", path, plan)
	return ""
}

// vmStates reads the plan's VM state changes from the PLANS stream, in
// the order the OMA made them.
func (b *bed) vmStates(plan string) []events.PlanVMStateChanged {
	b.t.Helper()
	return planEvents[events.PlanVMStateChanged](b, "godwit.plan.vm."+plan+".>")
}

// mostBusy returns the most VMs that had a job at once, by the events.
func mostBusy(states []events.PlanVMStateChanged) int {
	busy, most := map[string]bool{}, 0
	for _, s := range states {
		busy[s.VMID] = s.To == events.PlanVMCopying || s.To == events.PlanVMSyncing
		n := 0
		for _, b := range busy {
			if b {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// TestPlanMaxConcurrent: a plan's limits.max_concurrent bounds its jobs at
// any moment, as its events show; PATCH changes it while it runs.
func TestPlanMaxConcurrent(t *testing.T) {
	testkit.Long(t)
	b := newBed(t, 4)
	var prob problem
	if code := b.oma.Do(http.MethodPost, "/api/v1/plans", map[string]any{"name": "p", "vcenter": "sim", "vms": b.paths,
		"sync": map[string]any{"interval": "1h"}, "limits": map[string]any{"max_concurrent": -1}}, &prob); code != http.StatusBadRequest || prob.Field != "limits.max_concurrent" {
		t.Errorf("max_concurrent -1 = %d naming %q, want 400 naming limits.max_concurrent", code, prob.Field)
	}
	var p planView
	if code := b.oma.Do(http.MethodPost, "/api/v1/plans", map[string]any{"name": "p", "vcenter": "sim", "vms": b.paths,
		"sync": map[string]any{"interval": "1h"}, "limits": map[string]any{"max_concurrent": 1}}, &p); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/plans = %d", code)
	}
	all := func(syncs int) func() bool {
		return func() bool {
			for _, vm := range b.plan("p").VMs {
				if vm.State != events.PlanVMSynced || vm.Syncs < syncs {
					return false
				}
			}
			return true
		}
	}
	testkit.Eventually(t, "every VM's initial copy", all(1))
	if n := mostBusy(b.vmStates("p")); n != 1 {
		t.Errorf("%d VMs copied at once, want 1 (max_concurrent 1)", n)
	}

	var raw struct {
		MaxConcurrent int `json:"max_concurrent"`
	}
	if code := b.oma.Do(http.MethodPatch, "/api/v1/plans/p", map[string]any{"limits": map[string]any{"max_concurrent": 2}}, &raw); code != http.StatusOK || raw.MaxConcurrent != 2 {
		t.Fatalf("PATCH limits = %d, max_concurrent %d", code, raw.MaxConcurrent)
	}
	before := len(b.vmStates("p"))
	b.oma.Do(http.MethodPost, "/api/v1/plans/p/sync", nil, nil)
	testkit.Eventually(t, "every VM's second copy", all(2))
	if n := mostBusy(b.vmStates("p")[before:]); n != 2 {
		t.Errorf("%d VMs synced at once, want 2 (max_concurrent 2, 4 due)", n)
	}
}
