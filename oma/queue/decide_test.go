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

func TestRateAt(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	windows := []store.RateWindow{
		{Start: "08:00", End: "20:00", TZ: "Europe/Berlin", Rate: 50 << 20},
		{Start: "22:00", End: "06:00", Rate: 10 << 20}, // UTC, over midnight
	}
	tests := []struct {
		at   time.Time
		want int64
	}{
		{time.Date(2026, 12, 4, 10, 0, 0, 0, berlin), 50 << 20},
		{time.Date(2026, 12, 4, 20, 0, 0, 0, berlin), 0}, // the end is outside
		{time.Date(2026, 12, 4, 23, 30, 0, 0, time.UTC), 10 << 20},
		{time.Date(2026, 12, 5, 5, 59, 0, 0, time.UTC), 10 << 20},
		{time.Date(2026, 7, 4, 6, 30, 0, 0, time.UTC), 50 << 20}, // 08:30 in Berlin's summer
	}
	for _, tt := range tests {
		if got := RateAt(0, windows, tt.at); got != tt.want {
			t.Errorf("RateAt(%s) = %d, want %d", tt.at, got, tt.want)
		}
	}
	if got := RateAt(7, nil, t0); got != 7 {
		t.Errorf("RateAt without windows = %d, want the base 7", got)
	}
}

// TestRates: each running job gets the lowest of its own limit and its
// even share of its plan's, its VMA's and the global limit.
func TestRates(t *testing.T) {
	r := twoVMAs(4)
	r.vmaRates = map[string]int64{"a": 300}
	r.planRates = map[string]int64{"p": 1000}
	r.globalRate = 2000
	own := job("own", "b", "h1", "", initial, 1)
	own.RateLimit = 50
	running := []*store.QueueEntry{
		job("a1", "a", "h1", "", initial, 1), job("a2", "a", "h1", "p", initial, 2), job("a3", "a", "h1", "p", initial, 3),
		job("b1", "b", "h1", "p", initial, 4), own,
	}
	got := r.rates(running)
	want := map[string]int64{
		"a1": 100, "a2": 100, "a3": 100, // VMA a's 300 over its 3 jobs
		"b1":  333, // plan p's 1,000 over 3, under the global 2,000 over 5
		"own": 50,  // its own
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("job %s gets %d B/s, want %d", id, got[id], w)
		}
	}
	r.globalRate, r.vmaRates, r.planRates = 0, nil, nil
	if got := r.rates(running[:1]); got["a1"] != 0 {
		t.Errorf("without limits a job gets %d, want 0 (none)", got["a1"])
	}
}
