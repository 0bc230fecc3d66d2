package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/testkit"
)

// replicaJob is a job with the replica fields.
type replicaJob struct {
	job
	ReplicaID      string   `json:"replica_id"`
	Generation     int      `json:"generation"`
	CurrentReplica *replica `json:"current_replica"`
}

type replica struct {
	ID         string `json:"replica_id"`
	Generation int    `json:"generation"`
	JobID      string `json:"job_id"`
	Disks      []struct {
		Key        int32  `json:"key"`
		VolumePath string `json:"volume_path"`
		ChangeID   string `json:"change_id"`
	} `json:"disks"`
}

type inventoryVM struct {
	ID             string   `json:"id"`
	VMAID          string   `json:"vma_id"`
	VCenter        string   `json:"vcenter"`
	ReplicaID      string   `json:"replica_id"`
	CurrentReplica *replica `json:"current_replica"`
}

func (o *omaUnderTest) inventoryVMs() []inventoryVM {
	o.t.Helper()
	var inv struct{ VMs []inventoryVM }
	if code := o.do("GET", "/api/v1/vms", nil, &inv); code != 200 {
		o.t.Fatalf("GET /api/v1/vms = %d", code)
	}
	return inv.VMs
}

func (o *omaUnderTest) create(body map[string]any) replicaJob {
	o.t.Helper()
	var j replicaJob
	if code := o.do("POST", "/api/v1/replications", body, &j); code != 201 {
		o.t.Fatalf("create %v = %d %+v", body, code, j)
	}
	return j
}

func (o *omaUnderTest) get(id string) replicaJob {
	o.t.Helper()
	var j replicaJob
	if code := o.do("GET", "/api/v1/replications/"+id, nil, &j); code != 200 {
		o.t.Fatalf("GET %s = %d", id, code)
	}
	return j
}

// finish has v report the end of a job and waits until the OMA applied it.
func (o *omaUnderTest) finish(v *vma, id, state string, changeIDs ...string) {
	o.t.Helper()
	st := &events.ReplicationStatus{JobID: id, VMAID: v.id, Seq: 100, State: state}
	for i, c := range changeIDs {
		st.Disks = append(st.Disks, events.DiskChange{Key: int32(2000 + i), ChangeID: c})
	}
	if state == events.JobFailed {
		st.Error = &events.Failure{Code: events.FailureInternal, Message: "test"}
	}
	v.publish(o.t, st)
	testkit.Eventually(o.t, id+" "+state, func() bool { return o.get(id).State == state })
}

// writeExport copies data into an export with nbdcopy.
func writeExport(t *testing.T, url string, data []byte) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src.raw")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nbdcopy", src, url).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy to %s: %v\n%s", url, err, out)
	}
}

func randomDisk(t *testing.T, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data[:size/2])
	return data
}

func sameFile(t *testing.T, path string, want []byte) bool {
	t.Helper()
	got, err := os.ReadFile(path)
	return err == nil && bytes.Equal(got, want)
}

