package queue_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/vcsim"
)

// jobView is a job as GET /api/v1/replications/{id} shows it.
type jobView struct {
	JobID    string `json:"job_id"`
	VMAID    string `json:"vma_id"`
	State    string `json:"state"`
	ESXiHost string `json:"esxi_host"`
	Priority int    `json:"priority"`
	Queue    *struct {
		Position   int    `json:"position"`
		WaitingFor string `json:"waiting_for"`
	} `json:"queue"`
}

// jobEvent is an event of the JOBS stream, as the test reads it.
type jobEvent struct {
	Type string
	Data struct {
		JobID      string `json:"job_id"`
		To         string `json:"to"`
		WaitingFor string `json:"waiting_for"`
	}
}

// jobEvents reads the whole JOBS stream, in order.
func jobEvents(t *testing.T, o *testbed.OMA) []jobEvent {
	t.Helper()
	var out []jobEvent
	for _, ev := range o.StreamEvents(t, bus.StreamJobs, subject.AllJobs) {
		je := jobEvent{Type: ev.Type}
		if err := json.Unmarshal(ev.Data, &je.Data); err != nil {
			t.Fatal(err)
		}
		out = append(out, je)
	}
	return out
}

// completed reports whether every job of ids completed; a job that failed
// or was cancelled fails the test.
func completed(t *testing.T, o *testbed.OMA, ids []string) bool {
	t.Helper()
	for _, id := range ids {
		var j jobView
		o.Do(http.MethodGet, "/api/v1/replications/"+id, nil, &j)
		if j.State == events.JobFailed || j.State == events.JobCancelled {
			t.Fatalf("job %s %s", id, j.State)
		}
		if j.State != events.JobCompleted {
			return false
		}
	}
	return true
}

