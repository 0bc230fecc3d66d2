package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/testkit"
)

func TestCancel(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2)
	v := o.addVMA("vma-1")
	o.learn(v, testVM("vm-1", 1<<20), testVM("vm-2", 1<<20))
	var j job
	if code := o.do("POST", "/api/v1/replications", createBody("vm-1", "initial"), &j); code != 201 {
		t.Fatalf("create = %d", code)
	}
	port := j.Disks[0].Export.Port
	if code := o.do("DELETE", "/api/v1/replications/"+j.JobID, nil, &j); code != 200 || j.State != "cancelled" {
		t.Fatalf("cancel = %d %+v", code, j)
	}
	if c, ok := receiveCommand(t, v).(*events.ReplicateCancel); !ok || c.JobID != j.JobID {
		t.Errorf("the VMA got %+v, want the cancel of %s", c, j.JobID)
	}
	if portOpen(port) {
		t.Error("the export of a cancelled job is still served")
	}
	if code := o.do("DELETE", "/api/v1/replications/"+j.JobID, nil, &j); code != 200 || j.State != "cancelled" {
		t.Errorf("second cancel = %d %+v, want 200 (no-op)", code, j)
	}
	var p problem
	if code := o.do("DELETE", "/api/v1/replications/nope", nil, &p); code != 404 || p.Field != "id" {
		t.Errorf("cancel unknown = %d %+v", code, p)
	}
	if code := o.do("POST", "/api/v1/replications/"+j.JobID+"/start", map[string]string{"username": "u", "password": "p"}, &p); code != 409 {
		t.Errorf("start a cancelled job = %d", code)
	}
	// The VM is free again and the port is reused.
	var j2 job
	if code := o.do("POST", "/api/v1/replications", createBody("vm-1", "initial"), &j2); code != 201 || j2.Disks[0].Export.Port != port {
		t.Errorf("create after cancel = %d %+v", code, j2)
	}
	// A completed job cannot be cancelled.
	v.publish(t, &events.ReplicationStatus{JobID: j2.JobID, VMAID: "vma-1", Seq: 1, State: "completed", Disks: []events.DiskChange{{Key: 2000, ChangeID: "c/1"}}})
	testkit.Eventually(t, "completed", func() bool {
		o.do("GET", "/api/v1/replications/"+j2.JobID, nil, &j2)
		return j2.State == "completed"
	})
	if code := o.do("DELETE", "/api/v1/replications/"+j2.JobID, nil, &p); code != 409 {
		t.Errorf("cancel a completed job = %d, want 409", code)
	}
}

func TestPortExhaustion(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 1)
	v := o.addVMA("vma-1")
	o.learn(v, testVM("vm-1", 1<<20), testVM("vm-2", 1<<20))
	var j job
	if code := o.do("POST", "/api/v1/replications", createBody("vm-1", "initial"), &j); code != 201 {
		t.Fatalf("create = %d", code)
	}
	var p problem
	start := time.Now()
	code := o.do("POST", "/api/v1/replications", createBody("vm-2", "initial"), &p)
	if code != 503 || !strings.Contains(p.Detail, "NBD port") {
		t.Errorf("create on a full pool = %d %+v, want 503", code, p)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("a full pool took %s to answer", time.Since(start))
	}
	var list struct{ Replications []job }
	o.do("GET", "/api/v1/replications", nil, &list)
	if len(list.Replications) != 1 {
		t.Errorf("jobs after a refused create: %d, want 1", len(list.Replications))
	}
}

// answerDiscovery plays the VMA's discovery consumer: it opens the sealed
// password and answers with vms, or with a failure for a wrong password.
func answerDiscovery(t *testing.T, ctx context.Context, v *vma, vms []events.VM) {
	go func() {
		_ = v.conn.Consume(ctx, bus.StreamDiscovery, bus.VMADurable(v.id), func(ctx context.Context, _ events.Event, p events.Payload) error {
			req := p.(*events.DiscoverRequest)
			res := &events.DiscoverResult{RequestID: req.RequestID, VMAID: v.id,
				VCenter: events.VCenterRef{Host: req.VCenter, Datacenter: req.Datacenter}, VMs: vms}
			if pw, err := seal.Open(v.key, req.Password); err != nil || string(pw) != "right" {
				res.VMs, res.Error = nil, &events.Failure{Code: events.FailureAuth, Message: "vCenter login failed for user " + req.Username}
			}
			_, err := v.conn.Publish(ctx, res)
			return err
		})
	}()
}

