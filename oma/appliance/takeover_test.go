package appliance_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/authkeys"
	"github.com/godwit/godwit/oma/tunnels"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	vmaappliance "github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/tunnel"
	"github.com/godwit/godwit/vma/tunnel/tunneltest"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestStandbyTakesOverMidCopy: two oma processes on a cluster of three
// NATS nodes (in this process), sharing -data, each with a -state-dir of
// its own; one active, one -standby. A plan's initial sync copies a VM;
// mid-copy the active OMA is killed with SIGKILL. The standby takes over:
// the sync completes byte-exact, once (no sync lost or doubled), and the
// tokens made on the killed OMA still work. The VMA reaches the cluster
// directly, or only through an SSH tunnel to each OMA's own sshd, given
// both: then the active OMA's sshd goes with it (its machine is gone) and
// the VMA's tunnel moves to the standby's.
func TestStandbyTakesOverMidCopy(t *testing.T) {
	testkit.Long(t)
	t.Run("direct", func(t *testing.T) { takeOver(t, false) })
	t.Run("through SSH", func(t *testing.T) { takeOver(t, true) })
}

func takeOver(t *testing.T, throughSSH bool) {
	c, keys := startKeyedCluster(t)
	sim := testbed.StartSim(t, vcsim.Config{VMs: 1, DiskData: 6 << 20,
		Extra: []vcsim.VM{{Name: "ha-vm", Disks: []int64{32 << 20}, CBT: true, On: true}}})
	dir := t.TempDir()
	bin := testbed.BuildCommand(t, dir, "oma")
	data := filepath.Join(dir, "data")
	tunnelDir := filepath.Join(dir, "tunnels") // the same path on both OMAs' machines
	first, last := testkit.FreePorts(t, 8)
	oma := func(name string, standby bool) *testbed.Process {
		port, _ := testkit.FreePorts(t, 1)
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		p := &testbed.Process{TB: t, What: "oma " + name, Bin: bin, URL: url, Logs: &testkit.Buffer{}, Args: []string{
			"-data", data, "-state-dir", filepath.Join(dir, name), "-api-addr", fmt.Sprintf("127.0.0.1:%d", port), "-api-url", url,
			"-nats-url", c.URLs(), "-cluster-keys", keys.Dir, "-stream-replicas", "3", "-server-name", name,
			"-nbd-ports", fmt.Sprintf("%d-%d", first, last), "-nbd-ports-per-vma", "4", "-min-sync-interval", "1s", "-tunnel-dir", tunnelDir}}
		if standby {
			p.Args = append(p.Args, "-standby")
		}
		t.Cleanup(func() {
			p.Stop()
			if t.Failed() {
				t.Logf("%s's log:\n%s", name, p.Logs)
			}
		})
		return p
	}
	a, b := oma("oma-a", false), oma("oma-b", true)
	a.Start()
	b.Launch()
	testkit.Eventually(t, "oma-b following oma-a", func() bool {
		if b.Exited() {
			t.Fatalf("oma-b stopped:\n%s", b.Logs)
		}
		return strings.Contains(b.Logs.String(), `msg="standby: following the active OMA" active=oma-a`)
	})
	tok, err := os.ReadFile(filepath.Join(dir, "oma-a", "initial-token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))
	do := func(p *testbed.Process, method, path string, body, out any) int {
		t.Helper()
		return testbed.Do(t, method, p.URL+path, token, body, out)
	}
	var reader struct {
		Token string `json:"token"`
	}
	if code := do(a, http.MethodPost, "/api/v1/tokens", map[string]any{"name": "reader", "scope": "read"}, &reader); code != http.StatusCreated {
		t.Fatalf("create a token = %d", code)
	}

	// A VMA on the cluster, registered with oma-a, copying at 2 MiB/s.
	var cred struct {
		NKeySeed string `json:"nkey_seed"`
	}
	apiPort, _ := testkit.FreePorts(t, 1)
	reg := map[string]any{"id": "vma-1", "api_port": apiPort}
	vcfg := vmaappliance.Config{DataDir: filepath.Join(dir, "vma"), ID: "vma-1", APIAddr: "127.0.0.1:0", NATSURL: c.URLs(),
		OMAURL: a.URL, VCenterCAFile: sim.CAFile, Source: "datastore",
		ProgressInterval: 50 * time.Millisecond, CheckpointInterval: 200 * time.Millisecond, ExportRetry: 2 * time.Minute,
		Copy: copier.Config{Limiter: copier.NewLimiter(2<<20, nil)}}
	var sshdA, sshdB *tunneltest.SSHD
	if throughSSH {
		sshdA, sshdB = tunneltest.StartSSHD(t), tunneltest.StartSSHD(t)
		key, err := tunnel.LoadOrCreateKey(vcfg.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		// Each OMA's sshd lets the VMA reach the three nodes, the NBD pool
		// and its API socket: the line an operator writes for a cluster.
		var natsAddrs []string
		for _, srv := range c.Servers {
			natsAddrs = append(natsAddrs, strings.TrimPrefix(srv.ClientURL(), "nats://"))
		}
		line, err := authkeys.Line(authkeys.Forwards{NATS: strings.Join(natsAddrs, ","), NBDHost: "127.0.0.1", FirstPort: first, LastPort: last},
			tunnel.AuthorizedKey(key), "vma-1")
		if err != nil {
			t.Fatal(err)
		}
		sshdA.Authorize(line)
		sshdB.Authorize(line)
		known := filepath.Join(dir, "known_hosts")
		var hosts []byte
		for _, s := range []*tunneltest.SSHD{sshdA, sshdB} {
			b, err := os.ReadFile(s.KnownHosts)
			if err != nil {
				t.Fatal(err)
			}
			hosts = append(append(hosts, b...), '\n')
		}
		if err := os.WriteFile(known, hosts, 0o600); err != nil {
			t.Fatal(err)
		}
		vcfg.Tunnel = "ssh://" + sshdA.User + "@" + sshdA.Addr + ",ssh://" + sshdB.User + "@" + sshdB.Addr
		vcfg.TunnelKnownHosts, vcfg.TunnelListen = known, tunnels.SocketPath(tunnelDir, "vma-1")
		reg["ssh_public_key"] = tunnel.AuthorizedKey(key)
	}
	if code := do(a, http.MethodPost, "/api/v1/vmas", reg, &cred); code != http.StatusCreated {
		t.Fatalf("register vma-1 = %d", code)
	}
	vlogs := &testkit.Buffer{}
	vcfg.NATSSeed = []byte(cred.NKeySeed)
	vcfg.Logger = slog.New(slog.NewTextHandler(vlogs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	testbed.RunVMA(t, vcfg, vlogs)
	testbed.WaitForVMAKey(t, a.URL, token, "vma-1", "")
	if code := do(a, http.MethodPost, "/api/v1/vcenters", map[string]any{"name": "sim", "host": sim.Host,
		"username": sim.Username, "password": sim.Password, "datacenters": []string{vcsim.Datacenter}}, nil); code != http.StatusCreated {
		t.Fatalf("register the vCenter = %d", code)
	}
	path := "/" + vcsim.Datacenter + "/vm/ha-vm"
	if code := do(a, http.MethodPost, "/api/v1/plans", map[string]any{"name": "ha", "vcenter": "sim", "vms": []string{path},
		"sync": map[string]any{"interval": "1h"}}, nil); code != http.StatusCreated {
		t.Fatalf("create the plan = %d", code)
	}
	var plan haPlan
	t.Cleanup(func() {
		if t.Failed() {
			var raw map[string]any
			do(a, http.MethodGet, "/api/v1/plans/ha/preflight", nil, &raw)
			t.Logf("the plan's preflight: %v", raw)
		}
	})
	testkit.Eventually(t, "the plan's initial sync copying", func() bool {
		do(a, http.MethodGet, "/api/v1/plans/ha", nil, &plan)
		if len(plan.VMs) != 1 || plan.VMs[0].CurrentJob == "" {
			return false
		}
		var j replicaJob
		do(a, http.MethodGet, "/api/v1/replications/"+plan.VMs[0].CurrentJob, nil, &j)
		return j.BytesDone > 2<<20
	})
	syncJob := plan.VMs[0].CurrentJob

	killed := time.Now()
	a.Kill()
	if sshdA != nil {
		sshdA.Stop() // oma-a's machine is gone: the VMA's tunnel goes to oma-b's sshd
	}
	testkit.Eventually(t, "oma-b serving as the active OMA", func() bool {
		resp, err := http.Get(b.URL + "/api/v1/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	t.Logf("oma-b serves %s after oma-a was killed (lease TTL 5s)", time.Since(killed).Round(time.Millisecond))

	var j replicaJob
	testkit.Eventually(t, "the sync completed on oma-b", func() bool {
		do(b, http.MethodGet, "/api/v1/replications/"+syncJob, nil, &j)
		return j.State == events.JobCompleted || j.State == events.JobFailed || j.State == events.JobCancelled
	})
	if j.State != events.JobCompleted {
		t.Fatalf("the sync ended %s: %s", j.State, j.LastError)
	}
	for _, d := range j.Disks {
		src, err := sim.DiskFile(context.Background(), path, d.Key)
		if err != nil {
			t.Fatal(err)
		}
		if err := testkit.SameDisk(src, d.VolumePath); err != nil {
			t.Errorf("disk %d: %v", d.Key, err)
		}
	}
	// One sync, recorded: none lost, none doubled.
	testkit.Eventually(t, "the plan's VM synced", func() bool {
		do(b, http.MethodGet, "/api/v1/plans/ha", nil, &plan)
		return len(plan.VMs) == 1 && plan.VMs[0].LastSync != nil
	})
	if vm := plan.VMs[0]; vm.Syncs != 1 || vm.LastSync.Job != syncJob {
		t.Errorf("the plan's VM: %d syncs, the last job %s; want 1, %s", vm.Syncs, vm.LastSync.Job, syncJob)
	}
	var jobs struct {
		Replications []struct {
			JobID string `json:"job_id"`
		} `json:"replications"`
	}
	do(b, http.MethodGet, "/api/v1/replications", nil, &jobs)
	if len(jobs.Replications) != 1 {
		t.Errorf("oma-b has %d jobs, want the one sync", len(jobs.Replications))
	}
	if sshdB != nil { // the copy went on through oma-b's sshd
		logs := vlogs.String()
		if !strings.Contains(logs, `msg="ssh connection restored"`) || !strings.Contains(logs, "oma="+sshdB.Addr) {
			t.Errorf("the VMA's tunnel did not move to oma-b's sshd %s", sshdB.Addr)
		}
	}
	// The tokens made on oma-a work on oma-b.
	if code := testbed.Do(t, http.MethodGet, b.URL+"/api/v1/plans", reader.Token, nil, nil); code != http.StatusOK {
		t.Errorf("the read token on oma-b: GET /api/v1/plans = %d", code)
	}
	if code := testbed.Do(t, http.MethodPost, b.URL+"/api/v1/tokens", reader.Token, map[string]any{"name": "x"}, nil); code != http.StatusForbidden {
		t.Errorf("the read token on oma-b: POST /api/v1/tokens = %d, want 403", code)
	}
}

// haPlan is the OMA's view of a plan, as much as the takeover test reads.
type haPlan struct {
	VMs []struct {
		CurrentJob string `json:"current_job"`
		Syncs      int    `json:"syncs"`
		LastSync   *struct {
			Job string `json:"job"`
		} `json:"last_sync"`
	} `json:"vms"`
}
