package appliance_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestSeedDiscoveryThroughBothAppliances runs the seed's step 1 on the two
// appliances as their binaries wire them: the VMA's API discovers the
// simulated vCenter, and the OMA learns the inventory from the result.
func TestSeedDiscoveryThroughBothAppliances(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sim, err := vcsim.Start(ctx, vcsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	o := testbed.StartOMA(t, testbed.OMAConfig{})
	v := testbed.StartVMA(t, o, testbed.VMAConfig{VCenterCAFile: sim.CAFile})

	var res struct {
		VMs []struct {
			ID, Name, Path string
		}
	}
	body := map[string]string{"vcenter": sim.Host, "username": sim.Username, "password": sim.Password, "datacenter": vcsim.Datacenter}
	if code := testbed.Do(t, http.MethodPost, v.URL+"/api/v1/discover", "", body, &res); code != http.StatusOK {
		t.Fatalf("discover = %d", code)
	}
	found := false
	for _, vm := range res.VMs {
		found = found || vm.Path == "/"+vcsim.Datacenter+"/vm/"+vcsim.SeedVM
	}
	if !found || len(res.VMs) != 13 {
		t.Fatalf("discovered %d VMs, seed VM found: %v", len(res.VMs), found)
	}
	testbed.Eventually(t, "the OMA's inventory", func() bool {
		var inv struct {
			VMs []struct {
				ID    string `json:"id"`
				VMAID string `json:"vma_id"`
			} `json:"vms"`
		}
		o.Do(http.MethodGet, "/api/v1/vms", nil, &inv)
		return len(inv.VMs) == len(res.VMs) && inv.VMs[0].VMAID == v.ID
	})

	// A restart of either keeps what was learned and serves again.
	v.Stop()
	v.Start()
	o.Restart()
	var health struct {
		Status, Version string
	}
	if code := testbed.Do(t, http.MethodGet, v.URL+"/api/v1/health", "", nil, &health); code != http.StatusOK || health.Version != appliance.Version {
		t.Errorf("VMA health after restarts = %d %+v", code, health)
	}
	var inv struct {
		VMs []struct{ ID string } `json:"vms"`
	}
	if o.Do(http.MethodGet, "/api/v1/vms", nil, &inv); len(inv.VMs) != len(res.VMs) {
		t.Errorf("inventory after a restart has %d VMs, want %d", len(inv.VMs), len(res.VMs))
	}
}

// TestAPIListensOnLoopbackByDefault: a VMA configured without an API
// address serves on 127.0.0.1:8081, reachable only from its own machine
// (and, in production, through the tunnel's forward on the OMA).
func TestAPIListensOnLoopbackByDefault(t *testing.T) {
	o := testbed.StartOMA(t, testbed.OMAConfig{})
	v := testbed.StartVMA(t, o, testbed.VMAConfig{Configure: func(c *appliance.Config) { c.APIAddr = "" }})
	if v.URL != "http://127.0.0.1:8081" {
		t.Errorf("the VMA API listens at %s, want http://127.0.0.1:8081", v.URL)
	}
}
