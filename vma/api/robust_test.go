package api_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/vma/vcsim"
)

// wideVMs is how many wide simulated VMs (80-character names, 15 disks, 10
// NICs) make a discovery larger than the server's 1 MiB max payload.
const wideVMs = 170

// TestDiscoverLargerThanMaxPayload discovers a simulated vCenter whose
// inventory does not fit one NATS message: the VMA pages the result across
// events, and the VMA API, the OMA's inventory and the OMA-initiated
// discovery each get every VM.
func TestDiscoverLargerThanMaxPayload(t *testing.T) {
	s := newStackWith(t, stackConfig{sim: vcsim.Config{WideVMs: wideVMs}})
	const want = wideVMs + 13
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
	if pages := resultMessages(t, s); pages < 2 {
		t.Errorf("the result went in %d messages, want pages", pages)
	}
	testbed.Eventually(t, "the OMA's inventory of every VM", func() bool {
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


// resultMessages counts the discover result messages in the stream.
func resultMessages(t *testing.T, s *stack) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, err := s.oma.JetStream().Stream(ctx, bus.StreamDiscovery)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx, jetstream.WithSubjectFilter("godwit.discover.result.>"))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}