// TestQueueLimitsThreeVMAs: 20 VMs on 3 ESXi hosts, their jobs spread over
// 3 VMAs, a vCenter limit of 2 jobs per ESXi host (and 20 per datastore:
// the VMs share one, whose default limit, 4, would bind first). Replayed
// from the JOBS
// stream, no host ever has more than 2 jobs dispatched and not ended, nor a
// VMA more than its capacity; the limit binds (jobs wait for it, saying
// so); every job completes; a job started last with a higher priority goes
// before the jobs of its host that were still waiting.
func TestQueueLimitsThreeVMAs(t *testing.T) {
	testkit.Long(t)
	const nVMs, hosts, hostLimit = 20, 3, 2
	var extra []vcsim.VM
	var paths []string
	for i := range nVMs {
		name := fmt.Sprintf("q-vm-%02d", i+1)
		extra = append(extra, vcsim.VM{Name: name, Disks: []int64{8 << 20}, CBT: true, On: true, Host: i % hosts})
		paths = append(paths, "/"+vcsim.Datacenter+"/vm/"+name)
	}
	// Each snapshot takes a moment, so that jobs overlap and the limits bind.
	var snapshotTakes atomic.Int64
	snapshotTakes.Store(int64(300 * time.Millisecond))
	sim := testbed.StartSim(t, vcsim.Config{VMs: 1, Hosts: hosts, Extra: extra, DiskData: 1 << 20,
		BeforeSnapshot: func(string) { time.Sleep(time.Duration(snapshotTakes.Load())) }})
	o := testbed.StartOMA(t, testbed.OMAConfig{Ports: 24, Configure: func(c *appliance.Config) {}})
	var vmaIDs []string
	var logs []*testkit.Buffer
	for i := range 3 {
		v := testbed.StartVMA(t, o, testbed.VMAConfig{ID: fmt.Sprintf("vma-%d", i+1), VCenterCAFile: sim.CAFile})
		vmaIDs, logs = append(vmaIDs, v.ID), append(logs, v.Logs)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("OMA log:\n%s", o.Logs)
			for i, l := range logs {
				t.Logf("%s log:\n%s", vmaIDs[i], l)
			}
		}
	})
	var vc struct {
		VMAs   []string `json:"vmas"`
		Limits struct {
			ESXiHost int `json:"esxi_host"`
		} `json:"limits"`
		Detail string `json:"detail"`
	}
	if code := o.Do(http.MethodPost, "/api/v1/vcenters", map[string]any{"name": "sim", "host": sim.Host, "username": sim.Username,
		"password": sim.Password, "datacenters": []string{vcsim.Datacenter}, "limits": map[string]int{"esxi_host": hostLimit, "datastore": 20}}, &vc); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/vcenters = %d: %s", code, vc.Detail)
	}
	if len(vc.VMAs) != 3 || vc.Limits.ESXiHost != hostLimit {
		t.Fatalf("the vCenter: VMAs %v, esxi_host limit %d", vc.VMAs, vc.Limits.ESXiHost)
	}

	// Every VMA discovered every VM: each job is created for one of them
	// in turn, and started with the registered password.
	type invVM struct {
		ID    string `json:"id"`
		Path  string `json:"path"`
		VMAID string `json:"vma_id"`
	}
	var vms []invVM
	var inv struct {
		VMs []invVM `json:"vms"`
	}
	testkit.Eventually(t, "every VM in the inventory of its VMA", func() bool {
		o.Do(http.MethodGet, "/api/v1/vms", nil, &inv)
		vms = vms[:0]
		for i, p := range paths {
			for _, vm := range inv.VMs {
				if vm.Path == p && vm.VMAID == vmaIDs[i%3] {
					vms = append(vms, vm)
				}
			}
		}
		return len(vms) == nVMs
	})
	host := map[string]string{} // job id -> ESXi host
	vmaOf := map[string]string{}
	var ids []string
	for i, vm := range vms {
		var j jobView
		if code := o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": vm.ID},
			"replication_type": "initial", "vma_id": vm.VMAID}, &j); code != http.StatusCreated {
			t.Fatalf("create a job of %s = %d", vm.Path, code)
		}
		if want := fmt.Sprintf("DC0_C0_H%d", i%hosts); j.ESXiHost != want {
			t.Fatalf("job %s: esxi_host %q, want %q", j.JobID, j.ESXiHost, want)
		}
		host[j.JobID], vmaOf[j.JobID] = j.ESXiHost, j.VMAID
		ids = append(ids, j.JobID)
	}
	last := ids[len(ids)-1]
	for _, id := range ids {
		body := map[string]any{}
		if id == last {
			body["priority"] = 10
		}
		var j jobView
		if code := o.Do(http.MethodPost, "/api/v1/replications/"+id+"/start", body, &j); code != http.StatusAccepted {
			t.Fatalf("start %s = %d", id, code)
		}
	}
	// The queue says why a job waits.
	var q struct {
		Jobs []struct {
			JobID      string `json:"job_id"`
			Position   int    `json:"position"`
			WaitingFor string `json:"waiting_for"`
		} `json:"jobs"`
	}
	sawWaiting := false
	var vmaList struct {
		VMAs []struct {
			ID       string `json:"id"`
			Capacity int    `json:"capacity"`
			Running  int    `json:"running"`
			Queued   int    `json:"queued"`
		} `json:"vmas"`
	}
	busiest, queuedSeen := 0, 0 // the most jobs GET /api/v1/vmas showed one VMA running, waiting
	testkit.Eventually(t, "every job completed", func() bool {
		o.Do(http.MethodGet, "/api/v1/vmas", nil, &vmaList)
		for _, v := range vmaList.VMAs {
			if v.Capacity != 4 || v.Running > v.Capacity {
				t.Errorf("GET /api/v1/vmas: %s has capacity %d and runs %d", v.ID, v.Capacity, v.Running)
			}
			busiest, queuedSeen = max(busiest, v.Running), max(queuedSeen, v.Queued)
		}
		o.Do(http.MethodGet, "/api/v1/queue", nil, &q)
		for _, w := range q.Jobs {
			if strings.HasPrefix(w.WaitingFor, "esxi host DC0_C0_H") && strings.HasSuffix(w.WaitingFor, fmt.Sprintf(": %d of %d running", hostLimit, hostLimit)) && w.Position > 0 {
				sawWaiting = true
			}
		}
		return completed(t, o, ids)
	})
	if !sawWaiting {
		t.Error("GET /api/v1/queue never showed a job waiting for its ESXi host")
	}
	if busiest == 0 || queuedSeen == 0 {
		t.Errorf("GET /api/v1/vmas never showed a VMA running (%d) or with jobs waiting for it (%d)", busiest, queuedSeen)
	}

	// Replay: the running jobs per host and per VMA at every moment.
	perHost, perVMA, running := map[string]int{}, map[string]int{}, map[string]bool{}
	maxHost := 0
	dispatched, queuedForHost := 0, 0
	var order []string // dispatch order
	lastQueued := -1   // len(order) when the last job was queued
	for _, ev := range jobEvents(t, o) {
		id := ev.Data.JobID
		switch ev.Type {
		case events.TypeQueueQueued:
			if strings.HasPrefix(ev.Data.WaitingFor, "esxi host ") {
				queuedForHost++
			}
			if id == last {
				lastQueued = len(order)
			}
		case events.TypeQueueDispatched:
			if running[id] {
				t.Errorf("job %s dispatched twice", id)
			}
			running[id] = true
			dispatched++
			order = append(order, id)
			perHost[host[id]]++
			perVMA[vmaOf[id]]++
			maxHost = max(maxHost, perHost[host[id]])
			if perHost[host[id]] > hostLimit {
				t.Errorf("at %s's dispatch, host %s runs %d jobs: more than its limit %d", id, host[id], perHost[host[id]], hostLimit)
			}
			if perVMA[vmaOf[id]] > 4 {
				t.Errorf("at %s's dispatch, %s runs %d jobs: more than its capacity 4", id, vmaOf[id], perVMA[vmaOf[id]])
			}
		case events.TypeJobStateChanged:
			if running[id] && (ev.Data.To == events.JobCompleted || ev.Data.To == events.JobFailed || ev.Data.To == events.JobCancelled) {
				delete(running, id)
				perHost[host[id]]--
				perVMA[vmaOf[id]]--
			}
		}
	}
	if dispatched != nVMs {
		t.Errorf("%d dispatched events, want %d", dispatched, nVMs)
	}
	if maxHost != hostLimit || queuedForHost == 0 {
		t.Errorf("the host limit never bound: at most %d jobs on a host, %d jobs queued waiting for a host", maxHost, queuedForHost)
	}
	// The high-priority job, queued last, went before every job of its host
	// still waiting when it was queued.
	if lastQueued < 0 {
		t.Fatalf("the last job %s never waited in the queue: the test cannot see its priority at work", last)
	}
	at := slices.Index(order, last)
	for _, id := range order[lastQueued:at] {
		if host[id] == host[last] {
			t.Errorf("job %s of host %s was dispatched before the higher-priority %s", id, host[id], last)
		}
	}

	// A job that names no VMA goes to a VMA allowed for the vCenter, the
	// one with the most free capacity: vma-2 and vma-3 are allowed and
	// idle, so vma-2 (by id); while its job runs, vma-3 has more room.
	snapshotTakes.Store(int64(3 * time.Second)) // the first job holds its slot meanwhile
	if code := o.Do(http.MethodPut, "/api/v1/vcenters/sim", map[string]any{"vmas": []string{"vma-2", "vma-3"}}, &vc); code != http.StatusOK {
		t.Fatalf("PUT vmas = %d: %s", code, vc.Detail)
	}
	// An incremental needs the VMA that holds the VM's copy: vma-1, not
	// allowed any more.
	var p struct {
		Field  string `json:"field"`
		Detail string `json:"detail"`
	}
	if code := o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": vms[0].ID},
		"replication_type": "incremental"}, &p); code != http.StatusConflict || p.Field != "vma_id" || !strings.Contains(p.Detail, "vma-1: not allowed") {
		t.Errorf("an incremental with no VMA named, its copy on a VMA not allowed = %d %+v, want 409 naming vma_id", code, p)
	}
	// A VMA named must be allowed.
	if code := o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": vms[0].ID},
		"replication_type": "initial", "vma_id": "vma-1"}, &p); code != http.StatusBadRequest || p.Field != "vma_id" {
		t.Errorf("a job for a VMA not allowed for the vCenter = %d %+v, want 400 naming vma_id", code, p)
	}
	var first, second jobView
	if code := o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": vms[0].ID},
		"replication_type": "initial"}, &first); code != http.StatusCreated || first.VMAID != "vma-2" {
		t.Fatalf("create with no VMA named = %d, VMA %q; want vma-2", code, first.VMAID)
	}
	if code := o.Do(http.MethodPost, "/api/v1/replications/"+first.JobID+"/start", map[string]any{}, &first); code != http.StatusAccepted {
		t.Fatalf("start = %d", code)
	}
	if code := o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": vms[1].ID},
		"replication_type": "initial"}, &second); code != http.StatusCreated || second.VMAID != "vma-3" {
		t.Fatalf("create with no VMA named while vma-2 runs a job = %d, VMA %q; want vma-3", code, second.VMAID)
	}
}
