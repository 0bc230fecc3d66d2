package api_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	omaappliance "github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/problem"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/vcsim"
)

// wideVMs is how many wide simulated VMs (80-character names, 15 disks, 10
// NICs, about 6 KiB each) make a discovery of about 250 KB: more than two
// messages of smallPayload. The simulator builds them in seconds; the 170
// that exceed the default 1 MiB took 20 s, minutes under -race.
const (
	wideVMs      = 40
	smallPayload = 96 << 10
)

// TestDiscoverLargerThanMaxPayload discovers a simulated vCenter whose
// inventory does not fit one NATS message (the server's max payload
// lowered to smallPayload): the VMA pages the result across events, and
// the VMA API, the OMA's inventory and the OMA-initiated discovery each get
// every VM. TestDiscover5013VMs does it past the default 1 MiB.
func TestDiscoverLargerThanMaxPayload(t *testing.T) {
	discoverLargerThanMaxPayload(t, stackConfig{
		sim: vcsim.Config{WideVMs: wideVMs},
		oma: func(c *omaappliance.Config) { c.NATSMaxPayload = smallPayload },
	}, wideVMs+13)
}

// TestDiscover5013VMs discovers the benchmark's simulator, 5,000 VMs of
// govmomi's model and the seed's 13, the same way.
// Under the race detector one discovery of them takes about a minute.
func TestDiscover5013VMs(t *testing.T) {
	testkit.Long(t)
	const wait = 5 * time.Minute
	discoverLargerThanMaxPayload(t, stackConfig{
		sim: vcsim.Config{ModelVMs: 5000},
		oma: func(c *omaappliance.Config) { c.DiscoverTimeout = wait },
		vma: func(c *appliance.Config) { c.DiscoverTimeout = wait },
	}, 5013)
}

func discoverLargerThanMaxPayload(t *testing.T, sc stackConfig, want int) {
	s := newStackWith(t, sc)
	var res struct {
		VCenter events.VCenterRef `json:"vcenter"`
		VMs     []events.VM       `json:"vms"`
	}
	if code := s.post(t, "/api/v1/discover", s.discoverBody(s.sim.Password), &res); code != 200 {
		t.Fatalf("discover = %d", code)
	}
	if len(res.VMs) != want {
		t.Fatalf("discover = %d VMs, want %d", len(res.VMs), want)
	}
	all, _ := json.Marshal(res.VMs)
	if max := s.oma.NATS().MaxPayload(); int64(len(all)) <= max {
		t.Fatalf("the result takes %d bytes, not more than the max payload %d: the test proves nothing", len(all), max)
	}
	seen := map[string]bool{}
	for _, vm := range res.VMs {
		if seen[vm.ID] {
			t.Errorf("VM %s listed twice", vm.ID)
		}
		seen[vm.ID] = true
	}
	if pages := bustest.Count(t, s.oma, bus.StreamInventory, "godwit.discover.result.>"); pages < 2 {
		t.Errorf("the result went in %d messages, want pages", pages)
	}
	testkit.Eventually(t, "the OMA's inventory of every VM", func() bool {
		var inv struct{ VMs []struct{ ID string } }
		s.o.Do("GET", "/api/v1/vms", nil, &inv)
		return len(inv.VMs) == want
	})
	var got struct {
		VMs   []struct{ ID string }
		Page  int `json:"page"`
		Pages int `json:"pages"`
	}
	body := map[string]any{"vcenter": s.sim.Host, "username": s.sim.Username, "password": s.sim.Password, "datacenter": "DatabanxDC"}
	if code := s.o.Do("POST", "/api/v1/discover", body, &got); code != 200 || len(got.VMs) != want || got.Page != 0 || got.Pages != 0 {
		t.Fatalf("OMA discover = %d: %d VMs (page %d/%d); want %d", code, len(got.VMs), got.Page, got.Pages, want)
	}
}

// TestDiscoveryThatCannotBePublished: when one VM alone is larger than the
// server takes, the VMA answers with a failure result saying so and
// terminates the request instead of redelivering it forever.
func TestDiscoveryThatCannotBePublished(t *testing.T) {
	s := newStackWith(t, stackConfig{
		sim: vcsim.Config{WideVMs: 1},
		oma: func(c *omaappliance.Config) { c.NATSMaxPayload = 12 << 10 }, // a page may take 4 KiB; a wide VM is 6 KiB
	})
	var p problem.Problem
	if code := s.post(t, "/api/v1/discover", s.discoverBody(s.sim.Password), &p); code != 502 || !strings.Contains(p.Detail, "cannot be published") {
		t.Fatalf("discover of a VM too large to publish = %d %+v, want 502 saying it cannot be published", code, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := s.oma.JetStream().Consumer(ctx, bus.StreamDiscovery, bus.VMADurable("vma-1"))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the request terminated", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0
	})
}
