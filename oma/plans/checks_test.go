package plans_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/vcsim"
)

// problem is an API error as the tests read it.
type problem struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// vcenterView is a registered vCenter as the API shows it.
type vcenterView struct {
	Name       string    `json:"name"`
	Host       string    `json:"host"`
	VMAs       []string  `json:"vmas"`
	PasswordAt time.Time `json:"password_set_at"`
}

// grepTree returns the files under dir whose bytes hold s, plain or in
// base64 (as JSON holds bytes).
func grepTree(t *testing.T, dir, s string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(s)) || bytes.Contains(data, []byte(base64.StdEncoding.EncodeToString([]byte(s)))) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestVCenterCredentials: a vCenter is registered only with a password
// vCenter takes from a VMA that reaches it; the password is kept only as
// ciphertext (not in state.db, the streams or any log); rotation proves
// the new one; a plan keeps its vCenter from being deleted; a job starts
// with the registered password.
func TestVCenterCredentials(t *testing.T) {
	b := newBed(t, 1)
	o := b.oma
	cases := []struct {
		name   string
		body   map[string]any
		status int
		field  string
	}{
		{"wrong password", map[string]any{"name": "x", "host": b.sim.Host, "username": b.sim.Username, "password": "not-the-password"}, http.StatusBadRequest, "password"},
		{"unreachable host", map[string]any{"name": "x", "host": "127.0.0.1:1", "username": b.sim.Username, "password": b.sim.Password}, http.StatusBadRequest, "host"},
		{"taken name", map[string]any{"name": "sim", "host": b.sim.Host, "username": b.sim.Username, "password": b.sim.Password}, http.StatusConflict, "name"},
		{"unknown datacenter", map[string]any{"name": "x", "host": b.sim.Host, "username": b.sim.Username, "password": b.sim.Password, "datacenters": []string{"NoSuchDC"}}, http.StatusBadRequest, "datacenters[0]"},
		{"bad name", map[string]any{"name": "a b", "host": b.sim.Host, "username": b.sim.Username, "password": b.sim.Password}, http.StatusBadRequest, "name"},
		{"unknown field", map[string]any{"name": "x", "host": b.sim.Host, "username": b.sim.Username, "password": b.sim.Password, "passwd": "x"}, http.StatusBadRequest, "passwd"},
		{"both pins", map[string]any{"name": "x", "host": b.sim.Host, "username": b.sim.Username, "password": b.sim.Password, "thumbprint": "AA:BB", "ca_pem": "x"}, http.StatusBadRequest, "thumbprint"},
	}
	for _, c := range cases {
		var p problem
		if code := o.Do(http.MethodPost, "/api/v1/vcenters", c.body, &p); code != c.status || p.Field != c.field {
			t.Errorf("%s: POST /api/v1/vcenters = %d naming %q (%s), want %d naming %q", c.name, code, p.Field, p.Detail, c.status, c.field)
		}
		if strings.Contains(p.Detail, b.sim.Password) {
			t.Errorf("%s: the answer shows the password: %s", c.name, p.Detail)
		}
	}
	var list struct {
		VCenters []vcenterView `json:"vcenters"`
	}
	if o.Do(http.MethodGet, "/api/v1/vcenters", nil, &list); len(list.VCenters) != 1 || list.VCenters[0].Name != "sim" {
		t.Fatalf("vCenters after the refusals = %+v, want sim alone", list.VCenters)
	}

	// state.db holds the vCenter, its password only sealed.
	if found := grepTree(t, o.Dir, b.sim.Password); len(found) > 0 {
		t.Errorf("the OMA's data dir holds the password in the clear in %v", found)
	}
	if found := grepTree(t, o.Dir, `"password_sealed":"`); len(found) != 1 || filepath.Base(found[0]) != "state.db" {
		t.Errorf("the sealed password is in %v, want state.db alone", found)
	}

	// Reads never show the password.
	for _, path := range []string{"/api/v1/vcenters", "/api/v1/vcenters/sim"} {
		var raw map[string]any
		o.Do(http.MethodGet, path, nil, &raw)
		if s := strings.ToLower(toJSON(t, raw)); strings.Contains(s, "password\"") || strings.Contains(s, strings.ToLower(b.sim.Password)) || strings.Contains(s, "sealed") {
			t.Errorf("GET %s shows a password: %s", path, s)
		}
	}

	// Rotation proves the new password: a wrong one changes nothing.
	var before vcenterView
	o.Do(http.MethodGet, "/api/v1/vcenters/sim", nil, &before)
	var p problem
	if code := o.Do(http.MethodPut, "/api/v1/vcenters/sim", map[string]any{"password": "wrong-again"}, &p); code != http.StatusBadRequest || p.Field != "password" {
		t.Errorf("PUT a wrong password = %d naming %q, want 400 naming password", code, p.Field)
	}
	var after vcenterView
	if o.Do(http.MethodGet, "/api/v1/vcenters/sim", nil, &after); !after.PasswordAt.Equal(before.PasswordAt) {
		t.Errorf("a refused rotation changed password_set_at %s -> %s", before.PasswordAt, after.PasswordAt)
	}
	if code := o.Do(http.MethodPut, "/api/v1/vcenters/sim", map[string]any{"password": b.sim.Password}, &after); code != http.StatusOK || !after.PasswordAt.After(before.PasswordAt) {
		t.Errorf("PUT the right password = %d, password_set_at %s -> %s", code, before.PasswordAt, after.PasswordAt)
	}

	// The VMAs that may use it change the same way: proved through them.
	for _, c := range []struct {
		body   map[string]any
		status int
		field  string
	}{
		{map[string]any{"vmas": []string{"vma-gone"}}, http.StatusBadRequest, "host"},
		{map[string]any{"vmas": []string{}}, http.StatusBadRequest, "vmas"},
		{map[string]any{"vmas": []string{b.vma.ID, b.vma.ID}}, http.StatusBadRequest, "vmas[1]"},
		{map[string]any{}, http.StatusBadRequest, ""},
	} {
		var p problem
		if code := o.Do(http.MethodPut, "/api/v1/vcenters/sim", c.body, &p); code != c.status || p.Field != c.field {
			t.Errorf("PUT %v = %d naming %q (%s), want %d naming %q", c.body, code, p.Field, p.Detail, c.status, c.field)
		}
	}
	var vc vcenterView
	if code := o.Do(http.MethodPut, "/api/v1/vcenters/sim", map[string]any{"vmas": []string{b.vma.ID}}, &vc); code != http.StatusOK || len(vc.VMAs) != 1 || vc.VMAs[0] != b.vma.ID {
		t.Errorf("PUT vmas = %d, %+v", code, vc)
	}

	// A job starts with the registered password: no credentials in the request.
	var job jobView
	if code := o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]any{"id": vmID(t, b, b.paths[0])}, "replication_type": "initial"}, &job); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/replications = %d", code)
	}
	if code := o.Do(http.MethodPost, "/api/v1/replications/"+job.JobID+"/start", map[string]any{}, &job); code != http.StatusAccepted {
		t.Fatalf("start with the registered vCenter = %d", code)
	}
	testkit.Eventually(t, "the job started with the registered password completes", func() bool {
		return b.job(job.JobID).State == events.JobCompleted
	})

	// A plan keeps its vCenter.
	if code := o.Do(http.MethodPost, "/api/v1/plans", map[string]any{"name": "p", "vcenter": "sim", "vms": b.paths, "sync": map[string]any{"interval": "1h"}}, nil); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/plans = %d", code)
	}
	if code := o.Do(http.MethodDelete, "/api/v1/vcenters/sim", nil, &p); code != http.StatusConflict || !strings.Contains(p.Detail, `plan "p"`) {
		t.Errorf("DELETE a vCenter a plan uses = %d (%s), want 409 naming the plan", code, p.Detail)
	}
	if code := o.Do(http.MethodDelete, "/api/v1/plans/p", nil, nil); code != http.StatusNoContent {
		t.Errorf("DELETE /api/v1/plans/p = %d", code)
	}
	if code := o.Do(http.MethodDelete, "/api/v1/vcenters/sim", nil, nil); code != http.StatusNoContent {
		t.Errorf("DELETE an unused vCenter = %d", code)
	}

	// Nor on a command line: the OMA's and the VMA's children (nbdkit...),
	// and the test process itself.
	for _, p := range append(testkit.Descendants(os.Getpid()), testkit.Process{PID: os.Getpid(), Args: os.Args}) {
		if strings.Contains(p.CommandLine(), b.sim.Password) {
			t.Errorf("process %d has the password on its command line: %s", p.PID, p.CommandLine())
		}
	}

	// The password is nowhere in the clear: not in state.db (sealed there
	// while it was registered), the streams, the key file, or the logs.
	b.vma.Stop()
	o.Stop()
	if found := grepTree(t, o.Dir, b.sim.Password); len(found) > 0 {
		t.Errorf("the OMA's data dir holds the password in the clear in %v", found)
	}
	if found := grepTree(t, b.vma.Dir, b.sim.Password); len(found) > 0 {
		t.Errorf("the VMA's data dir holds the password in the clear in %v", found)
	}
	if strings.Contains(o.Logs.String(), b.sim.Password) || strings.Contains(b.vma.Logs.String(), b.sim.Password) {
		t.Error("a log shows the password")
	}
}

