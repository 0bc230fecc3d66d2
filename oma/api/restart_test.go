package api_test

import (
	"os"
	"testing"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
)

// TestRestart stops the OMA and starts it again on the same data: jobs,
// inventory, VMAs and leases are intact, active jobs are served again on
// their ports, and an ended job's lease is released.
func TestRestart(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 3)
	var cred struct {
		NKeySeed string `json:"nkey_seed"`
	}
	if code := o.do("POST", "/api/v1/vmas", map[string]string{"id": "vma-1"}, &cred); code != 201 || cred.NKeySeed == "" {
		t.Fatalf("add vma = %d", code)
	}
	v := o.connectVMA("vma-1", cred.NKeySeed)
	o.learn(v, testVM("vm-1", 1<<20), testVM("vm-2", 2<<20), testVM("vm-3", 1<<20))
	var a, b, c job
	o.do("POST", "/api/v1/replications", createBody("vm-1", "initial"), &a)
	o.do("POST", "/api/v1/replications", createBody("vm-2", "initial"), &b)
	o.do("POST", "/api/v1/replications", createBody("vm-3", "initial"), &c)
	v.publish(t, &events.Progress{JobID: a.JobID, VMAID: "vma-1", Seq: 1, Phase: "copying", BytesTotal: 1 << 20, BytesDone: 4096, Disks: []events.DiskProgress{}})
	testkit.Eventually(t, "progress", func() bool {
		o.do("GET", "/api/v1/replications/"+a.JobID, nil, &a)
		return a.State == "copying"
	})
	f, err := os.OpenFile(b.Disks[0].VolumePath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("migrated"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	o.restart()
	// The VMA comes back with the same credentials and finishes vm-3's job.
	v = o.connectVMA("vma-1", cred.NKeySeed)
	v.publish(t, &events.ReplicationStatus{JobID: c.JobID, VMAID: "vma-1", Seq: 1, State: "completed", Disks: []events.DiskChange{{Key: 2000, ChangeID: "x/1"}}})
	testkit.Eventually(t, "vm-3 completed", func() bool {
		o.do("GET", "/api/v1/replications/"+c.JobID, nil, &c)
		return c.State == "completed"
	})

	var a2, b2 job
	o.do("GET", "/api/v1/replications/"+a.JobID, nil, &a2)
	o.do("GET", "/api/v1/replications/"+b.JobID, nil, &b2)
	if a2.State != "copying" || a2.BytesDone != 4096 || b2.State != "pending" {
		t.Errorf("after restart: a = %+v, b = %+v", a2, b2)
	}
	for _, j := range []job{a2, b2} {
		if size := nbdinfoSize(t, j.Disks[0].NBDURL); size != j.Disks[0].CapacityBytes {
			t.Errorf("export %s after restart: size %d", j.Disks[0].NBDURL, size)
		}
	}
	if a2.Disks[0].Export.Port != a.Disks[0].Export.Port || b2.Disks[0].Export.Port != b.Disks[0].Export.Port {
		t.Error("exports moved to other ports")
	}
	testkit.Eventually(t, "vm-3's port released", func() bool { return !portOpen(c.Disks[0].Export.Port) })
	if b, _ := os.ReadFile(b.Disks[0].VolumePath); string(b[:8]) != "migrated" {
		t.Error("a volume lost its data across the restart")
	}
	var inv struct{ VMs []any }
	o.do("GET", "/api/v1/vms", nil, &inv)
	var vmas struct {
		VMAs []struct {
			ID        string `json:"id"`
			Connected bool   `json:"connected"`
		} `json:"vmas"`
	}
	o.do("GET", "/api/v1/vmas", nil, &vmas)
	if len(inv.VMs) != 3 || len(vmas.VMAs) != 1 || !vmas.VMAs[0].Connected {
		t.Errorf("after restart: %d VMs, VMAs %+v", len(inv.VMs), vmas.VMAs)
	}
	// A new job takes the freed port.
	var d job
	if code := o.do("POST", "/api/v1/replications", createBody("vm-3", "incremental"), &d); code != 201 || d.Disks[0].Export.Port != c.Disks[0].Export.Port {
		t.Errorf("incremental after restart = %d %+v", code, d)
	}
}