func TestDiscoverThroughTheOMA(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 1)
	v := o.addVMA("vma-1")
	body := map[string]any{"vcenter": "vcenter.test", "username": "administrator@vsphere.local", "password": "right", "datacenter": "DatabanxDC", "timeout_seconds": 2}

	// Nobody answers: 504 within the timeout.
	var p problem
	start := time.Now()
	if code := o.do("POST", "/api/v1/discover", body, &p); code != http.StatusGatewayTimeout || !strings.Contains(p.Detail, "vma-1") {
		t.Errorf("discover without a VMA consumer = %d %+v, want 504", code, p)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("504 took %s", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	answerDiscovery(t, ctx, v, []events.VM{testVM("vm-7", 1<<20)})

	// The queued request of the timed-out call is answered first; then ours.
	var res struct {
		VMAID string `json:"vma_id"`
		VMs   []events.VM
	}
	body["timeout_seconds"] = 20
	if code := o.do("POST", "/api/v1/discover", body, &res); code != 200 || len(res.VMs) != 1 || res.VMs[0].ID != "vm-7" || res.VMAID != "vma-1" {
		t.Fatalf("discover = %d %+v", code, res)
	}
	testkit.Eventually(t, "inventory", func() bool {
		var inv struct{ VMs []struct{ ID string } }
		o.do("GET", "/api/v1/vms", nil, &inv)
		return len(inv.VMs) == 1 && inv.VMs[0].ID == "vm-7"
	})
	body["password"] = "wrong"
	if code := o.do("POST", "/api/v1/discover", body, &p); code != 401 || !strings.Contains(p.Detail, "vCenter login failed for user administrator@vsphere.local") {
		t.Errorf("discover with a wrong password = %d %+v", code, p)
	}
	assertNotInStreams(t, o, "right")
	for _, bad := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"username": "u", "password": "p"}, "vcenter"},
		{map[string]any{"vcenter": "v", "password": "p"}, "username"},
		{map[string]any{"vcenter": "v", "username": "u"}, "password"},
		{map[string]any{"vcenter": "v", "username": "u", "password": "p", "vma_id": "vma-9"}, "vma_id"},
		{map[string]any{"vcenter": "v", "username": "u", "password": "p", "timeout_seconds": -1}, "timeout_seconds"},
	} {
		if code := o.do("POST", "/api/v1/discover", bad.body, &p); code/100 != 4 || p.Field != bad.field {
			t.Errorf("discover %v = %d %+v, want 4xx on %s", bad.body, code, p, bad.field)
		}
	}
}