// vmID returns the id of the VM at path, from the OMA's inventory.
func vmID(t *testing.T, b *bed, path string) string {
	t.Helper()
	var inv struct {
		VMs []struct{ ID, Path string } `json:"vms"`
	}
	b.oma.Do(http.MethodGet, "/api/v1/vms", nil, &inv)
	for _, vm := range inv.VMs {
		if vm.Path == path {
			return vm.ID
		}
	}
	t.Fatalf("%s is not in the inventory", path)
	return ""
}

// preflightReport is GET /api/v1/plans/{name}/preflight as the tests read it.
type preflightReport struct {
	Status string `json:"status"`
	Errors int    `json:"errors"`
	Blocks bool   `json:"blocks"`
	VMs    []struct {
		Path   string `json:"path"`
		Status string `json:"status"`
		Checks []struct {
			Check, Status, Message string
		} `json:"checks"`
	} `json:"vms"`
	Checks []struct {
		Check, Status, Message string
	} `json:"checks"`
}

// TestPreflightFindsProblems: the preflight finds, on the simulator's VMs,
// a hardware version without change tracking, existing snapshots, an
// independent and a raw-mapped disk, a Windows guest that cannot be
// converted without virtio-win; a plan with errors does not copy,
// a clean plan copies, and a VM in another plan is refused.
func TestPreflightFindsProblems(t *testing.T) {
	mb := int64(8 << 20)
	b := newBed(t, 1,
		vcsim.VM{Name: "old-hw", Disks: []int64{mb}, HardwareVersion: 4},
		vcsim.VM{Name: "snapped", Disks: []int64{mb}, CBT: true, Snapshots: 2},
		vcsim.VM{Name: "independent", Disks: []int64{mb, mb}, CBT: true, IndependentDisks: []int{1}},
		vcsim.VM{Name: "rdm", Disks: []int64{mb, mb}, CBT: true, RDMDisks: []int{1}},
		vcsim.VM{Name: "windows", Disks: []int64{mb}, CBT: true, GuestID: "windows2019srv_64Guest"},
	)
	path := func(name string) string { return "/" + vcsim.Datacenter + "/vm/" + name }
	want := map[string]struct{ check, status, says string }{
		path("old-hw"):      {"cbt", "error", "hardware version 4"},
		path("snapped"):     {"snapshots", "warning", "2 snapshot(s), a chain 2 deep"},
		path("independent"): {"disks", "error", "independent_persistent"},
		path("rdm"):         {"disks", "error", "raw device mapping"},
		path("windows"):     {"conversion", "warning", "virtio-win"},
	}
	var vms []string
	for p := range want {
		vms = append(vms, p)
	}
	var created planView
	if code := b.oma.Do(http.MethodPost, "/api/v1/plans", map[string]any{"name": "risky", "vcenter": "sim", "vms": vms, "sync": map[string]any{"interval": "1h"}}, &created); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/plans = %d", code)
	}
	if created.Preflight == nil || created.Preflight.Errors != 3 || created.Preflight.Warnings < 1 || created.Blocked == "" {
		t.Fatalf("preflight at creation = %+v, blocked %q: want 3 errors, a warning, blocked", created.Preflight, created.Blocked)
	}
	var rep preflightReport
	if code := b.oma.Do(http.MethodGet, "/api/v1/plans/risky/preflight", nil, &rep); code != http.StatusOK || rep.Status != "error" || !rep.Blocks {
		t.Fatalf("GET preflight = %d %+v", code, rep)
	}
	for _, vm := range rep.VMs {
		w := want[vm.Path]
		found := false
		for _, c := range vm.Checks {
			if c.Check == w.check {
				found = true
				if c.Status != w.status || !strings.Contains(c.Message, w.says) {
					t.Errorf("%s: check %s = %s %q, want %s saying %q", vm.Path, c.Check, c.Status, c.Message, w.status, w.says)
				}
			}
			if c.Check == "vma" && c.Status != "ok" {
				t.Errorf("%s: the VMA's login = %s %q", vm.Path, c.Status, c.Message)
			}
		}
		if !found {
			t.Errorf("%s: no %s check in %+v", vm.Path, w.check, vm.Checks)
		}
	}
	if len(rep.Checks) != 1 || rep.Checks[0].Check != "space" || rep.Checks[0].Status != "ok" {
		t.Errorf("plan checks = %+v, want the space check ok", rep.Checks)
	}

	// A VM is in one plan only.
	var p problem
	if code := b.oma.Do(http.MethodPost, "/api/v1/plans", map[string]any{"name": "again", "vcenter": "sim", "vms": []string{b.paths[0], path("rdm")}, "sync": map[string]any{"interval": "1h"}}, &p); code != http.StatusConflict || p.Field != "vms[1]" {
		t.Errorf("a VM of another plan = %d naming %q (%s), want 409 naming vms[1]", code, p.Field, p.Detail)
	}

	// The clean plan copies; the blocked one has not started a job meanwhile.
	var clean planView
	if code := b.oma.Do(http.MethodPost, "/api/v1/plans", map[string]any{"name": "clean", "vcenter": "sim", "vms": []string{b.paths[0]}, "sync": map[string]any{"interval": "1h"}}, &clean); code != http.StatusCreated || clean.Preflight.Errors != 0 || clean.Blocked != "" {
		t.Fatalf("a clean plan = %d, preflight %+v, blocked %q", code, clean.Preflight, clean.Blocked)
	}
	testkit.Eventually(t, "the clean plan's VM synced", func() bool { return b.plan("clean").Counts[events.PlanVMSynced] == 1 })
	if risky := b.plan("risky"); risky.Counts[events.PlanVMPending] != len(want) {
		t.Errorf("the blocked plan's VMs = %v, want %d pending", risky.Counts, len(want))
	}
	var jobs struct {
		Replications []jobView `json:"replications"`
	}
	if b.oma.Do(http.MethodGet, "/api/v1/replications", nil, &jobs); len(jobs.Replications) != 1 {
		t.Errorf("%d jobs, want the clean plan's one", len(jobs.Replications))
	}
}

