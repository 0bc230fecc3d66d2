package cutover_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// cutoverView is GET /api/v1/vms/{id}/cutover as the tests read it.
type cutoverView struct {
	ID          string          `json:"id"`
	State       string          `json:"state"`
	FailedStep  string          `json:"failed_step"`
	Error       string          `json:"error"`
	Attempt     int             `json:"attempt"`
	PowerBefore string          `json:"power_before"`
	PowerMethod string          `json:"power_method"`
	FinalJob    string          `json:"final_job"`
	DownSince   *time.Time      `json:"down_since"`
	FinalBytes  int64           `json:"final_sync_bytes"`
	Converted   bool            `json:"converted"`
	Measured    events.Downtime `json:"measured"`
	Predicted   *events.Downtime
	Passes      []struct {
		Job              string  `json:"job"`
		BytesChanged     int64   `json:"bytes_changed"`
		PredictedSeconds float64 `json:"predicted_seconds"`
	} `json:"passes"`
	Boot *struct {
		Passed  bool    `json:"passed"`
		Accel   string  `json:"accel"`
		Seconds float64 `json:"seconds"`
		Reason  string  `json:"reason"`
	} `json:"boot"`
	Target *struct {
		Dir   string `json:"dir"`
		Disks []struct {
			Key    int32  `json:"key"`
			Path   string `json:"path"`
			Format string `json:"format"`
			Root   bool   `json:"root"`
		} `json:"disks"`
		DomainXML  string   `json:"domain_xml"`
		CloudStack []string `json:"cloudstack"`
	} `json:"target"`
	Prediction *struct {
		Downtime events.Downtime   `json:"downtime"`
		Basis    map[string]string `json:"basis"`
	} `json:"prediction"`
	Detail string `json:"detail"`
	Field  string `json:"field"`
}

// bed is an OMA, a VMA and a simulated vCenter registered as "sim", with
// the VMs of a plan "cut" copied once.
type bed struct {
	t     testing.TB
	sim   *vcsim.Simulator
	oma   *testbed.OMA
	vma   *testbed.VMA
	ids   map[string]string // VM name to id
	files map[string]string // VM name to its first disk's flat file
}

// Disk size of the guests' VMs: the 64 MiB image and 16 MiB past it,
// outside its partition, where a test writes as the guest would.
const (
	guestDisk  = 80 << 20
	guestWrite = 70 << 20
)

func newBed(t testing.TB, vms []vcsim.VM, ignoreShutdown ...string) *bed {
	t.Helper()
	return newBedWith(t, vms, nil, ignoreShutdown...)
}