// TestInitialJobsNeverTruncateTheReplica completes a replica, then runs
// initial jobs that are cancelled, fail and complete: the completed copy
// stays whole and current until a new one completes, and an incremental
// job writes into the current generation.
func TestInitialJobsNeverTruncateTheReplica(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2)
	v := o.addVMA("vma-1")
	const size = 1 << 20
	o.learn(v, testVM("vm-1", size))

	first := o.create(createBody("vm-1", "initial"))
	if first.Generation != 1 || first.ReplicaID == "" || first.CurrentReplica != nil {
		t.Errorf("first job: generation %d, replica %q, current %+v", first.Generation, first.ReplicaID, first.CurrentReplica)
	}
	good := randomDisk(t, size)
	writeExport(t, first.Disks[0].NBDURL, good)
	o.finish(v, first.JobID, events.JobCompleted, "c/1")
	testkit.Eventually(t, "job.created published", func() bool {
		ev := jobEvents(t, o, first.JobID)
		return len(ev) > 0 && ev[0] == "created"
	})
	assertNotInJobsStream(t, o, first.Disks[0].Export.Name)
	goodPath := first.Disks[0].VolumePath
	if !strings.Contains(goodPath, first.ReplicaID) || !sameFile(t, goodPath, good) {
		t.Fatalf("volume %s of replica %s does not hold what was written", goodPath, first.ReplicaID)
	}
	assertCurrent := func(when string, want replicaJob) {
		t.Helper()
		for _, r := range []*replica{o.get(want.JobID).CurrentReplica, o.inventoryVMs()[0].CurrentReplica} {
			if r == nil || r.JobID != want.JobID || r.Generation != want.Generation || r.ID != want.ReplicaID ||
				len(r.Disks) != 1 || r.Disks[0].VolumePath != want.Disks[0].VolumePath {
				t.Errorf("%s: current replica %+v, want job %s generation %d in %s", when, r, want.JobID, want.Generation, want.Disks[0].VolumePath)
			}
		}
	}
	assertCurrent("after the first copy", first)

	// A new initial job, cancelled, then one that fails: the copy stays.
	for i, end := range []string{events.JobCancelled, events.JobFailed} {
		next := o.create(createBody("vm-1", "initial"))
		if next.Generation != 2+i || next.Disks[0].VolumePath == goodPath || next.ReplicaID != first.ReplicaID {
			t.Errorf("initial job %d: generation %d, volume %s (the good copy is %s)", i, next.Generation, next.Disks[0].VolumePath, goodPath)
		}
		if !sameFile(t, goodPath, good) {
			t.Fatal("creating an initial job changed the completed replica")
		}
		if next.CurrentReplica == nil || next.CurrentReplica.JobID != first.JobID {
			t.Errorf("while a new initial runs, current replica = %+v, want %s", next.CurrentReplica, first.JobID)
		}
		writeExport(t, next.Disks[0].NBDURL, randomDisk(t, size))
		if end == events.JobCancelled {
			if code := o.do("DELETE", "/api/v1/replications/"+next.JobID, nil, nil); code != 200 {
				t.Fatalf("cancel = %d", code)
			}
		} else {
			o.finish(v, next.JobID, end)
		}
		if !sameFile(t, goodPath, good) {
			t.Fatalf("a %s initial job changed the completed replica", end)
		}
		assertCurrent("after a "+end+" initial job", first)
	}

	// An incremental builds on the current replica, not on the failed attempts.
	inc := o.create(createBody("vm-1", "incremental"))
	if inc.BaseJobID != first.JobID || inc.Generation != 1 || inc.Disks[0].VolumePath != goodPath || inc.Disks[0].BaseChangeID != "c/1" {
		t.Errorf("incremental on generation 1 = %+v", inc)
	}
	good[0] ^= 0xff
	writeExport(t, inc.Disks[0].NBDURL, good)
	o.finish(v, inc.JobID, events.JobCompleted, "c/2")
	if !sameFile(t, goodPath, good) {
		t.Error("the incremental did not write into the current replica")
	}
	assertCurrent("after the incremental", inc)

	// A completed initial job makes its new generation current.
	next := o.create(createBody("vm-1", "initial"))
	if next.Generation != 4 {
		t.Errorf("generation after 3 = %d", next.Generation)
	}
	fresh := randomDisk(t, size)
	writeExport(t, next.Disks[0].NBDURL, fresh)
	if !sameFile(t, goodPath, good) {
		t.Fatal("a running initial job changed the completed replica")
	}
	o.finish(v, next.JobID, events.JobCompleted, "c/3")
	assertCurrent("after a new initial copy", next)

	// The next incremental writes into that generation.
	inc = o.create(createBody("vm-1", "incremental"))
	if inc.BaseJobID != next.JobID || inc.Generation != 4 || inc.Disks[0].VolumePath != next.Disks[0].VolumePath || inc.Disks[0].BaseChangeID != "c/3" {
		t.Errorf("incremental on generation 4 = %+v", inc)
	}
	fresh[size-1] = 7
	writeExport(t, inc.Disks[0].NBDURL, fresh)
	if !sameFile(t, next.Disks[0].VolumePath, fresh) || !sameFile(t, goodPath, good) {
		t.Error("the incremental did not write into generation 4 alone")
	}
}

