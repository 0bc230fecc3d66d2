package appliance_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/api"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/tunnel/tunneltest"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestSeedDiscoveryThroughBothAppliances runs the seed's step 1 on the two
// appliances as their binaries wire them: the VMA's API discovers the
// simulated vCenter, and the OMA learns the inventory from the result.
func TestSeedDiscoveryThroughBothAppliances(t *testing.T) {
	sim := testbed.StartSim(t, vcsim.Config{})
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
	testkit.Eventually(t, "the OMA's inventory", func() bool {
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

// TestAPIAnswersWhileTheBusIsUnreachable: a VMA whose tunnel cannot be made
// serves its API at once, answering 503 that it is starting and, unless a
// token guards the details, how its tunnel fails; it stops cleanly.
func TestAPIAnswersWhileTheBusIsUnreachable(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	token := sha256.Sum256([]byte("secret"))
	for _, tt := range []struct {
		name       string
		token      []byte
		showTunnel bool
	}{{"no token", nil, true}, {"with a token", token[:], false}} {
		t.Run(tt.name, func(t *testing.T) {
			nowhere := tunneltest.FreePort(t) // nothing listens there
			v, err := appliance.New(appliance.Config{DataDir: t.TempDir(), ID: "vma-1", APIAddr: "127.0.0.1:0",
				NATSURL: "nats://127.0.0.1:4222", NATSSeed: seed, OMAURL: "http://127.0.0.1:8082",
				Tunnel: fmt.Sprintf("ssh://godwit@127.0.0.1:%d", nowhere), TunnelInsecure: true,
				API: api.Config{TokenSHA256: tt.token}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- v.Run(ctx) }()
			defer func() {
				cancel()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("Run = %v after ctx ended, want nil", err)
					}
				case <-time.After(testkit.Wait(t)):
					t.Error("Run did not return after ctx ended")
				}
			}()
			var health struct {
				Status string `json:"status"`
				Detail string `json:"detail"`
				Tunnel *struct {
					Connected bool   `json:"connected"`
					LastError string `json:"last_error"`
				} `json:"tunnel"`
			}
			testkit.Eventually(t, "health saying the VMA is starting", func() bool {
				addr := v.Addrs().API
				return addr != "" && testbed.Do(t, http.MethodGet, "http://"+addr+"/api/v1/health", "", nil, &health) == http.StatusServiceUnavailable &&
					(health.Tunnel == nil || health.Tunnel.LastError != "")
			})
			if health.Status != "starting" || !strings.Contains(health.Detail, "through its SSH tunnel") {
				t.Errorf("health = %+v", health)
			}
			if tt.showTunnel && (health.Tunnel == nil || health.Tunnel.Connected || !strings.Contains(health.Tunnel.LastError, "connection refused")) {
				t.Errorf("health's tunnel = %+v, want the dial's refusal", health.Tunnel)
			}
			if !tt.showTunnel && health.Tunnel != nil {
				t.Errorf("health shows the tunnel without the token: %+v", health.Tunnel)
			}
			var p struct {
				Detail string `json:"detail"`
			}
			if code := testbed.Do(t, http.MethodGet, "http://"+v.Addrs().API+"/api/v1/status/job-1", "", nil, &p); code != http.StatusServiceUnavailable ||
				!strings.Contains(p.Detail, "starting") {
				t.Errorf("GET status while starting = %d %+v, want 503 saying the VMA is starting", code, p)
			}
		})
	}
}

// TestBusLostForGood: when nats.go closes the VMA's bus connection for
// good all the same (here the test closes it under the VMA), the VMA
// connects anew and its API works on the new connection.
func TestBusLostForGood(t *testing.T) {
	sim := testbed.StartSim(t, vcsim.Config{})
	conns := make(chan *nats.Conn, 4)
	grab := func(o *nats.Options) error { // every connection the VMA makes
		connected := o.ConnectedCB
		o.ConnectedCB = func(nc *nats.Conn) {
			conns <- nc
			connected(nc)
		}
		return nil
	}
	o := testbed.StartOMA(t, testbed.OMAConfig{})
	v := testbed.StartVMA(t, o, testbed.VMAConfig{VCenterCAFile: sim.CAFile, Configure: func(c *appliance.Config) {
		c.NATSOptions = []nats.Option{grab}
		c.Heartbeat = 100 * time.Millisecond
	}})
	first := <-conns
	first.Close() // not through the VMA: as nats.go closing it for good
	select {
	case <-conns:
	case <-time.After(30 * time.Second):
		t.Fatalf("the VMA did not connect anew in 30 s\n%s", v.Logs)
	}
	var h struct {
		Status string `json:"status"`
		Bus    struct {
			Connected bool `json:"connected"`
		} `json:"bus"`
	}
	testkit.Eventually(t, "the VMA's health ok on the new connection", func() bool {
		return testbed.Do(t, http.MethodGet, v.URL+"/api/v1/health", "", nil, &h) == http.StatusOK && h.Status == "ok" && h.Bus.Connected
	})
	if !strings.Contains(v.Logs.String(), "bus connection lost for good: connecting again") {
		t.Error("the VMA did not log that it lost its bus connection")
	}
	var res struct {
		VMs []any `json:"vms"`
	}
	body := map[string]string{"vcenter": sim.Host, "username": sim.Username, "password": sim.Password, "datacenter": vcsim.Datacenter}
	if code := testbed.Do(t, http.MethodPost, v.URL+"/api/v1/discover", "", body, &res); code != http.StatusOK || len(res.VMs) == 0 {
		t.Fatalf("discover on the new connection = %d, %d VMs", code, len(res.VMs))
	}
}

// TestHeartbeatCarriesLoad: the VMA's heartbeat says its capacity, the
// jobs it runs and queues, and the OMA shows it on GET /api/v1/vmas: a
// job held at its snapshot runs, and when it ends, none does.
func TestHeartbeatCarriesLoad(t *testing.T) {
	hold := make(chan struct{})
	var release sync.Once
	free := func() { release.Do(func() { close(hold) }) }
	t.Cleanup(free)
	sim := testbed.StartSim(t, vcsim.Config{VMs: 1, BeforeSnapshot: func(string) { <-hold }})
	o := testbed.StartOMA(t, testbed.OMAConfig{})
	testbed.StartVMA(t, o, testbed.VMAConfig{VCenterCAFile: sim.CAFile, Configure: func(c *appliance.Config) {
		c.MaxJobs, c.Heartbeat = 3, 100*time.Millisecond
	}})
	load := func() events.VMALoad {
		var list struct {
			VMAs []struct {
				Load *events.VMALoad `json:"load"`
			} `json:"vmas"`
		}
		if o.Do(http.MethodGet, "/api/v1/vmas", nil, &list); len(list.VMAs) != 1 || list.VMAs[0].Load == nil {
			return events.VMALoad{}
		}
		return *list.VMAs[0].Load
	}
	testkit.Eventually(t, "the VMA's capacity at the OMA", func() bool { return load() == events.VMALoad{MaxJobs: 3} })

	vms := o.Discover(map[string]any{"vcenter": sim.Host, "username": sim.Username, "password": sim.Password, "datacenter": vcsim.Datacenter})
	var vmID string
	for _, vm := range vms {
		if vm.Name == vcsim.SeedVM {
			vmID = vm.ID
		}
	}
	var job struct {
		JobID string `json:"job_id"`
		State string `json:"state"`
	}
	if code := o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": vmID}, "replication_type": "initial"}, &job); code != http.StatusCreated {
		t.Fatalf("create = %d", code)
	}
	if code := o.Do(http.MethodPost, "/api/v1/replications/"+job.JobID+"/start", map[string]any{"username": sim.Username, "password": sim.Password}, nil); code != http.StatusAccepted {
		t.Fatalf("start = %d", code)
	}
	testkit.Eventually(t, "one job running, held at its snapshot", func() bool { return load() == events.VMALoad{MaxJobs: 3, Running: 1} })
	free()
	testkit.Eventually(t, "the job completed", func() bool {
		o.Do(http.MethodGet, "/api/v1/replications/"+job.JobID, nil, &job)
		return job.State == events.JobCompleted
	})
	testkit.Eventually(t, "no job running", func() bool { return load() == events.VMALoad{MaxJobs: 3} })
}
