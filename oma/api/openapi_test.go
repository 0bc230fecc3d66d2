package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/api"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/openapi/openapitest"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestOpenAPI checks the OMA's API against its OpenAPI document: the
// document's operations are the router's, and a walk through every
// operation on a real OMA, VMA, simulator, nbdkit and qemu (a plan synced,
// a job paused, resumed and cancelled, a failed sync retried, cutovers cut
// over, rolled back and committed, a boot check that times out with its
// console and screen) sends only requests the document allows and gets
// only answers it describes, errors too: each operation answers 2xx at
// least once.
func TestOpenAPI(t *testing.T) {
	testkit.Long(t)
	img := testbed.BusyboxGuest(t, testbed.GuestBoots)
	sim := testbed.StartSim(t, vcsim.Config{VMs: 1, DiskData: 2 << 20, Extra: []vcsim.VM{
		{Name: "bbguest", Disks: []int64{80 << 20}, CBT: true, On: true, Image: img},
		{Name: "plain-1", Disks: []int64{8 << 20}, CBT: true, On: true},
		{Name: "plain-2", Disks: []int64{8 << 20}, CBT: true, On: true},
	}})
	o := testbed.StartOMA(t, testbed.OMAConfig{Ports: 12, Configure: func(c *appliance.Config) {
		c.MinSyncInterval, c.PlanPoll = time.Second, 200*time.Millisecond
		c.Cutover.Accel, c.Cutover.Poll = "tcg", 100*time.Millisecond
		c.Cutover.BootTimeout = 15 * time.Second // the boot prompt asked for never comes
	}})
	v := testbed.StartVMA(t, o, testbed.VMAConfig{VCenterCAFile: sim.CAFile})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("OMA log:\n%s\nVMA log:\n%s", o.Logs, v.Logs)
		}
	})

	var raw json.RawMessage
	if code := testbed.Do(t, http.MethodGet, o.URL+"/api/v1/openapi.json", "", nil, &raw); code != http.StatusOK {
		t.Fatalf("GET /api/v1/openapi.json = %d", code)
	}
	chk := openapitest.New(t, raw)
	chk.MatchesRouter(t, api.New(nil, nil, nil, api.Config{Metrics: http.NotFoundHandler()}).Router())
	c := chk.NewClient(o.URL, o.Token)

	// Health, the document and the metrics; the errors of authentication
	// and scope.
	c.Send(http.MethodGet, "/api/v1/health", "", nil, nil, false)
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/health", nil, nil)
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/openapi.json", nil, nil)
	c.Must(http.StatusOK, http.MethodGet, "/metrics", nil, nil)
	if code := c.Send(http.MethodGet, "/api/v1/replications", "", nil, nil, false); code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/replications without a token = %d, want 401", code)
	}
	var reader struct {
		Token string `json:"token"`
	}
	c.Must(http.StatusCreated, http.MethodPost, "/api/v1/tokens", map[string]string{"name": "reader", "scope": "read"}, &reader)
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/tokens", nil, nil)
	var self struct {
		Name, Scope string
	}
	if c.Send(http.MethodGet, "/api/v1/token", reader.Token, nil, &self, false); self.Name != "reader" || self.Scope != "read" {
		t.Errorf("GET /api/v1/token with the read token = %+v, want reader, read", self)
	}
	if code := c.Send(http.MethodPost, "/api/v1/plans", reader.Token, map[string]any{"name": "x"}, nil, false); code != http.StatusForbidden {
		t.Errorf("POST /api/v1/plans with a read token = %d, want 403", code)
	}
	if code := c.Send(http.MethodPost, "/api/v1/tokens", o.Token, `{"name": 7}`, nil, true); code != http.StatusBadRequest {
		t.Errorf("POST /api/v1/tokens with a number for a name = %d, want 400", code)
	}
	if code := c.Do(http.MethodGet, "/api/v1/replications/no-such-job", nil, nil); code != http.StatusNotFound {
		t.Errorf("GET an unknown job = %d, want 404", code)
	}

	// vCenters, discovery, inventory, VMAs, limits.
	vc := map[string]any{"name": "sim", "host": sim.Host, "username": sim.Username, "password": sim.Password, "datacenters": []string{vcsim.Datacenter}}
	c.Must(http.StatusCreated, http.MethodPost, "/api/v1/vcenters", vc, nil)
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/vcenters", nil, nil)
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/vcenters/sim", nil, nil)
	c.Must(http.StatusOK, http.MethodPut, "/api/v1/vcenters/sim", map[string]any{"vmas": []string{v.ID}}, nil)
	vc["name"] = "spare"
	c.Must(http.StatusCreated, http.MethodPost, "/api/v1/vcenters", vc, nil)
	c.Must(http.StatusNoContent, http.MethodDelete, "/api/v1/vcenters/spare", nil, nil)
	var found struct {
		VMs []events.VM `json:"vms"`
	}
	c.Must(http.StatusOK, http.MethodPost, "/api/v1/discover", map[string]any{"vcenter": sim.Host, "username": sim.Username, "password": sim.Password}, &found)
	ids := map[string]string{}
	for _, vm := range found.VMs {
		ids[vm.Name] = vm.ID
	}
	testkit.Eventually(t, "the inventory", func() bool {
		var inv struct {
			VMs []any `json:"vms"`
		}
		c.Must(http.StatusOK, http.MethodGet, "/api/v1/vms", nil, &inv)
		return len(inv.VMs) == len(found.VMs)
	})
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/vmas", nil, nil)
	c.Must(http.StatusCreated, http.MethodPost, "/api/v1/vmas", map[string]any{"id": "vma-spare"}, nil)
	c.Must(http.StatusOK, http.MethodPatch, "/api/v1/vmas/"+v.ID, map[string]any{"rate": 0}, nil)
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/limits", nil, nil)
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/queue", nil, nil)

	// A job: slowed down, started with the registered vCenter's
	// credentials, paused, resumed, cancelled.
	var job struct {
		JobID string `json:"job_id"`
		State string `json:"state"`
	}
	c.Must(http.StatusCreated, http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]any{"id": ids[vcsim.SeedVM]}, "replication_type": "initial"}, &job)
	c.Must(http.StatusOK, http.MethodPatch, "/api/v1/replications/"+job.JobID, map[string]any{"rate": 64 << 10}, nil)
	c.Must(http.StatusAccepted, http.MethodPost, "/api/v1/replications/"+job.JobID+"/start", map[string]any{}, nil)
	jobIn := func(states ...string) func() bool {
		return func() bool {
			c.Must(http.StatusOK, http.MethodGet, "/api/v1/replications/"+job.JobID, nil, &job)
			return strings.Contains(" "+strings.Join(states, " ")+" ", " "+job.State+" ")
		}
	}
	testkit.Eventually(t, "the job copying", jobIn(events.JobCopying))
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/replications?state=copying", nil, nil)
	c.Must(http.StatusAccepted, http.MethodPost, "/api/v1/replications/"+job.JobID+"/pause", nil, nil)
	testkit.Eventually(t, "the job paused", jobIn(events.JobPaused))
	c.Must(http.StatusAccepted, http.MethodPost, "/api/v1/replications/"+job.JobID+"/resume", nil, nil)
	c.Must(http.StatusOK, http.MethodDelete, "/api/v1/replications/"+job.JobID, nil, nil)
	testkit.Eventually(t, "the job cancelled", jobIn(events.JobCancelled))

	// A plan whose first sync crawls and is cancelled, so that its VM fails
	// and is retried; then synced, changed, checked, paused, resumed,
	// synced again.
	c.Must(http.StatusOK, http.MethodPatch, "/api/v1/limits", map[string]any{"rate": 64 << 10}, nil)
	path := func(name string) string { return "/" + vcsim.Datacenter + "/vm/" + name }
	c.Must(http.StatusCreated, http.MethodPost, "/api/v1/plans", map[string]any{"name": "p1", "vcenter": "sim", "vms": []string{path("plain-1")}, "sync": map[string]any{"interval": "1h"}}, nil)
	type planView struct {
		VMs []struct {
			ID    string `json:"id"`
			State string `json:"state"`
			Job   string `json:"job"`
		} `json:"vms"`
	}
	var p planView
	planVM := func(plan, state string) func() bool {
		return func() bool {
			c.Must(http.StatusOK, http.MethodGet, "/api/v1/plans/"+plan, nil, &p)
			return len(p.VMs) == 1 && p.VMs[0].State == state
		}
	}
	var copying struct {
		Replications []struct {
			JobID string `json:"job_id"`
			Plan  string `json:"plan"`
		} `json:"replications"`
	}
	testkit.Eventually(t, "the plan's sync copying", func() bool {
		c.Must(http.StatusOK, http.MethodGet, "/api/v1/replications?vm="+ids["plain-1"], nil, &copying)
		return len(copying.Replications) == 1
	})
	job.JobID = copying.Replications[0].JobID
	c.Must(http.StatusOK, http.MethodDelete, "/api/v1/replications/"+job.JobID, nil, nil)
	testkit.Eventually(t, "the plan's VM failed", planVM("p1", events.PlanVMFailed))
	c.Must(http.StatusOK, http.MethodPatch, "/api/v1/limits", map[string]any{"rate": 0}, nil)
	c.Must(http.StatusOK, http.MethodPost, "/api/v1/plans/p1/vms/"+ids["plain-1"]+"/retry", nil, nil)
	testkit.Eventually(t, "the plan's VM synced", planVM("p1", events.PlanVMSynced))
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/plans", nil, nil)
	c.Must(http.StatusOK, http.MethodPatch, "/api/v1/plans/p1", map[string]any{"priority": 5}, nil)
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/plans/p1/preflight", nil, nil)
	c.Must(http.StatusOK, http.MethodPost, "/api/v1/plans/p1/pause", nil, nil)
	c.Must(http.StatusOK, http.MethodPost, "/api/v1/plans/p1/resume", nil, nil)
	c.Must(http.StatusOK, http.MethodPost, "/api/v1/plans/p1/sync", nil, nil)
	testkit.Eventually(t, "the plan's VM synced again", planVM("p1", events.PlanVMSynced))

	// Cutovers without conversion or boot check: a plan's, rolled back;
	// the VM's again, committed; another plan's, committed.
	quick := map[string]any{"convert": false, "boot_check": false, "power_off": "hard"}
	cutState := func(vm string, states ...string) func() bool {
		return func() bool {
			var cut struct {
				State string `json:"state"`
			}
			c.Must(http.StatusOK, http.MethodGet, "/api/v1/vms/"+ids[vm]+"/cutover", nil, &cut)
			return strings.Contains(" "+strings.Join(states, " ")+" ", " "+cut.State+" ")
		}
	}
	c.Must(http.StatusAccepted, http.MethodPost, "/api/v1/plans/p1/cutover", quick, nil)
	testkit.Eventually(t, "plain-1 cut over", cutState("plain-1", events.CutoverCutOver))
	c.Must(http.StatusAccepted, http.MethodPost, "/api/v1/plans/p1/cutover/rollback", map[string]any{}, nil)
	testkit.Eventually(t, "plain-1 rolled back", cutState("plain-1", events.CutoverRolledBack))
	c.Must(http.StatusAccepted, http.MethodPost, "/api/v1/vms/"+ids["plain-1"]+"/cutover", quick, nil)
	testkit.Eventually(t, "plain-1 cut over again", cutState("plain-1", events.CutoverCutOver))
	c.Must(http.StatusAccepted, http.MethodPost, "/api/v1/vms/"+ids["plain-1"]+"/cutover/commit", nil, nil)

	c.Must(http.StatusCreated, http.MethodPost, "/api/v1/plans", map[string]any{"name": "p2", "vcenter": "sim", "vms": []string{path("plain-2")}, "sync": map[string]any{"interval": "1h"}}, nil)
	testkit.Eventually(t, "p2 synced", planVM("p2", events.PlanVMSynced))
	c.Must(http.StatusAccepted, http.MethodPost, "/api/v1/plans/p2/cutover", quick, nil)
	testkit.Eventually(t, "plain-2 cut over", cutState("plain-2", events.CutoverCutOver))
	c.Must(http.StatusAccepted, http.MethodPost, "/api/v1/plans/p2/cutover/commit", map[string]any{"vms": []string{ids["plain-2"]}}, nil)

	// A boot check that waits for a prompt the guest never prints: its
	// console and its screen at the timeout, then a rollback.
	c.Must(http.StatusCreated, http.MethodPost, "/api/v1/plans", map[string]any{"name": "p3", "vcenter": "sim", "vms": []string{path("bbguest")}, "sync": map[string]any{"interval": "1h"}}, nil)
	testkit.Eventually(t, "p3 synced", planVM("p3", events.PlanVMSynced))
	c.Must(http.StatusAccepted, http.MethodPost, "/api/v1/vms/"+ids["bbguest"]+"/cutover",
		map[string]any{"convert": false, "boot_check": true, "boot_prompt": "never-printed-prompt:", "power_off": "hard"}, nil)
	testkit.Eventually(t, "bbguest's boot check failed", cutState("bbguest", events.CutoverFailed))
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/vms/"+ids["bbguest"]+"/cutover/console", nil, nil)
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/vms/"+ids["bbguest"]+"/cutover/screenshot", nil, nil)
	c.Must(http.StatusAccepted, http.MethodPost, "/api/v1/vms/"+ids["bbguest"]+"/cutover/rollback", nil, nil)
	testkit.Eventually(t, "bbguest rolled back", cutState("bbguest", events.CutoverRolledBack))

	// What is left to remove.
	c.Must(http.StatusCreated, http.MethodPost, "/api/v1/plans", map[string]any{"name": "p4", "vcenter": "sim", "vms": []string{path(vcsim.SeedVM)}, "sync": map[string]any{"interval": "1h"}}, nil)
	c.Must(http.StatusNoContent, http.MethodDelete, "/api/v1/plans/p4", nil, nil)
	c.Must(http.StatusNoContent, http.MethodDelete, "/api/v1/tokens/reader", nil, nil)

	chk.Covered(t)
}
