package plans_test

import (
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestVCenterPinnedByRegistration runs a VMA that does not trust the
// simulator by itself (no -vcenter-ca): registering the vCenter without a
// pin fails, as no VMA can log in; with its CA as ca_pem, or with its
// certificate's thumbprint, it succeeds. The registered pin then reaches
// every login of the VMA: the plan's discovery and its sync, and a job
// started with the registered credentials.
func TestVCenterPinnedByRegistration(t *testing.T) {
	b := &bed{t: t}
	var extra []vcsim.VM
	for i := range 2 {
		name := fmt.Sprintf("pin-vm-%02d", i+1)
		extra = append(extra, vcsim.VM{Name: name, Disks: []int64{16 << 20}, CBT: true, On: true})
		b.paths = append(b.paths, "/"+vcsim.Datacenter+"/vm/"+name)
	}
	b.sim = testbed.StartSim(t, vcsim.Config{VMs: 1, Extra: extra, DiskData: 1 << 20})
	b.oma = testbed.StartOMA(t, testbed.OMAConfig{Ports: 4, Configure: func(c *appliance.Config) { c.PlanPoll = 200 * time.Millisecond }})
	b.vma = testbed.StartVMA(t, b.oma, testbed.VMAConfig{}) // no VCenterCAFile: the simulator is not trusted
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("OMA log:\n%s\nVMA log:\n%s", b.oma.Logs, b.vma.Logs)
		}
	})
	caPEM, err := os.ReadFile(b.sim.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		t.Fatalf("%s holds no PEM", b.sim.CAFile)
	}
	sum := sha256.Sum256(block.Bytes)
	pairs := make([]string, len(sum))
	for i, c := range sum {
		pairs[i] = fmt.Sprintf("%02X", c)
	}
	thumbprint := strings.Join(pairs, ":")

	register := func(name string, pin map[string]any) (int, vcenterView, problem) {
		t.Helper()
		body := map[string]any{"name": name, "host": b.sim.Host, "username": b.sim.Username, "password": b.sim.Password,
			"datacenters": []string{vcsim.Datacenter}}
		for k, v := range pin {
			body[k] = v
		}
		var v struct {
			vcenterView
			problem
		}
		code := b.oma.Do(http.MethodPost, "/api/v1/vcenters", body, &v)
		return code, v.vcenterView, v.problem
	}

	// Without a pin the VMA refuses the simulator's certificate.
	code, _, p := register("sim", nil)
	if code != http.StatusBadRequest || p.Field != "host" || !strings.Contains(p.Detail, b.sim.Host) || !strings.Contains(p.Detail, "certificate") {
		t.Fatalf("POST /api/v1/vcenters without a pin = %d naming %q (%s), want 400 naming host and the certificate", code, p.Field, p.Detail)
	}
	// With the simulator's CA, or its certificate's thumbprint, it logs in.
	for _, c := range []struct {
		name string
		pin  map[string]any
	}{
		{"sim-thumbprint", map[string]any{"thumbprint": thumbprint}},
		{"sim", map[string]any{"ca_pem": string(caPEM)}},
	} {
		code, v, p := register(c.name, c.pin)
		if code != http.StatusCreated || !slices.Equal(v.VMAs, []string{b.vma.ID}) {
			t.Fatalf("POST /api/v1/vcenters %s with %v = %d (%s), VMAs %v: want 201 and %s", c.name, slices.Collect(maps.Keys(c.pin)), code, p.Detail, v.VMAs, b.vma.ID)
		}
	}
	if code := b.oma.Do(http.MethodDelete, "/api/v1/vcenters/sim-thumbprint", nil, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE /api/v1/vcenters/sim-thumbprint = %d", code)
	}

	// A job started with the registered credentials logs in with the pin.
	var job jobView
	if code := b.oma.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]any{"id": vmID(t, b, b.paths[0])}, "replication_type": "initial"}, &job); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/replications = %d", code)
	}
	if code := b.oma.Do(http.MethodPost, "/api/v1/replications/"+job.JobID+"/start", map[string]any{}, &job); code != http.StatusAccepted {
		t.Fatalf("start with the registered vCenter = %d", code)
	}
	// So do a plan's discovery and its first sync.
	var created planView
	if code := b.oma.Do(http.MethodPost, "/api/v1/plans", map[string]any{"name": "pinned", "vcenter": "sim", "vms": b.paths[1:],
		"sync": map[string]any{"interval": "1h"}}, &created); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/plans = %d", code)
	}
	if created.Preflight == nil || created.Preflight.Errors != 0 || created.Blocked != "" {
		t.Fatalf("the plan's preflight (its VMA logs in again) = %+v, blocked %q", created.Preflight, created.Blocked)
	}
	testkit.Eventually(t, "the started job and the plan's first sync complete", func() bool {
		switch st := b.job(job.JobID).State; st {
		case events.JobFailed, events.JobCancelled:
			t.Fatalf("the job started with the registered vCenter is %s", st)
		case events.JobCompleted:
		default:
			return false
		}
		p := b.plan("pinned")
		if len(p.VMs) == 1 && p.VMs[0].LastError != "" {
			t.Fatalf("the plan's VM = %+v", p.VMs[0])
		}
		return len(p.VMs) == 1 && p.VMs[0].LastSync != nil
	})
}
