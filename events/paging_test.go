package events_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/godwit/godwit/events"
)

func vms(n, nameLen int) []events.VM {
	out := make([]events.VM, n)
	for i := range out {
		out[i] = events.VM{ID: fmt.Sprintf("vm-%d", i), Name: strings.Repeat("n", nameLen), Path: "/dc/vm/x",
			Datacenter: "dc", PowerState: "poweredOn", Disks: []events.Disk{}, Networks: []events.Network{}}
	}
	return out
}

func TestPaginate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		vms       int
		limit     int
		wantPages int
	}{
		{"fits whole", 10, 1 << 20, 1},
		{"no VMs", 0, 512, 1},
		{"two pages", 10, 1500, 0}, // several pages: counted below
		{"one VM a page", 5, 500, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := events.DiscoverResult{RequestID: "req-1", VMAID: "vma-1", VCenter: events.VCenterRef{Host: "vc"}, VMs: vms(tt.vms, 100)}
			pages, err := r.Paginate(tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantPages != 0 && len(pages) != tt.wantPages {
				t.Fatalf("Paginate(%d) = %d pages, want %d", tt.limit, len(pages), tt.wantPages)
			}
			var all events.DiscoverPages
			for i, p := range pages {
				b, _ := json.Marshal(p)
				if len(b) > tt.limit {
					t.Errorf("page %d takes %d bytes, limit %d", i+1, len(b), tt.limit)
				}
				if len(pages) == 1 && (p.Page != 0 || p.Pages != 0) {
					t.Errorf("a whole result is numbered %d/%d", p.Page, p.Pages)
				}
				if len(pages) > 1 && (p.Page != i+1 || p.Pages != len(pages)) {
					t.Errorf("page %d is numbered %d/%d", i+1, p.Page, p.Pages)
				}
				// Pages arrive in any order: last first.
				if done := all.Add(pages[len(pages)-1-i]); done != (i == len(pages)-1) {
					t.Errorf("after %d of %d pages Complete = %v", i+1, len(pages), done)
				}
			}
			got := all.Result()
			if len(got.VMs) != tt.vms || got.Page != 0 || got.Pages != 0 || got.RequestID != "req-1" {
				t.Fatalf("assembled %d VMs, page %d/%d, want %d VMs", len(got.VMs), got.Page, got.Pages, tt.vms)
			}
			for i, vm := range got.VMs {
				if vm.ID != fmt.Sprintf("vm-%d", i) {
					t.Fatalf("VM %d is %s: order lost", i, vm.ID)
				}
			}
		})
	}
}

func TestPaginateRefusesAHugeVM(t *testing.T) {
	t.Parallel()
	r := events.DiscoverResult{RequestID: "req-1", VMAID: "vma-1", VMs: vms(3, 2000)}
	if _, err := r.Paginate(1000); !errors.Is(err, events.ErrVMTooLarge) {
		t.Errorf("Paginate = %v, want ErrVMTooLarge", err)
	}
}

func TestDiscoverPagesStartsOverOnARetry(t *testing.T) {
	t.Parallel()
	r := events.DiscoverResult{RequestID: "req-1", VMAID: "vma-1", VMs: vms(6, 100)}
	first, _ := r.Paginate(700)  // three pages of two VMs
	second, _ := r.Paginate(500) // six pages of one
	var a events.DiscoverPages
	a.Add(first[0])
	a.Add(first[1])
	for i, p := range second {
		if done := a.Add(p); done != (i == len(second)-1) {
			t.Fatalf("page %d of the retry: Complete = %v", i+1, done)
		}
	}
	if got := a.Result(); len(got.VMs) != 6 {
		t.Errorf("assembled %d VMs, want 6", len(got.VMs))
	}
	var f events.DiscoverPages
	if !f.Add(events.DiscoverResult{RequestID: "req-2", Error: &events.Failure{Code: events.FailureAuth, Message: "no"}}) {
		t.Error("a failed result is not complete")
	}
}