// TestReplicasAreKeyedBySource has two VMAs, then two vCenters, report a VM
// with the same moref: each gets its own volumes and incremental base, and
// a job must name which one it means.
func TestReplicasAreKeyedBySource(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 4)
	a, b := o.addVMA("vma-1"), o.addVMA("vma-2")
	vmA, vmB := testVM("vm-100", 1<<20), testVM("vm-100", 1<<20)
	vmA.UUID, vmB.UUID = "4204a1b2-0000-0000-0000-00000000000a", "4204a1b2-0000-0000-0000-00000000000b"
	a.inventory(t, vmA)
	b.publish(t, &events.DiscoverResult{RequestID: bustest.AskDiscovery(t, b.conn, "vma-2", "vcenter-b.test"), VMAID: "vma-2",
		VCenter: events.VCenterRef{Host: "vcenter-b.test", Datacenter: "DatabanxDC"}, VMs: []events.VM{vmB}})
	testkit.Eventually(t, "both inventories", func() bool { return len(o.inventoryVMs()) == 2 })

	var p problem
	if code := o.do("POST", "/api/v1/replications", createBody("vm-100", "initial"), &p); code != 409 || p.Field != "vma_id" ||
		!strings.Contains(p.Detail, "vma-1") || !strings.Contains(p.Detail, "vma-2") {
		t.Errorf("create for an ambiguous VM = %d %+v, want 409 naming vma_id", code, p)
	}
	withVMA := func(vmaID, typ string) map[string]any {
		body := createBody("vm-100", typ)
		body["vma_id"] = vmaID
		return body
	}
	// Both run at once: they are different VMs.
	ja, jb := o.create(withVMA("vma-1", "initial")), o.create(withVMA("vma-2", "initial"))
	if ja.ReplicaID == jb.ReplicaID || ja.Disks[0].VolumePath == jb.Disks[0].VolumePath || ja.JobID == jb.JobID {
		t.Fatalf("two sources share a replica: %s %s, %s %s", ja.ReplicaID, ja.Disks[0].VolumePath, jb.ReplicaID, jb.Disks[0].VolumePath)
	}
	for _, j := range []replicaJob{ja, jb} {
		if strings.ContainsAny(j.ReplicaID, "/.:") || filepath.Dir(filepath.Dir(j.Disks[0].VolumePath)) != filepath.Join(o.dir, "volumes") {
			t.Errorf("replica %q makes volume path %s", j.ReplicaID, j.Disks[0].VolumePath)
		}
	}
	dataA, dataB := randomDisk(t, 1<<20), randomDisk(t, 1<<20)
	writeExport(t, ja.Disks[0].NBDURL, dataA)
	writeExport(t, jb.Disks[0].NBDURL, dataB)
	o.finish(a, ja.JobID, events.JobCompleted, "a/1")
	o.finish(b, jb.JobID, events.JobCompleted, "b/1")
	if !sameFile(t, ja.Disks[0].VolumePath, dataA) || !sameFile(t, jb.Disks[0].VolumePath, dataB) {
		t.Error("one source's copy overwrote the other's")
	}
	for _, vm := range o.inventoryVMs() {
		want := map[string]replicaJob{"vma-1": ja, "vma-2": jb}[vm.VMAID]
		if vm.ReplicaID != want.ReplicaID || vm.CurrentReplica == nil || vm.CurrentReplica.JobID != want.JobID {
			t.Errorf("inventory VM %s of %s: replica %s, current %+v, want %s", vm.ID, vm.VMAID, vm.ReplicaID, vm.CurrentReplica, want.JobID)
		}
	}
	// Each incremental starts from its own source's change ids and volume.
	ib := o.create(withVMA("vma-2", "incremental"))
	if ib.BaseJobID != jb.JobID || ib.Disks[0].BaseChangeID != "b/1" || ib.Disks[0].VolumePath != jb.Disks[0].VolumePath {
		t.Errorf("incremental of vma-2 = base %s, change id %s, volume %s", ib.BaseJobID, ib.Disks[0].BaseChangeID, ib.Disks[0].VolumePath)
	}
	ia := o.create(withVMA("vma-1", "incremental"))
	if ia.BaseJobID != ja.JobID || ia.Disks[0].BaseChangeID != "a/1" || ia.Disks[0].VolumePath != ja.Disks[0].VolumePath {
		t.Errorf("incremental of vma-1 = base %s, change id %s, volume %s", ia.BaseJobID, ia.Disks[0].BaseChangeID, ia.Disks[0].VolumePath)
	}

	// One VMA, two vCenters, one moref: the vCenter must be named.
	vmC := testVM("vm-100", 1<<20)
	vmC.UUID = "4204a1b2-0000-0000-0000-00000000000c"
	a.publish(t, &events.DiscoverResult{RequestID: bustest.AskDiscovery(t, a.conn, "vma-1", "vcenter-c.test"), VMAID: "vma-1",
		VCenter: events.VCenterRef{Host: "vcenter-c.test", Datacenter: "DatabanxDC"}, VMs: []events.VM{vmC}})
	testkit.Eventually(t, "a third inventory", func() bool { return len(o.inventoryVMs()) == 3 })
	o.do("DELETE", "/api/v1/replications/"+ia.JobID, nil, nil)
	if code := o.do("POST", "/api/v1/replications", withVMA("vma-1", "initial"), &p); code != 409 || p.Field != "vcenter" {
		t.Errorf("create for a VM in two vCenters of one VMA = %d %+v, want 409 naming vcenter", code, p)
	}
	body := withVMA("vma-1", "initial")
	body["vcenter"] = "vcenter-c.test"
	jc := o.create(body)
	if jc.ReplicaID == ja.ReplicaID || jc.Disks[0].VolumePath == ja.Disks[0].VolumePath || jc.Generation != 1 {
		t.Errorf("the VM of the second vCenter shares replica %s (%s)", jc.ReplicaID, jc.Disks[0].VolumePath)
	}
}

