package jobs_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/tunnel/tunneltest"
	"github.com/godwit/godwit/vma/vcsim"
)

// omaProcess is the oma command running as a process of its own, as it
// runs in production, so that a test can kill it with SIGKILL.
type omaProcess struct {
	testbed.Process
	natsURL     string
	first, last int // the NBD port pool
	dataDir     string
	token       string
}

// startOMAProcess builds the oma command and starts it on free ports.
func startOMAProcess(tb testing.TB) *omaProcess {
	tb.Helper()
	dir := tb.TempDir()
	bin := testbed.BuildCommand(tb, dir, "oma")
	apiPort, natsPort := tunneltest.FreePort(tb), tunneltest.FreePort(tb)
	first, last := testkit.FreePorts(tb, 4)
	p := &omaProcess{Process: testbed.Process{TB: tb, What: "the OMA process", Bin: bin, URL: fmt.Sprintf("http://127.0.0.1:%d", apiPort),
		Logs: &testkit.Buffer{}}, natsURL: fmt.Sprintf("nats://127.0.0.1:%d", natsPort), first: first, last: last, dataDir: filepath.Join(dir, "oma")}
	p.Args = []string{"-data", p.dataDir, "-api-addr", fmt.Sprintf("127.0.0.1:%d", apiPort), "-api-url", p.URL,
		"-nats-addr", fmt.Sprintf("127.0.0.1:%d", natsPort), "-nbd-ports", fmt.Sprintf("%d-%d", first, last), "-discover-timeout", "20s"}
	p.Start()
	tb.Cleanup(p.Stop)
	tok, err := os.ReadFile(filepath.Join(p.dataDir, "initial-token"))
	if err != nil {
		tb.Fatal(err)
	}
	p.token = strings.TrimSpace(string(tok))
	return p
}

// do sends a request to the OMA's API with its token.
func (p *omaProcess) do(method, path string, body, out any) int {
	p.TB.Helper()
	return testbed.Do(p.TB, method, p.URL+path, p.token, body, out)
}

// TestOMAKilledMidCopyThroughTheTunnel kills the oma process with SIGKILL
// while a job copies through the VMA's SSH tunnel. Re-opening an export
// while the OMA is down is refused by its sshd ("connect failed
// (Connection refused)"): the copy counts it as the export gone and keeps
// trying, the VMA keeps reconnecting to the bus, and once the OMA is back
// the job completes byte-exact from its checkpoints.
func TestOMAKilledMidCopyThroughTheTunnel(t *testing.T) {
	testkit.Long(t) // about 25 s
	sim := testbed.StartSim(t, vcsim.Config{DiskData: diskData})
	o := startOMAProcess(t)
	through, sshKey, _ := behindSSHDFor(t, o.natsURL, o.first, o.last, filepath.Join(o.dataDir, "tunnels"))
	var cred struct {
		NKeySeed string `json:"nkey_seed"`
	}
	if code := o.do(http.MethodPost, "/api/v1/vmas", map[string]any{"id": "vma-1", "api_port": tunneltest.FreePort(t),
		"ssh_public_key": sshKey}, &cred); code != http.StatusCreated {
		t.Fatalf("register vma-1 = %d", code)
	}
	logs := &testkit.Buffer{}
	cfg := appliance.Config{DataDir: filepath.Join(t.TempDir(), "vma"), ID: "vma-1", APIAddr: "127.0.0.1:0", NATSURL: o.natsURL,
		NATSSeed: []byte(cred.NKeySeed), OMAURL: o.URL, VCenterCAFile: sim.CAFile, VCenterTimeout: 5 * time.Second,
		DiscoverTimeout: 20 * time.Second, Source: "datastore", ProgressInterval: 50 * time.Millisecond, CheckpointInterval: 200 * time.Millisecond,
		ExportRetry: time.Minute, // also how long a failed job's end is retried while the OMA is away
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	slowly(1 << 20)(&cfg)
	through(&cfg)
	testbed.RunVMA(t, cfg, nil)
	testbed.WaitForVMAKey(t, o.URL, o.token, "vma-1", "")

	vms := testbed.Discover(t, o.URL, o.token, map[string]any{"vcenter": sim.Host, "username": sim.Username,
		"password": sim.Password, "datacenter": vcsim.Datacenter})
	var vmID string
	for _, vm := range vms {
		if vm.Name == threeDisks {
			vmID = vm.ID
		}
	}
	var j job
	if code := o.do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": vmID},
		"replication_type": "initial"}, &j); code != http.StatusCreated {
		t.Fatalf("create a job = %d", code)
	}
	if code := o.do(http.MethodPost, "/api/v1/replications/"+j.JobID+"/start", map[string]any{"vcenter": sim.Host,
		"username": sim.Username, "password": sim.Password}, nil); code != http.StatusAccepted {
		t.Fatalf("start = %d", code)
	}
	get := func() job {
		var got job
		if code := o.do(http.MethodGet, "/api/v1/replications/"+j.JobID, nil, &got); code != http.StatusOK {
			t.Fatalf("GET job = %d", code)
		}
		return got
	}
	testkit.Eventually(t, "the job copying", func() bool {
		got := get()
		return got.State == events.JobCopying && got.BytesDone > 0
	})
	time.Sleep(time.Second)

	o.Kill()
	refused := regexp.MustCompile(`the export went away[^\n]*Connection refused`)
	testkit.Eventually(t, "the VMA refused an export by the OMA's sshd, and trying again", func() bool {
		return refused.MatchString(logs.String())
	})
	o.Start()

	deadline := time.Now().Add(2 * time.Minute)
	var got job
	for {
		got = get()
		if got.State == events.JobCompleted || got.State == events.JobFailed || got.State == events.JobCancelled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s 2 minutes after the OMA came back\nVMA:\n%s\nOMA:\n%s", got.State, logs, o.Logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got.State != events.JobCompleted {
		t.Fatalf("job = %s (%s), want completed\nVMA:\n%s", got.State, got.LastError, logs)
	}
	b := &bed{sim: sim}
	b.assertCopied(t, threeDisksPath, got)
	b.assertNoSnapshot(t, threeDisksPath)
}