// TestPlanBadInput: each malformed plan is refused with a 400 naming the
// field, and nothing is stored or published.
func TestPlanBadInput(t *testing.T) {
	b := newBed(t, 2)
	good := func() map[string]any {
		return map[string]any{"name": "p", "vcenter": "sim", "vms": []any{b.paths[0], b.paths[1]}, "sync": map[string]any{"interval": "1h"}}
	}
	with := func(k string, v any) map[string]any {
		m := good()
		m[k] = v
		return m
	}
	cases := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"unknown VM", with("vms", []any{b.paths[0], "/DatabanxDC/vm/no-such-vm"}), "vms[1]"},
		{"VM twice", with("vms", []any{b.paths[0], b.paths[0]}), "vms[1]"},
		{"empty plan", with("vms", []any{}), "vms"},
		{"unknown vCenter", with("vcenter", "nope"), "vcenter"},
		{"no vCenter", with("vcenter", ""), "vcenter"},
		{"bad name", with("name", "a.b"), "name"},
		{"invalid cron", with("sync", map[string]any{"cron": "0 25 * * *"}), "sync.cron"},
		{"interval below the minimum", with("sync", map[string]any{"interval": "500ms"}), "sync.interval"},
		{"no schedule", with("sync", map[string]any{}), "sync"},
		{"interval and cron", with("sync", map[string]any{"interval": "1h", "cron": "0 * * * *"}), "sync"},
		{"bad window", with("sync", map[string]any{"interval": "1h", "window": map[string]any{"start": "25:00", "end": "06:00"}}), "sync.window.start"},
		{"unknown zone", with("sync", map[string]any{"interval": "1h", "window": map[string]any{"start": "22:00", "end": "06:00", "tz": "Mars/Olympus"}}), "sync.window.tz"},
		{"wave names a VM not in the plan", with("waves", [][]string{{"/DatabanxDC/vm/elsewhere"}}), "waves[0][0]"},
		{"empty wave", with("waves", [][]string{{}}), "waves[0]"},
		{"unknown field", with("vm", []string{}), "vm"},
		{"unknown nested field", with("sync", map[string]any{"intervall": "1h"}), "sync.intervall"},
		{"bad on_cbt_reset", with("on_cbt_reset", "maybe"), "on_cbt_reset"},
	}
	for _, c := range cases {
		var p problem
		if code := b.oma.Do(http.MethodPost, "/api/v1/plans", c.body, &p); code != http.StatusBadRequest || p.Field != c.field {
			t.Errorf("%s: POST /api/v1/plans = %d naming %q (%s), want 400 naming %q", c.name, code, p.Field, p.Detail, c.field)
		}
	}
	var list struct {
		Plans []planView `json:"plans"`
	}
	if b.oma.Do(http.MethodGet, "/api/v1/plans", nil, &list); len(list.Plans) != 0 {
		t.Errorf("plans after refusals = %+v, want none", list.Plans)
	}
	if n := len(b.scheduled("p")); n != 0 {
		t.Errorf("%d plan events after refusals", n)
	}

	// Changes are checked too, and change nothing when refused.
	if code := b.oma.Do(http.MethodPost, "/api/v1/plans", good(), nil); code != http.StatusCreated {
		t.Fatalf("POST a good plan = %d", code)
	}
	patches := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"nothing", map[string]any{}, ""},
		{"remove an unknown VM", map[string]any{"remove_vms": []string{"nope"}}, "remove_vms[0]"},
		{"remove every VM", map[string]any{"remove_vms": []string{b.paths[0], b.paths[1]}}, "remove_vms"},
		{"add an unknown VM", map[string]any{"add_vms": []string{"/DatabanxDC/vm/nope"}}, "add_vms[0]"},
		{"a cron below the minimum's syntax", map[string]any{"sync": map[string]any{"cron": "* * *"}}, "sync.cron"},
		{"wave of a stranger", map[string]any{"waves": [][]string{{"/DatabanxDC/vm/nope"}}}, "waves[0][0]"},
	}
	before := b.plan("p")
	for _, c := range patches {
		var p problem
		if code := b.oma.Do(http.MethodPatch, "/api/v1/plans/p", c.body, &p); code != http.StatusBadRequest || p.Field != c.field {
			t.Errorf("PATCH %s = %d naming %q (%s), want 400 naming %q", c.name, code, p.Field, p.Detail, c.field)
		}
	}
	if after := b.plan("p"); len(after.VMs) != 2 || !after.NextDue.Equal(before.NextDue) {
		t.Errorf("after refused changes: %d VMs, next due %s (was %s)", len(after.VMs), after.NextDue, before.NextDue)
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestPreflightManyNames: a plan whose VMs' names together are longer
// than a discover request's filter may be (4,096 bytes) still gets a
// rediscovery in its preflight: every VM's vma check is ok.
func TestPreflightManyNames(t *testing.T) {
	var extra []vcsim.VM
	var vms []string
	for i := range 52 { // 52 names of 80 characters and their commas: 4,211 bytes
		name := fmt.Sprintf("long-%02d-%s", i, strings.Repeat("x", 72))
		extra = append(extra, vcsim.VM{Name: name, Disks: []int64{1 << 20}, CBT: true})
		vms = append(vms, "/"+vcsim.Datacenter+"/vm/"+name)
	}
	b := newBed(t, 0, extra...)
	if code := b.oma.Do(http.MethodPost, "/api/v1/plans", map[string]any{"name": "wide", "vcenter": "sim", "vms": vms, "sync": map[string]any{"interval": "1h"}}, nil); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/plans = %d", code)
	}
	var rep preflightReport
	if code := b.oma.Do(http.MethodGet, "/api/v1/plans/wide/preflight", nil, &rep); code != http.StatusOK || len(rep.VMs) != len(vms) {
		t.Fatalf("GET preflight = %d with %d VMs, want 200 with %d", code, len(rep.VMs), len(vms))
	}
	for _, vm := range rep.VMs {
		for _, c := range vm.Checks {
			if c.Check == "vma" && c.Status != "ok" {
				t.Fatalf("%s: vma check %s: %s", vm.Path, c.Status, c.Message)
			}
		}
	}
}