// TestEventHandling: an invalid event is rejected without blocking the
// consumer, an event a VMA sends about another VMA's job is not applied,
// and a redelivered event is applied once.
func TestEventHandling(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2)
	v1, v2 := o.addVMA("vma-1"), o.addVMA("vma-2")
	o.learn(v1, testVM("vm-1", 1<<20))
	var j job
	o.do("POST", "/api/v1/replications", createBody("vm-1", "initial"), &j)

	admin := bustest.Connect(t, o.NATSURL, bus.ClientConfig{NKeySeed: o.AdminSeed})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := admin.JetStream()
	subj := "godwit.progress.vma-1." + j.JobID
	// Not JSON; a schema violation; and a valid event about this job from vma-2.
	if _, err := js.Publish(ctx, subj, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	bad, _ := events.New("/x", &events.Progress{JobID: j.JobID, VMAID: "vma-1", Seq: 1, Phase: "copying", BytesDone: 5, Disks: []events.DiskProgress{}}, time.Now())
	bad.Data = json.RawMessage(strings.Replace(string(bad.Data), `"bytes_done":5`, `"bytes_done":-5`, 1))
	raw, _ := json.Marshal(bad)
	if _, err := js.Publish(ctx, subj, raw); err != nil {
		t.Fatal(err)
	}
	v2.publish(t, &events.Progress{JobID: j.JobID, VMAID: "vma-2", Seq: 10, Phase: "finalizing", BytesTotal: 1, BytesDone: 1, Disks: []events.DiskProgress{}})
	// Then a good one, twice with the same event id (a redelivery that
	// JetStream's duplicate window does not catch: no Nats-Msg-Id).
	good, _ := events.New("/godwit/vma/vma-1", &events.ReplicationStatus{JobID: j.JobID, VMAID: "vma-1", Seq: 2, State: "failed",
		Error: &events.Failure{Code: "internal", Message: "disk read error"}}, time.Now())
	rawGood, _ := json.Marshal(good)
	for range 2 {
		if _, err := js.Publish(ctx, "godwit.status.vma-1."+j.JobID, rawGood); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, "the good event applied", func() bool {
		o.do("GET", "/api/v1/replications/"+j.JobID, nil, &j)
		return j.State == "failed"
	})
	if j.LastError != "disk read error" || j.BytesDone != 0 {
		t.Errorf("job = %+v: a rejected event was applied", j)
	}
	testkit.Eventually(t, "the consumer acked everything", func() bool {
		info, err := o.conn.JetStream().Consumer(ctx, bus.StreamProgress, bus.OMADurable)
		if err != nil {
			return false
		}
		ci, err := info.Info(ctx)
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	})
	testkit.Eventually(t, "one failure event", func() bool {
		return strings.Join(jobEvents(t, o, j.JobID), " ") == "created pending>failed"
	})
}

// TestInventoryMerges: a filtered discovery updates the VMs it found and
// keeps the others; an unfiltered one also forgets the VMs of its scope it
// did not find.
func TestInventoryMerges(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 1)
	v := o.addVMA("vma-1")
	inDC := func(vm events.VM, dc string) events.VM { vm.Datacenter, vm.Path = dc, "/"+dc+"/vm/"+vm.Name; return vm }
	a1, a2, b3 := inDC(testVM("vm-1", 1), "DC-A"), inDC(testVM("vm-2", 1), "DC-A"), inDC(testVM("vm-3", 1), "DC-B")
	publish := func(dc, filter string, vms ...events.VM) {
		v.publish(t, &events.DiscoverResult{RequestID: bustest.AskDiscovery(t, v.conn, "vma-1", "vcenter.test"), VMAID: "vma-1", Filter: filter,
			VCenter: events.VCenterRef{Host: "vcenter.test", Datacenter: dc}, VMs: vms})
	}
	names := func() string {
		var inv struct {
			VMs []struct {
				ID     string `json:"id"`
				NumCPU int    `json:"num_cpu"`
			} `json:"vms"`
		}
		o.do("GET", "/api/v1/vms", nil, &inv)
		var out []string
		for _, vm := range inv.VMs {
			out = append(out, vm.ID+":"+strconv.Itoa(vm.NumCPU))
		}
		return strings.Join(out, " ")
	}
	publish("", "", a1, a2, b3)
	testkit.Eventually(t, "full inventory", func() bool { return names() == "vm-1:2 vm-2:2 vm-3:2" })
	a1.NumCPU = 8
	publish("DC-A", "vm-1", a1)
	testkit.Eventually(t, "vm-1 updated, the rest kept", func() bool { return names() == "vm-1:8 vm-2:2 vm-3:2" })
	publish("DC-A", "", a1)
	testkit.Eventually(t, "vm-2 gone from DC-A, DC-B kept", func() bool { return names() == "vm-1:8 vm-3:2" })
	publish("", "")
	testkit.Eventually(t, "all gone", func() bool { return names() == "" })
}