// TestJobsFromBeforeReplicasStayTheBase rewrites a completed job as the
// OMA stored it before replicas (no replica id, generation 0, the volume
// at volumes/<vm>/disk-<key>.raw): after the upgrade it is the VM's current
// replica, an incremental writes into its volume, and an initial job
// starts generation 1 beside it.
func TestJobsFromBeforeReplicasStayTheBase(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2)
	v := o.addVMA("vma-1")
	o.learn(v, testVM("vm-7", 1<<20))
	old := o.create(createBody("vm-7", "initial"))
	o.finish(v, old.JobID, events.JobCompleted, "c/1")
	legacy := filepath.Join(o.dir, "volumes", "vm-7", "disk-2000.raw")
	data := randomDisk(t, 1<<20)
	if err := os.MkdirAll(filepath.Dir(legacy), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(legacy, data, 0o600); err != nil {
		t.Fatal(err)
	}
	o.editStore(func(tx *bbolt.Tx) error {
		j, err := store.GetJob(tx, old.JobID)
		if err != nil {
			return err
		}
		j.ReplicaID, j.Generation, j.Disks[0].Volume = "", 0, legacy
		return store.PutJob(tx, j)
	})
	if r := o.inventoryVMs()[0].CurrentReplica; r == nil || r.JobID != old.JobID || r.Disks[0].VolumePath != legacy {
		t.Errorf("current replica of an upgraded VM = %+v, want job %s in %s", r, old.JobID, legacy)
	}
	inc := o.create(createBody("vm-7", "incremental"))
	if inc.BaseJobID != old.JobID || inc.Generation != 0 || inc.Disks[0].VolumePath != legacy {
		t.Errorf("incremental on an old job = base %s generation %d volume %s", inc.BaseJobID, inc.Generation, inc.Disks[0].VolumePath)
	}
	if code := o.do("DELETE", "/api/v1/replications/"+inc.JobID, nil, nil); code != 200 {
		t.Fatalf("cancel = %d", code)
	}
	next := o.create(createBody("vm-7", "initial"))
	if next.Generation != 1 || next.Disks[0].VolumePath == legacy || !sameFile(t, legacy, data) {
		t.Errorf("initial after the upgrade: generation %d, volume %s; the old volume intact: %v", next.Generation, next.Disks[0].VolumePath, sameFile(t, legacy, data))
	}
}

