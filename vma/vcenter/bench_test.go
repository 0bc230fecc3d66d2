package vcenter_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"

	"github.com/godwit/godwit/secret"
	"github.com/godwit/godwit/vma/vcenter"
	"github.com/godwit/godwit/vma/vcsim"
)

// bigSim is one simulator with 5,000 VMs (plus the seed's 13), built once
// per process: building is slow.
var bigSim = sync.OnceValues(func() (*vcsim.Simulator, error) {
	return vcsim.Start(context.Background(), vcsim.Config{ModelVMs: 5000})
})

// BenchmarkDiscover5000 discovers 5,013 VMs with full details (disks,
// networks) through one ContainerView retrieve, and in the same run
// compares it with a naive per-VM property fetch and with a names-only
// listing through govmomi's find package. Goal: full details in no more
// time than the names-only find.
func BenchmarkDiscover5000(b *testing.B) {
	start := time.Now()
	sim, err := bigSim()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("simulator with 5,000 VMs ready in %s", time.Since(start))
	ctx := context.Background()
	s, err := vcenter.Login(ctx, vcenter.Config{Host: sim.Host, Username: sim.Username, Password: secret.New(sim.Password), CAFile: sim.CAFile})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	var full, names, naive time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		_, vms, err := s.Discover(ctx, "DatabanxDC", "")
		if err != nil || len(vms) != 5013 || len(vms[0].Disks) == 0 {
			b.Fatalf("Discover = %d VMs, %v", len(vms), err)
		}
		full += time.Since(t0)

		t1 := time.Now()
		finder := find.NewFinder(s.Client, false)
		list, err := finder.VirtualMachineList(ctx, "/DatabanxDC/vm/...")
		if err != nil || len(list) != 5013 {
			b.Fatalf("find = %d VMs, %v", len(list), err)
		}
		names += time.Since(t1)
		n++
	}
	// The naive way is too slow to repeat: once, after the loop.
	t2 := time.Now()
	count := naiveDiscover(b, s)
	naive = time.Since(t2)
	if count != 5013 {
		b.Fatalf("naive = %d VMs", count)
	}
	b.ReportMetric(float64(full.Milliseconds())/float64(n), "full-ms")
	b.ReportMetric(float64(names.Milliseconds())/float64(n), "find-names-ms")
	b.ReportMetric(float64(naive.Milliseconds()), "naive-per-vm-ms")
	b.ReportMetric(float64(full)/float64(names), "full/find")
	b.ReportMetric(float64(naive)/(float64(full)/float64(n)), "naive/full")
}

// naiveDiscover lists the VMs, then fetches each one's properties with its
// own PropertyCollector call: a round trip per VM.
func naiveDiscover(b *testing.B, s *vcenter.Session) int {
	ctx := context.Background()
	m := view.NewManager(s.Client)
	v, err := m.CreateContainerView(ctx, s.Client.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = v.Destroy(ctx) }()
	refs, err := v.Find(ctx, []string{"VirtualMachine"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	pc := property.DefaultCollector(s.Client)
	for _, ref := range refs {
		var vm mo.VirtualMachine
		if err := pc.RetrieveOne(ctx, ref, []string{"name", "parent", "runtime.powerState", "config.uuid", "config.guestId",
			"config.hardware.numCPU", "config.hardware.memoryMB", "config.firmware", "config.changeTrackingEnabled",
			"config.hardware.device"}, &vm); err != nil {
			b.Fatal(err)
		}
	}
	return len(refs)
}