// newBedWith is newBed with the OMA's configuration changed by configure.
func newBedWith(t testing.TB, vms []vcsim.VM, configure func(*appliance.Config), ignoreShutdown ...string) *bed {
	t.Helper()
	b := &bed{t: t, ids: map[string]string{}, files: map[string]string{}}
	b.sim = testbed.StartSim(t, vcsim.Config{VMs: 1, Extra: vms, DiskData: -1,
		GuestShutdown: func(vm string) bool { return !slices.Contains(ignoreShutdown, vm) }})
	b.oma = testbed.StartOMA(t, testbed.OMAConfig{Ports: 12, Configure: func(c *appliance.Config) {
		c.MinSyncInterval, c.PlanPoll = time.Second, 200*time.Millisecond
		c.Cutover.Accel = "tcg" // KVM does not run guests on these machines (GUESTS.md); bootcheck's own test probes it
		c.Cutover.Poll = 100 * time.Millisecond
		if configure != nil {
			configure(c)
		}
	}})
	b.vma = testbed.StartVMA(t, b.oma, testbed.VMAConfig{VCenterCAFile: b.sim.CAFile})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("OMA log:\n%s\nVMA log:\n%s", b.oma.Logs, b.vma.Logs)
		}
	})
	var vc struct {
		Detail string `json:"detail"`
	}
	if code := b.oma.Do(http.MethodPost, "/api/v1/vcenters", map[string]any{"name": "sim", "host": b.sim.Host,
		"username": b.sim.Username, "password": b.sim.Password, "datacenters": []string{vcsim.Datacenter}}, &vc); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/vcenters = %d: %s", code, vc.Detail)
	}
	var paths []string
	for _, vm := range vms {
		paths = append(paths, "/"+vcsim.Datacenter+"/vm/"+vm.Name)
	}
	var p struct {
		VMs []struct {
			ID    string `json:"id"`
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"vms"`
		Detail string `json:"detail"`
	}
	if code := b.oma.Do(http.MethodPost, "/api/v1/plans", map[string]any{"name": "cut", "vcenter": "sim", "vms": paths,
		"sync": map[string]any{"interval": "1h"}}, &p); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/plans = %d: %s", code, p.Detail)
	}
	b.waitFor("the plan's initial copies", func() bool {
		b.oma.Do(http.MethodGet, "/api/v1/plans/cut", nil, &p)
		for _, vm := range p.VMs {
			if vm.State != events.PlanVMSynced {
				return false
			}
		}
		return true
	})
	for _, vm := range p.VMs {
		b.ids[vm.Name] = vm.ID
	}
	return b
}

// waitFor polls cond every 200 ms until it holds, as long as the test may wait.
func (b *bed) waitFor(what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(testkit.Wait(b.t))
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cutover asks for the cutover of VM name and returns the status code and answer.
func (b *bed) cutover(name string, body map[string]any) (int, cutoverView) {
	b.t.Helper()
	var c cutoverView
	code := b.oma.Do(http.MethodPost, "/api/v1/vms/"+b.ids[name]+"/cutover", body, &c)
	return code, c
}

// get returns VM name's cutover.
func (b *bed) get(name string) cutoverView {
	b.t.Helper()
	var c cutoverView
	if code := b.oma.Do(http.MethodGet, "/api/v1/vms/"+b.ids[name]+"/cutover", nil, &c); code != http.StatusOK {
		b.t.Fatalf("GET cutover of %s = %d: %s", name, code, c.Detail)
	}
	return c
}

// await waits until VM name's cutover is in one of the states at rest and
// returns it.
func (b *bed) await(name string) cutoverView {
	b.t.Helper()
	var c cutoverView
	b.waitFor("the cutover of "+name+" to come to rest", func() bool {
		c = b.get(name)
		switch c.State {
		case events.CutoverCutOver, events.CutoverFailed, events.CutoverRolledBack, events.CutoverCommitted, events.CutoverBudgetUnmet:
			return true
		}
		return false
	})
	return c
}

// power returns the power state of VM name, as the VMA discovers it.
func (b *bed) power(name string) string {
	b.t.Helper()
	for _, vm := range b.oma.Discover(map[string]any{"vcenter": b.sim.Host, "username": b.sim.Username, "password": b.sim.Password}) {
		if vm.Name == name {
			return vm.PowerState
		}
	}
	b.t.Fatalf("VM %s not discovered", name)
	return ""
}

// jobCount counts the jobs of VM name.
func (b *bed) jobCount(name string) int {
	b.t.Helper()
	var list struct {
		Replications []struct {
			SourceVM struct {
				ID string `json:"id"`
			} `json:"source_vm"`
		} `json:"replications"`
	}
	if code := b.oma.Do(http.MethodGet, "/api/v1/replications", nil, &list); code != http.StatusOK {
		b.t.Fatalf("GET /api/v1/replications = %d", code)
	}
	n := 0
	for _, r := range list.Replications {
		if r.SourceVM.ID == b.ids[name] {
			n++
		}
	}
	return n
}

// volume returns the replica file of the first disk that job wrote.
func (b *bed) volume(job string) string {
	b.t.Helper()
	var j struct {
		Type  string `json:"replication_type"`
		Disks []struct {
			VolumePath string `json:"volume_path"`
		} `json:"disks"`
	}
	if code := b.oma.Do(http.MethodGet, "/api/v1/replications/"+job, nil, &j); code != http.StatusOK || len(j.Disks) == 0 {
		b.t.Fatalf("GET /api/v1/replications/%s = %d, %d disks", job, code, len(j.Disks))
	}
	return j.Disks[0].VolumePath
}

// write writes n bytes of fresh data at off into the first disk of VM name.
func (b *bed) write(name string, off int64, n int, seed byte) {
	b.t.Helper()
	f, err := os.OpenFile(b.sourceFile(name), os.O_WRONLY, 0)
	if err != nil {
		b.t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(i*13) ^ seed
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		b.t.Fatal(err)
	}
}

// syncedJob is a job as GET /api/v1/replications lists it.
type syncedJob struct {
	JobID        string `json:"job_id"`
	Type         string `json:"replication_type"`
	State        string `json:"state"`
	BytesWritten int64  `json:"bytes_written"`
	SourceVM     struct {
		ID string `json:"id"`
	} `json:"source_vm"`
}

// syncAfter waits for a completed incremental job of VM name other than
// the one named not (and those before it) and returns it.
func (b *bed) syncAfter(name, not string) syncedJob {
	b.t.Helper()
	var last syncedJob
	b.waitFor("a sync of "+name+" after "+not, func() bool {
		var list struct {
			Replications []json.RawMessage `json:"replications"`
		}
		b.oma.Do(http.MethodGet, "/api/v1/replications", nil, &list)
		for _, raw := range list.Replications {
			var j syncedJob
			if err := json.Unmarshal(raw, &j); err != nil {
				b.t.Fatal(err)
			}
			if j.SourceVM.ID == b.ids[name] && j.JobID != not && j.JobID > not && j.Type == events.ReplicationIncremental && j.State == events.JobCompleted {
				last = j
				return true
			}
		}
		return false
	})
	return last
}

// sourceFile returns the flat file of VM name's first disk.
func (b *bed) sourceFile(name string) string {
	b.t.Helper()
	if f, ok := b.files[name]; ok {
		return f
	}
	var key int32
	for _, vm := range b.oma.Discover(map[string]any{"vcenter": b.sim.Host, "username": b.sim.Username, "password": b.sim.Password}) {
		if vm.Name == name && len(vm.Disks) > 0 {
			key = vm.Disks[0].Key
		}
	}
	file, err := b.sim.DiskFile(context.Background(), "/"+vcsim.Datacenter+"/vm/"+name, key)
	if err != nil {
		b.t.Fatal(err)
	}
	b.files[name] = file
	return file
}

// qemuInfo returns qemu-img info's format and backing file of path.
func qemuInfo(t testing.TB, path string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", path).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v\n%s", path, err, out)
	}
	return string(out)
}

// TestCutoverBusyboxGuest cuts over a guest that really boots (a busybox
// disk with its own GRUB, served by the simulator as the VM's disk) as
// make test can: the source is shut down through its guest, the final
// sync copies what the guest wrote last, virt-v2v refuses the guest with
// its own reason and the replica is untouched; cut over again without
// conversion, on new overlays and without a new copy, the target disk
// boots to its login prompt; the downtime is measured by part; a rollback
// powers the source back on and the next sync is incremental.
func TestCutoverBusyboxGuest(t *testing.T) {
	testkit.Long(t)
	img := testbed.BusyboxGuest(t, testbed.GuestBoots)
	b := newBed(t, []vcsim.VM{{Name: "bbguest", Disks: []int64{guestDisk}, CBT: true, On: true, Image: img}})
	target := filepath.Join(t.TempDir(), "target")

	// Bad input changes nothing.
	for _, bad := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"when": "later"}, "when"},
		{map[string]any{"when": "at"}, "at"},
		{map[string]any{"when": "budget"}, "downtime_budget_seconds"},
		{map[string]any{"power_off": "pull"}, "power_off"},
		{map[string]any{"format": "vmdk"}, "format"},
		{map[string]any{"target_dir": "relative/dir"}, "target_dir"},
		{map[string]any{"boot_prompt": "("}, "boot_prompt"},
		{map[string]any{"vms": []string{"x"}}, "vms"},
	} {
		if code, c := b.cutover("bbguest", bad.body); code != http.StatusBadRequest || c.Field != bad.field {
			t.Errorf("cutover %v = %d naming %q (%s), want 400 naming %q", bad.body, code, c.Field, c.Detail, bad.field)
		}
	}
	if code := b.oma.Do(http.MethodGet, "/api/v1/vms/"+b.ids["bbguest"]+"/cutover", nil, nil); code != http.StatusNotFound {
		t.Fatalf("GET cutover before any = %d, want 404", code)
	}

	// The guest writes after its last sync: the final sync must carry it.
	b.write("bbguest", guestWrite, 1<<20, 7)
	jobsBefore := b.jobCount("bbguest")
	code, c := b.cutover("bbguest", map[string]any{"power_off": "guest-then-hard", "shutdown_timeout_seconds": 60, "target_dir": target})
	if code != http.StatusAccepted {
		t.Fatalf("cutover = %d: %s", code, c.Detail)
	}
	if code, again := b.cutover("bbguest", nil); code != http.StatusConflict {
		t.Errorf("a second cutover while one runs = %d (%s), want 409", code, again.Detail)
	}
	c = b.await("bbguest")
	if c.State != events.CutoverFailed || c.FailedStep != events.CutoverConverting || !strings.Contains(c.Error, "inspection could not detect the source guest") {
		t.Fatalf("the busybox guest's cutover: %s at %s (%s), want failed at converting with virt-v2v's reason", c.State, c.FailedStep, c.Error)
	}
	t.Logf("conversion refused as expected: %s", c.Error)
	if c.PowerBefore != events.PowerStateOn || c.PowerMethod != events.PowerMethodGuest {
		t.Errorf("power: before %s, method %s; want poweredOn, guest", c.PowerBefore, c.PowerMethod)
	}
	if p := b.power("bbguest"); p != events.PowerStateOff {
		t.Errorf("the source is %s after its cutover's power-off, want poweredOff", p)
	}
	if c.FinalJob == "" || b.jobCount("bbguest") != jobsBefore+1 {
		t.Fatalf("final job %q, jobs %d then %d: want one final sync", c.FinalJob, jobsBefore, b.jobCount("bbguest"))
	}
	replica := b.volume(c.FinalJob)
	src := b.sourceFile("bbguest")
	replicaHash := testkit.FileSum(t, replica)
	if replicaHash != testkit.FileSum(t, src) {
		t.Fatal("after the final sync the replica differs from the source disk")
	}

	// Again without conversion: new overlays, no new copy, a boot that passes.
	code, c = b.cutover("bbguest", map[string]any{"convert": false, "target_dir": target})
	if code != http.StatusAccepted || c.State != events.CutoverConverting {
		t.Fatalf("cutover again = %d, state %s: %s", code, c.State, c.Detail)
	}
	c = b.await("bbguest")
	if c.State != events.CutoverCutOver {
		t.Fatalf("cutover without conversion: %s at %s: %s", c.State, c.FailedStep, c.Error)
	}
	if n := b.jobCount("bbguest"); n != jobsBefore+1 {
		t.Errorf("jobs after the retry: %d, want %d: a retry must not copy again", n, jobsBefore+1)
	}
	if c.Attempt != 2 || c.Converted {
		t.Errorf("attempt %d, converted %v; want the second attempt, unconverted", c.Attempt, c.Converted)
	}
	if c.Boot == nil || !c.Boot.Passed || c.Boot.Accel != "tcg" || c.Boot.Seconds <= 0 {
		t.Fatalf("boot check: %+v", c.Boot)
	}
	if testkit.FileSum(t, replica) != replicaHash {
		t.Error("the conversion, export or boot check changed the replica")
	}
	m := c.Measured
	if m.PowerOff <= 0 || m.FinalSync <= 0 || m.Export <= 0 || m.BootCheck <= 0 || m.Total < m.PowerOff+m.FinalSync+m.Export+m.BootCheck-1 {
		t.Errorf("measured downtime %+v: every part > 0 and the total at least their sum", m)
	}
	if c.Predicted == nil || c.Predicted.Total <= 0 {
		t.Errorf("no prediction recorded before the power-off: %+v", c.Predicted)
	}
	t.Logf("downtime measured %+v; predicted %+v", m, c.Predicted)
	if c.Target == nil || len(c.Target.Disks) != 1 || !c.Target.Disks[0].Root || c.Target.Disks[0].Format != "qcow2" {
		t.Fatalf("target: %+v", c.Target)
	}
	info := qemuInfo(t, c.Target.Disks[0].Path)
	if !strings.Contains(info, "file format: qcow2") || strings.Contains(info, "backing file") {
		t.Errorf("the target disk is not a standalone qcow2:\n%s", info)
	}
	if len(c.Target.CloudStack) == 0 || !strings.Contains(c.Target.CloudStack[0], "importsource=shared") ||
		!strings.Contains(c.Target.CloudStack[0], filepath.Base(c.Target.Disks[0].Path)) {
		t.Errorf("CloudStack commands: %q", c.Target.CloudStack)
	}
	if xml, err := os.ReadFile(c.Target.DomainXML); err != nil || !strings.Contains(string(xml), c.Target.Disks[0].Path) {
		t.Errorf("domain XML %s: %v\n%s", c.Target.DomainXML, err, xml)
	}
	var console []byte
	resp, err := http.NewRequest(http.MethodGet, b.oma.URL+"/api/v1/vms/"+b.ids["bbguest"]+"/cutover/console", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Header.Set("Authorization", "Bearer "+b.oma.Token)
	if r, err := http.DefaultClient.Do(resp); err != nil {
		t.Fatal(err)
	} else {
		console, _ = io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != http.StatusOK || !strings.Contains(string(console), "bbguest login:") {
			t.Errorf("GET console = %d:\n%s", r.StatusCode, console)
		}
	}

	// Rollback: the source back on, the copy gone, syncs incremental again.
	var rb cutoverView
	if code := b.oma.Do(http.MethodPost, "/api/v1/vms/"+b.ids["bbguest"]+"/cutover/rollback", nil, &rb); code != http.StatusAccepted {
		t.Fatalf("rollback = %d: %s", code, rb.Detail)
	}
	if c = b.await("bbguest"); c.State != events.CutoverRolledBack {
		t.Fatalf("rollback: %s (%s)", c.State, c.Error)
	}
	if p := b.power("bbguest"); p != events.PowerStateOn {
		t.Errorf("the source is %s after the rollback, want poweredOn as before", p)
	}
	if _, err := os.Stat(c.Target.Disks[0].Path); !os.IsNotExist(err) {
		t.Errorf("the target disk is still there after the rollback: %v", err)
	}
	if code := b.oma.Do(http.MethodPost, "/api/v1/vms/"+b.ids["bbguest"]+"/cutover/commit", nil, nil); code != http.StatusConflict {
		t.Errorf("commit after a rollback = %d, want 409", code)
	}
	b.write("bbguest", guestWrite+(2<<20), 64<<10, 9)
	if code := b.oma.Do(http.MethodPost, "/api/v1/plans/cut/sync", nil, nil); code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("POST /api/v1/plans/cut/sync = %d", code)
	}
	last := b.syncAfter("bbguest", c.FinalJob)
	if last.BytesWritten == 0 || last.BytesWritten > 1<<20 {
		t.Errorf("the sync after the rollback wrote %d bytes; want about 64 KiB: an incremental from the final sync's change ids", last.BytesWritten)
	}
	if testkit.FileSum(t, b.volume(c.FinalJob)) != testkit.FileSum(t, src) {
		t.Error("after the sync that followed the rollback the replica differs from the source")
	}

	// A new cutover goes on across an OMA restart in its boot check, and
	// is committed: the overlays go, the target stays, the source stays off.
	code, c = b.cutover("bbguest", map[string]any{"convert": false, "target_dir": target})
	if code != http.StatusAccepted || c.ID != b.ids["bbguest"]+"-c2" {
		t.Fatalf("a second cutover = %d, id %q: %s", code, c.ID, c.Detail)
	}
	b.waitFor("the boot check", func() bool {
		c = b.get("bbguest")
		return c.State == events.CutoverBootCheck || c.State == events.CutoverCutOver
	})
	if c.State != events.CutoverBootCheck {
		t.Fatalf("the second cutover went past its boot check before the restart: %s", c.State)
	}
	b.oma.Restart()
	if c = b.await("bbguest"); c.State != events.CutoverCutOver || c.Boot == nil || !c.Boot.Passed {
		t.Fatalf("after an OMA restart in the boot check: %s (%s)", c.State, c.Error)
	}
	if code := b.oma.Do(http.MethodPost, "/api/v1/vms/"+b.ids["bbguest"]+"/cutover/commit", nil, &c); code != http.StatusAccepted || c.State != events.CutoverCommitted {
		t.Fatalf("commit = %d, %s: %s", code, c.State, c.Detail)
	}
	if _, err := os.Stat(c.Target.Disks[0].Path); err != nil {
		t.Errorf("the target disk is gone after the commit: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(c.Target.Disks[0].Path)); err != nil {
		t.Error(err)
	}
	if p := b.power("bbguest"); p != events.PowerStateOff {
		t.Errorf("the source is %s after the commit, want poweredOff", p)
	}
	if code, again := b.cutover("bbguest", nil); code != http.StatusConflict {
		t.Errorf("a cutover after the commit = %d (%s), want 409", code, again.Detail)
	}
}

// TestCutoverStopsWithReasons: a guest whose kernel panics fails its boot
// check with the console's reason and is retried without a new copy; a
// guest that ignores its shutdown stops a guest-only cutover with the
// reason and is powered off hard when allowed; a Windows guest is refused
// conversion without virtio-win; a plan's budget cutover converges on a
// quiet VM and gives up, saying why, on a VM written to all along; a plan's
// cutover is committed through the plan.
func TestCutoverStopsWithReasons(t *testing.T) {
	testkit.Long(t)
	img := testbed.BusyboxGuest(t, testbed.GuestPanics)
	efi := testbed.BusyboxGuest(t, testbed.GuestEFI)
	b := newBed(t, []vcsim.VM{
		{Name: "bbpanic", Disks: []int64{guestDisk}, CBT: true, On: true, Image: img},
		{Name: "bbefi", Disks: []int64{guestDisk}, CBT: true, On: true, Image: efi, Firmware: "efi"},
		{Name: "hung", Disks: []int64{16 << 20}, CBT: true, On: true},
		{Name: "quiet", Disks: []int64{16 << 20}, CBT: true, On: true},
		{Name: "busy", Disks: []int64{32 << 20}, CBT: true, On: true},
		{Name: "win", Disks: []int64{16 << 20}, CBT: true, On: true, GuestID: "windows2019srv_64Guest"},
	}, "hung")

	if code, c := b.cutover("win", nil); code != http.StatusConflict || c.Field != "convert" || !strings.Contains(c.Detail, "virtio-win") {
		t.Errorf("cutover of a Windows guest = %d naming %q: %s; want 409 naming convert, about virtio-win", code, c.Field, c.Detail)
	}
	// A plan's cutover naming a VM not in it starts none.
	var refused cutoverView
	if code := b.oma.Do(http.MethodPost, "/api/v1/plans/cut/cutover", map[string]any{"vms": []string{b.ids["quiet"], "vm-none"}}, &refused); code != http.StatusNotFound || refused.Field != "vms[1]" {
		t.Errorf("plan cutover with an unknown VM = %d naming %q, want 404 naming vms[1]", code, refused.Field)
	}
	if code := b.oma.Do(http.MethodGet, "/api/v1/vms/"+b.ids["quiet"]+"/cutover", nil, nil); code != http.StatusNotFound {
		t.Errorf("a refused plan cutover started quiet's: GET = %d", code)
	}
	// when: at waits for its time, then cuts over.
	at := time.Now().Add(3 * time.Second).UTC()
	if code, c := b.cutover("win", map[string]any{"when": "at", "at": at, "convert": false, "boot_check": false, "power_off": "hard"}); code != http.StatusAccepted || c.State != events.CutoverScheduled {
		t.Fatalf("cutover at %s = %d, %s: %s", at, code, c.State, c.Detail)
	}
	if c := b.await("win"); c.State != events.CutoverCutOver || c.PowerMethod != events.PowerMethodHard {
		t.Fatalf("the scheduled cutover: %s (%s), method %s", c.State, c.Error, c.PowerMethod)
	} else if c.DownSince == nil || c.DownSince.Before(at) {
		t.Errorf("the scheduled cutover powered the source off at %v, before its time %s", c.DownSince, at)
	}

	// A UEFI guest boots its check under UEFI firmware.
	if code, c := b.cutover("bbefi", map[string]any{"convert": false}); code != http.StatusAccepted {
		t.Fatalf("cutover of bbefi = %d: %s", code, c.Detail)
	}

	// A kernel panic fails the boot check with the console's reason.
	jobs := b.jobCount("bbpanic")
	if code, c := b.cutover("bbpanic", map[string]any{"convert": false}); code != http.StatusAccepted {
		t.Fatalf("cutover of bbpanic = %d: %s", code, c.Detail)
	}
	c := b.await("bbpanic")
	if c.State != events.CutoverFailed || c.FailedStep != events.CutoverBootCheck || !strings.Contains(c.Error, "Kernel panic") {
		t.Fatalf("bbpanic: %s at %s: %s; want failed at boot_check with the panic", c.State, c.FailedStep, c.Error)
	}
	if code, again := b.cutover("bbpanic", map[string]any{"convert": false}); code != http.StatusAccepted || again.State != events.CutoverConverting {
		t.Fatalf("retry of bbpanic = %d, %s: %s", code, again.State, again.Detail)
	}
	if c = b.await("bbpanic"); c.State != events.CutoverFailed || c.FailedStep != events.CutoverBootCheck || c.Attempt != 2 {
		t.Errorf("bbpanic's retry: %s at %s, attempt %d", c.State, c.FailedStep, c.Attempt)
	}
	if n := b.jobCount("bbpanic"); n != jobs+1 {
		t.Errorf("bbpanic has %d jobs after a cutover and a retry, want %d: one final sync", n, jobs+1)
	}

	if c := b.await("bbefi"); c.State != events.CutoverCutOver || c.Boot == nil || !c.Boot.Passed {
		t.Errorf("the UEFI guest's cutover: %s (%s), boot %+v", c.State, c.Error, c.Boot)
	}

	// A guest that ignores its shutdown.
	if code, c := b.cutover("hung", map[string]any{"power_off": "guest", "shutdown_timeout_seconds": 2}); code != http.StatusAccepted {
		t.Fatalf("cutover of hung = %d: %s", code, c.Detail)
	}
	if c = b.await("hung"); c.State != events.CutoverFailed || c.FailedStep != events.CutoverPoweringOff || !strings.Contains(c.Error, "did not shut down within 2s") {
		t.Fatalf("hung, guest only: %s at %s: %s", c.State, c.FailedStep, c.Error)
	}
	if p := b.power("hung"); p != events.PowerStateOn {
		t.Errorf("hung is %s after a refused power-off, want poweredOn", p)
	}
	var p struct {
		VMs []struct {
			ID        string   `json:"id"`
			Cutover   string   `json:"cutover"`
			Predicted *float64 `json:"predicted_downtime_seconds"`
			Measured  *float64 `json:"measured_downtime_seconds"`
		} `json:"vms"`
	}
	pool := filepath.Join(t.TempDir(), "primary")
	var patch cutoverView
	if code := b.oma.Do(http.MethodPatch, "/api/v1/plans/cut", map[string]any{"cutover": map[string]any{"target_dir": "primary"}}, &patch); code != http.StatusBadRequest || patch.Field != "cutover.target_dir" {
		t.Errorf("PATCH a relative target_dir = %d naming %q, want 400 naming cutover.target_dir", code, patch.Field)
	}
	if code := b.oma.Do(http.MethodPatch, "/api/v1/plans/cut", map[string]any{"cutover": map[string]any{"target_dir": pool}}, &patch); code != http.StatusOK {
		t.Fatalf("PATCH the plan's target_dir = %d: %s", code, patch.Detail)
	}
	if code, c := b.cutover("hung", map[string]any{"power_off": "guest-then-hard", "shutdown_timeout_seconds": 2, "convert": false, "boot_check": false}); code != http.StatusAccepted {
		t.Fatalf("cutover of hung, then hard = %d: %s", code, c.Detail)
	}
	if c = b.await("hung"); c.State != events.CutoverCutOver || c.PowerMethod != events.PowerMethodHard || c.Boot != nil {
		t.Fatalf("hung, then hard: %s (%s), method %s", c.State, c.Error, c.PowerMethod)
	}
	if p := b.power("hung"); p != events.PowerStateOff {
		t.Errorf("hung is %s after a hard power-off, want poweredOff", p)
	}
	if dir := filepath.Join(pool, "hung-"+b.ids["hung"]); c.Target == nil || c.Target.Dir != dir || len(c.Target.Disks) != 1 ||
		!strings.Contains(c.Target.CloudStack[0], "diskpath=hung-"+b.ids["hung"]+"/"+filepath.Base(c.Target.Disks[0].Path)) {
		t.Errorf("hung's target in the plan's target_dir %s: %+v", pool, c.Target)
	}
	var cs struct {
		Cutovers []cutoverView `json:"cutovers"`
	}
	if code := b.oma.Do(http.MethodPost, "/api/v1/plans/cut/cutover/commit", map[string]any{"vms": []string{b.ids["hung"]}}, &cs); code != http.StatusAccepted ||
		len(cs.Cutovers) != 1 || cs.Cutovers[0].State != events.CutoverCommitted {
		t.Fatalf("commit through the plan = %d: %+v", code, cs)
	}

	// The plan predicts every synced VM's downtime.
	b.oma.Do(http.MethodGet, "/api/v1/plans/cut", nil, &p)
	for _, vm := range p.VMs {
		if vm.ID == b.ids["hung"] && (vm.Cutover != events.CutoverCommitted || vm.Measured == nil || *vm.Measured <= 0) {
			t.Errorf("the plan shows hung's cutover as %q, measured %v; want committed, with its downtime", vm.Cutover, vm.Measured)
		}
		if vm.ID == b.ids["quiet"] && (vm.Predicted == nil || *vm.Predicted <= 0) {
			t.Errorf("the plan predicts no downtime for quiet: %v", vm.Predicted)
		}
	}

	// Budget: quiet converges; busy, written to all along, gives up.
	stop := make(chan struct{})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			b.write("busy", int64(i%8)*(4<<20), 2<<20, byte(i))
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-wrote
		}
	})
	for _, tc := range []struct {
		vm     string
		budget float64
		want   string
	}{
		{"quiet", 3600, events.CutoverCutOver},
		{"busy", 0.001, events.CutoverBudgetUnmet},
	} {
		if code := b.oma.Do(http.MethodPost, "/api/v1/plans/cut/cutover", map[string]any{"vms": []string{b.ids[tc.vm]}, "when": "budget",
			"downtime_budget_seconds": tc.budget, "max_passes": 3, "power_off": "hard", "convert": false, "boot_check": false}, &cs); code != http.StatusAccepted {
			t.Fatalf("budget cutover of %s = %d", tc.vm, code)
		}
		c := b.await(tc.vm)
		if c.State != tc.want {
			t.Fatalf("budget cutover of %s: %s (%s), want %s", tc.vm, c.State, c.Error, tc.want)
		}
		t.Logf("%s: %d passes %+v; %s", tc.vm, len(c.Passes), c.Passes, c.Error)
		switch tc.want {
		case events.CutoverCutOver:
			if len(c.Passes) == 0 || c.Passes[len(c.Passes)-1].PredictedSeconds > tc.budget {
				t.Errorf("quiet converged with passes %+v", c.Passes)
			}
		case events.CutoverBudgetUnmet:
			if len(c.Passes) != 3 || !strings.Contains(c.Error, "after 3 syncs") || c.PowerBefore != "" {
				t.Errorf("busy gave up after passes %+v, saying %q, power before %q: want 3 passes, the reason, the source untouched", c.Passes, c.Error, c.PowerBefore)
			}
			if p := b.power("busy"); p != events.PowerStateOn {
				t.Errorf("busy is %s after its budget was not met, want poweredOn", p)
			}
		}
	}
}

// TestPowerCommandGoesStale: a power-off whose VMA is gone past the
// command's deadline fails the cutover with the reason, and the VMA, back,
// refuses the stale command: the source stays on; the cutover rolls back.
func TestPowerCommandGoesStale(t *testing.T) {
	testkit.Long(t)
	b := newBedWith(t, []vcsim.VM{{Name: "away", Disks: []int64{16 << 20}, CBT: true, On: true}}, func(c *appliance.Config) {
		c.Cutover.PowerSlack = 2 * time.Second
	})
	b.vma.Stop()
	if code, c := b.cutover("away", map[string]any{"power_off": "hard", "shutdown_timeout_seconds": 1}); code != http.StatusAccepted {
		t.Fatalf("cutover = %d: %s", code, c.Detail)
	}
	c := b.await("away")
	if c.State != events.CutoverFailed || c.FailedStep != events.CutoverPoweringOff || !strings.Contains(c.Error, "did not report power command") {
		t.Fatalf("cutover with its VMA gone: %s at %s: %s", c.State, c.FailedStep, c.Error)
	}
	b.vma.Start()
	b.waitFor("the VMA's refusal of the stale command", func() bool { return strings.Contains(b.vma.Logs.String(), "after its deadline") })
	if p := b.power("away"); p != events.PowerStateOn {
		t.Fatalf("the source is %s: the VMA carried out a stale power-off", p)
	}
	if code := b.oma.Do(http.MethodPost, "/api/v1/vms/"+b.ids["away"]+"/cutover/rollback", nil, &c); code != http.StatusAccepted {
		t.Fatalf("rollback = %d: %s", code, c.Detail)
	}
	if c = b.await("away"); c.State != events.CutoverRolledBack {
		t.Fatalf("rollback: %s (%s)", c.State, c.Error)
	}
}
