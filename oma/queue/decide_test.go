package queue

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

var t0 = time.Date(2026, 12, 4, 22, 0, 0, 0, time.UTC)

// job is a queue entry: id, VMA, ESXi host, plan, kind, queued n seconds
// after t0.
func job(id, vma, host, plan, kind string, n int) *store.QueueEntry {
	return &store.QueueEntry{JobID: id, VMAID: vma, VCenter: "vc", ESXiHost: host, Datastores: []string{"ds-" + host},
		Plan: plan, ReplicationType: kind, QueuedAt: t0.Add(time.Duration(n) * time.Second)}
}

const (
	initial = events.ReplicationInitial
	incr    = events.ReplicationIncremental
)

func twoVMAs(capacity int) *rules {
	return &rules{vmas: map[string]vmaSlots{"a": {capacity: capacity}, "b": {capacity: capacity}},
		vcenters: map[string]store.SourceLimits{}, plans: map[string]planRules{}, defaults: DefaultSourceLimits, planMax: DefaultPlanMax}
}

func ids(es []*store.QueueEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.JobID)
	}
	return out
}

func TestDecideLimits(t *testing.T) {
	tests := []struct {
		name     string
		rules    func() *rules
		waiting  []*store.QueueEntry
		running  []*store.QueueEntry
		dispatch []string
		why      map[string]string
	}{
		{
			name:     "VMA capacity",
			rules:    func() *rules { return twoVMAs(2) },
			waiting:  []*store.QueueEntry{job("j1", "a", "h1", "", initial, 1), job("j2", "a", "h2", "", initial, 2), job("j3", "a", "h3", "", initial, 3)},
			running:  []*store.QueueEntry{job("r1", "a", "h4", "", initial, 0)},
			dispatch: []string{"j1"},
			why:      map[string]string{"j2": "vma a: 2 of 2 running", "j3": "vma a: 2 of 2 running"},
		},
		{
			name: "ESXi host limit from the vCenter, the next host's job passes",
			rules: func() *rules {
				r := twoVMAs(10)
				r.vcenters["vc"] = store.SourceLimits{VCenter: 16, ESXiHost: 2, Datastore: 10}
				return r
			},
			waiting:  []*store.QueueEntry{job("j1", "a", "h1", "", initial, 1), job("j2", "b", "h1", "", initial, 2), job("j3", "b", "h2", "", initial, 3)},
			running:  []*store.QueueEntry{job("r1", "a", "h1", "", initial, 0)},
			dispatch: []string{"j1", "j3"},
			why:      map[string]string{"j2": "esxi host h1: 2 of 2 running"},
		},
		{
			name: "datastore limit, tightened by the plan",
			rules: func() *rules {
				r := twoVMAs(10)
				r.plans["p"] = planRules{limits: store.PlanLimits{Datastore: 1}}
				return r
			},
			waiting:  []*store.QueueEntry{job("j1", "a", "h1", "p", initial, 1), job("j2", "a", "h2", "", initial, 2)},
			running:  []*store.QueueEntry{job("r1", "b", "h1", "", initial, 0)},
			dispatch: []string{"j2"},
			why:      map[string]string{"j1": "datastore ds-h1: 1 of 1 running"},
		},
		{
			name: "vCenter limit",
			rules: func() *rules {
				r := twoVMAs(10)
				r.vcenters["vc"] = store.SourceLimits{VCenter: 2, ESXiHost: 4, Datastore: 4}
				return r
			},
			waiting:  []*store.QueueEntry{job("j1", "a", "h1", "", initial, 1), job("j2", "b", "h2", "", initial, 2)},
			running:  []*store.QueueEntry{job("r1", "b", "h3", "", initial, 0)},
			dispatch: []string{"j1"},
			why:      map[string]string{"j2": "vcenter vc: 2 of 2 running"},
		},
		{
			name: "plan max_concurrent",
			rules: func() *rules {
				r := twoVMAs(10)
				r.plans["p"] = planRules{limits: store.PlanLimits{MaxConcurrent: 1}}
				return r
			},
			waiting:  []*store.QueueEntry{job("j1", "a", "h1", "p", initial, 1), job("j2", "b", "h2", "p", initial, 2), job("j3", "b", "h3", "", initial, 3)},
			dispatch: []string{"j1", "j3"},
			why:      map[string]string{"j2": "plan p: 1 of 1 running"},
		},
		{
			name: "a VMA without heartbeat, an unregistered one",
			rules: func() *rules {
				r := twoVMAs(10)
				r.vmas["b"] = vmaSlots{capacity: 4, down: "no heartbeat for 45s"}
				return r
			},
			waiting:  []*store.QueueEntry{job("j1", "b", "h1", "", initial, 1), job("j2", "c", "h2", "", initial, 2), job("j3", "a", "h3", "", initial, 3)},
			dispatch: []string{"j3"},
			why:      map[string]string{"j1": "vma b: no heartbeat for 45s", "j2": "vma c: not registered"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, decisions := decide(tt.waiting, tt.running, tt.rules(), true)
			if !slices.Equal(ids(got), tt.dispatch) {
				t.Errorf("dispatched %v, want %v", ids(got), tt.dispatch)
			}
			for _, e := range tt.waiting {
				d := decisions[e.JobID]
				if d.WaitingFor != tt.why[e.JobID] {
					t.Errorf("%s waits for %q, want %q", e.JobID, d.WaitingFor, tt.why[e.JobID])
				}
				if d.Position < 1 || d.Position > len(tt.waiting) {
					t.Errorf("%s at position %d of %d", e.JobID, d.Position, len(tt.waiting))
				}
			}
		})
	}
}