// assertNotInJobsStream fails when any message of the JOBS stream, which
// every observer may read, holds secret.
func assertNotInJobsStream(t *testing.T, o *omaUnderTest, secret string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := o.conn.JetStream().Stream(ctx, bus.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		t.Fatalf("JOBS stream: %v, %+v", err, info)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if m, err := s.GetMsg(ctx, seq); err == nil && bytes.Contains(m.Data, []byte(secret)) {
			t.Errorf("JOBS message %d holds the export name: %s", seq, m.Data)
		}
	}
}

// TestReplicaFollowsTheInstanceUUID: a VM re-registered under a new moref
// keeps its instance UUID, and with it its replica and incremental base; a
// clone with the same BIOS UUID but its own instance UUID is another replica.
func TestReplicaFollowsTheInstanceUUID(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2)
	v := o.addVMA("vma-1")
	vm := testVM("vm-200", 1<<20)
	vm.UUID, vm.InstanceUUID = "4204a1b2-0000-0000-0000-0000000000aa", "5004c3d4-0000-0000-0000-000000000001"
	o.learn(v, vm)
	first := o.create(createBody("vm-200", "initial"))
	if !strings.HasPrefix(first.ReplicaID, vm.InstanceUUID+"-") {
		t.Errorf("replica id %q does not start with the instance UUID", first.ReplicaID)
	}
	o.finish(v, first.JobID, events.JobCompleted, "c/1")

	moved := vm
	moved.ID = "vm-201"
	clone := testVM("vm-300", 1<<20)
	clone.UUID, clone.InstanceUUID = vm.UUID, "5004c3d4-0000-0000-0000-000000000002"
	v.inventory(t, moved, clone)
	testkit.Eventually(t, "the new inventory", func() bool {
		ids := map[string]bool{}
		for _, x := range o.inventoryVMs() {
			ids[x.ID] = true
		}
		return ids["vm-201"] && ids["vm-300"] && !ids["vm-200"]
	})
	inc := o.create(createBody("vm-201", "incremental"))
	if inc.ReplicaID != first.ReplicaID || inc.BaseJobID != first.JobID || inc.Disks[0].VolumePath != first.Disks[0].VolumePath {
		t.Errorf("incremental after re-registration: replica %s base %s volume %s, want %s %s %s",
			inc.ReplicaID, inc.BaseJobID, inc.Disks[0].VolumePath, first.ReplicaID, first.JobID, first.Disks[0].VolumePath)
	}
	var p problem
	if code := o.do("POST", "/api/v1/replications", createBody("vm-300", "incremental"), &p); code != 409 {
		t.Errorf("incremental of a clone that was never copied = %d %+v, want 409", code, p)
	}
	cl := o.create(createBody("vm-300", "initial"))
	if cl.ReplicaID == first.ReplicaID || cl.Disks[0].VolumePath == first.Disks[0].VolumePath {
		t.Errorf("the clone shares replica %s", cl.ReplicaID)
	}
}
