package queue_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestQueueSurvivesRestart: jobs waiting in the queue when the OMA stops
// wait again after it starts, in the same order, and each is dispatched
// exactly once; every job completes.
func TestQueueSurvivesRestart(t *testing.T) {
	testkit.Long(t)
	var extra []vcsim.VM
	for i := range 3 {
		extra = append(extra, vcsim.VM{Name: fmt.Sprintf("r-vm-%d", i+1), Disks: []int64{8 << 20}, CBT: true, On: true})
	}
	sim := testbed.StartSim(t, vcsim.Config{VMs: 1, Extra: extra, DiskData: 1 << 20,
		BeforeSnapshot: func(string) { time.Sleep(time.Second) }})
	o := testbed.StartOMA(t, testbed.OMAConfig{Ports: 6})
	v := testbed.StartVMA(t, o, testbed.VMAConfig{VCenterCAFile: sim.CAFile, Configure: func(c *appliance.Config) { c.MaxJobs = 1 }})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("OMA log:\n%s\nVMA log:\n%s", o.Logs, v.Logs)
		}
	})
	if code := o.Do(http.MethodPost, "/api/v1/vcenters", map[string]any{"name": "sim", "host": sim.Host, "username": sim.Username,
		"password": sim.Password, "datacenters": []string{vcsim.Datacenter}}, nil); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/vcenters = %d", code)
	}
	var inv struct {
		VMs []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"vms"`
	}
	var vms []string
	testkit.Eventually(t, "the three VMs in the inventory", func() bool {
		o.Do(http.MethodGet, "/api/v1/vms", nil, &inv)
		vms = vms[:0]
		for _, vm := range inv.VMs {
			if strings.HasPrefix(vm.Name, "r-vm-") {
				vms = append(vms, vm.ID)
			}
		}
		return len(vms) == 3
	})
	var ids []string
	for _, id := range vms {
		var j jobView
		if code := o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": id},
			"replication_type": "initial"}, &j); code != http.StatusCreated {
			t.Fatalf("create = %d", code)
		}
		if code := o.Do(http.MethodPost, "/api/v1/replications/"+j.JobID+"/start", map[string]any{}, &j); code != http.StatusAccepted {
			t.Fatalf("start = %d", code)
		}
		ids = append(ids, j.JobID)
	}
	if len(ids) != 3 {
		t.Fatalf("%d jobs, want 3", len(ids))
	}
	type waiting struct {
		Jobs []struct {
			JobID      string `json:"job_id"`
			Position   int    `json:"position"`
			WaitingFor string `json:"waiting_for"`
		} `json:"jobs"`
	}
	var before waiting
	testkit.Eventually(t, "two jobs waiting for the VMA", func() bool {
		o.Do(http.MethodGet, "/api/v1/queue", nil, &before)
		return len(before.Jobs) == 2 && before.Jobs[0].Position == 1 && before.Jobs[1].Position == 2
	})

	o.Restart()
	var after waiting
	testkit.Eventually(t, "the same jobs waiting after the restart", func() bool {
		o.Do(http.MethodGet, "/api/v1/queue", nil, &after)
		return len(after.Jobs) >= 1 && after.Jobs[0].Position == 1
	})
	if after.Jobs[0].JobID != before.Jobs[0].JobID && after.Jobs[0].JobID != before.Jobs[1].JobID {
		t.Errorf("after the restart %s waits first; before it, %s and %s waited", after.Jobs[0].JobID, before.Jobs[0].JobID, before.Jobs[1].JobID)
	}
	testkit.Eventually(t, "every job completed", func() bool { return completed(t, o, ids) })
	dispatched := map[string]int{}
	for _, ev := range jobEvents(t, o) {
		if ev.Type == events.TypeQueueDispatched {
			dispatched[ev.Data.JobID]++
		}
	}
	for _, id := range ids {
		if dispatched[id] != 1 {
			t.Errorf("job %s dispatched %d times, want once", id, dispatched[id])
		}
	}
}
