package api_test

import (
	"testing"

	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
)

// TestPagedDiscoveryChangesTheInventoryOnce: the pages of an unfiltered
// discovery change nothing until the last one arrives; then the inventory
// holds every page's VMs and has forgotten the VM that is gone.
func TestPagedDiscoveryChangesTheInventoryOnce(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 1)
	v := o.addVMA("vma-1")
	o.learn(v, testVM("vm-gone", 1<<20), testVM("vm-a", 1<<20))

	whole := events.DiscoverResult{RequestID: bustest.AskDiscovery(t, v.conn, "vma-1", "vcenter.test"), VMAID: "vma-1",
		VCenter: events.VCenterRef{Host: "vcenter.test", Datacenter: "DatabanxDC"},
		VMs:     []events.VM{testVM("vm-a", 2<<20), testVM("vm-b", 1<<20), testVM("vm-c", 1<<20)}}
	pages, err := whole.Paginate(1400)
	if err != nil || len(pages) < 2 {
		t.Fatalf("Paginate = %d pages, %v; want several", len(pages), err)
	}
	inventory := func() map[string]int64 {
		var inv struct {
			VMs []struct {
				ID    string `json:"id"`
				Disks []struct {
					CapacityBytes int64 `json:"capacity_bytes"`
				} `json:"disks"`
			} `json:"vms"`
		}
		o.do("GET", "/api/v1/vms", nil, &inv)
		out := map[string]int64{}
		for _, vm := range inv.VMs {
			out[vm.ID] = vm.Disks[0].CapacityBytes
		}
		return out
	}
	for i := range pages[:len(pages)-1] {
		v.publish(t, &pages[i])
	}
	// A discovery of another vCenter after the pages: once it shows, the
	// consumer has been through the pages.
	v.publish(t, &events.DiscoverResult{RequestID: bustest.AskDiscovery(t, v.conn, "vma-1", "other.test"), VMAID: "vma-1",
		VCenter: events.VCenterRef{Host: "other.test"}, VMs: []events.VM{testVM("vm-marker", 1<<20)}})
	testkit.Eventually(t, "the marker", func() bool { _, ok := inventory()["vm-marker"]; return ok })
	if inv := inventory(); len(inv) != 3 || inv["vm-gone"] == 0 || inv["vm-a"] != 1<<20 {
		t.Fatalf("inventory before the last page = %v, want it unchanged", inv)
	}
	v.publish(t, &pages[len(pages)-1])
	testkit.Eventually(t, "the whole discovery", func() bool {
		inv := inventory()
		return len(inv) == 4 && inv["vm-a"] == 2<<20 && inv["vm-b"] != 0 && inv["vm-c"] != 0 && inv["vm-gone"] == 0
	})
}

// TestOnlyRequestedDiscoveriesReachTheInventory: a VMA that publishes a
// result nobody asked for, or one for another vCenter than it was asked
// about, changes nothing; the result of a request the OMA published does.
func TestOnlyRequestedDiscoveriesReachTheInventory(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 1)
	v := o.addVMA("vma-1")
	ids := func() map[string]bool {
		var inv struct{ VMs []struct{ ID string } }
		o.do("GET", "/api/v1/vms", nil, &inv)
		out := map[string]bool{}
		for _, vm := range inv.VMs {
			out[vm.ID] = true
		}
		return out
	}
	v.publish(t, &events.DiscoverResult{RequestID: events.NewID(), VMAID: "vma-1",
		VCenter: events.VCenterRef{Host: "victim.test"}, VMs: []events.VM{testVM("vm-unasked", 1<<20)}})
	asked := bustest.AskDiscovery(t, v.conn, "vma-1", "vcenter.test")
	v.publish(t, &events.DiscoverResult{RequestID: asked, VMAID: "vma-1",
		VCenter: events.VCenterRef{Host: "victim.test"}, VMs: []events.VM{testVM("vm-elsewhere", 1<<20)}})
	// The consumer handles results in order: once a later one shows, it
	// has been through the two before.
	o.learn(v, testVM("vm-asked", 1<<20))
	if got := ids(); got["vm-unasked"] || got["vm-elsewhere"] || !got["vm-asked"] {
		t.Errorf("inventory = %v, want only vm-asked", got)
	}
}