// TestDecideOrder: priority first; then the turns (plan and kind) in
// rotation, fewest running first; then age.
func TestDecideOrder(t *testing.T) {
	r := twoVMAs(1000)
	r.defaults = store.SourceLimits{VCenter: 1000, ESXiHost: 1000, Datastore: 1000}
	r.planMax = 1000
	r.plans["urgent"] = planRules{priority: 10}
	var waiting []*store.QueueEntry
	// Plan "big" queued 6 initial copies first, then plan "small" 2, then
	// "big" 2 incrementals, and "urgent" one job last of all.
	for i := range 6 {
		waiting = append(waiting, job(fmt.Sprintf("big-init-%d", i), "a", "h", "big", initial, i))
	}
	waiting = append(waiting, job("small-init-0", "a", "h", "small", initial, 10), job("small-init-1", "a", "h", "small", initial, 11))
	waiting = append(waiting, job("big-incr-0", "b", "h", "big", incr, 12), job("big-incr-1", "b", "h", "big", incr, 13))
	waiting = append(waiting, job("urgent-0", "b", "h", "urgent", incr, 20))
	// "big" already runs 1 initial copy.
	running := []*store.QueueEntry{job("big-init-running", "a", "h", "big", initial, -1)}
	got, _ := decide(waiting, running, r, true)
	want := []string{
		"urgent-0",                   // the highest priority, though queued last
		"small-init-0", "big-incr-0", // the turns with nothing running, oldest first: small's copies, big's incrementals
		"big-init-0", "small-init-1", "big-incr-1", // then one of each turn, as they all run one
		"big-init-1", "big-init-2", "big-init-3", "big-init-4", "big-init-5", // the one turn left
	}
	if !slices.Equal(ids(got), want) {
		t.Errorf("order:\n got %v\nwant %v", ids(got), want)
	}
}

// TestDecideBlockedTurnDoesNotHoldOthers: a turn whose next job is blocked
// (its host full) neither stops its later jobs on other hosts nor the other
// turns.
func TestDecideBlockedTurnDoesNotHoldOthers(t *testing.T) {
	r := twoVMAs(10)
	r.defaults = store.SourceLimits{VCenter: 100, ESXiHost: 1, Datastore: 100}
	waiting := []*store.QueueEntry{
		job("p-1", "a", "h1", "p", initial, 1), job("p-2", "a", "h1", "p", initial, 2), job("p-3", "a", "h2", "p", initial, 3),
		job("q-1", "b", "h1", "q", initial, 4), job("q-2", "b", "h3", "q", initial, 5),
	}
	got, d := decide(waiting, nil, r, true)
	if want := []string{"p-1", "q-2", "p-3"}; !slices.Equal(ids(got), want) {
		t.Errorf("dispatched %v, want %v", ids(got), want)
	}
	for _, id := range []string{"p-2", "q-1"} {
		if d[id].WaitingFor != "esxi host h1: 1 of 1 running" {
			t.Errorf("%s waits for %q", id, d[id].WaitingFor)
		}
	}
}
