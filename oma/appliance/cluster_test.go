package appliance_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	vmaappliance "github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/vcsim"
)

// startKeyedCluster makes a cluster's keys and starts three nodes with
// them that follow the access the OMA shares.
func startKeyedCluster(t testing.TB) (*bustest.Cluster, appliance.ClusterKeys) {
	t.Helper()
	keys, err := appliance.CreateClusterKeys(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(keys.Internal())
	if err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(keys.RouteSecret())
	if err != nil {
		t.Fatal(err)
	}
	c := bustest.StartCluster(t, bustest.ClusterConfig{Seed: []byte(strings.TrimSpace(string(seed))),
		Secret: strings.TrimSpace(string(secret)), Follow: true})
	return c, keys
}

// TestCopySurvivesTheLossOfANode: an OMA and a VMA on a cluster of three
// NATS nodes (every stream on three replicas), a job copying three disks;
// mid-copy one node is shut down, a different one in each run (in the
// first, PROGRESS's leader). The job completes byte-exact, every progress
// and status event of the job is stored once, with no seq missing, and
// the OMA applied each once.
func TestCopySurvivesTheLossOfANode(t *testing.T) {
	testkit.Long(t)
	for victim := range 3 {
		t.Run(fmt.Sprintf("node-%d", victim+1), func(t *testing.T) { copyThroughANodeLoss(t, victim) })
	}
}

func copyThroughANodeLoss(t *testing.T, victim int) {
	c, keys := startKeyedCluster(t)
	sim := testbed.StartSim(t, vcsim.Config{DiskData: 3 << 20})
	o := testbed.StartOMA(t, testbed.OMAConfig{Ports: 4, Configure: func(cfg *appliance.Config) {
		cfg.NATSURL, cfg.KeysDir, cfg.StreamReplicas = c.URLs(), keys.Dir, 3
	}})
	v := testbed.StartVMA(t, o, testbed.VMAConfig{VCenterCAFile: sim.CAFile, Configure: func(cfg *vmaappliance.Config) {
		cfg.Source = "datastore"
		cfg.ProgressInterval = 50 * time.Millisecond
		cfg.CheckpointInterval = 200 * time.Millisecond
		cfg.Copy.Limiter = copier.NewLimiter(2<<20, nil) // 9 MiB in about 4.5 s
	}})
	const name = "gen-vm-003"
	path := "/" + vcsim.Datacenter + "/vm/" + name
	var vmID string
	for _, vm := range o.Discover(map[string]any{"vcenter": sim.Host, "username": sim.Username, "password": sim.Password, "datacenter": vcsim.Datacenter}) {
		if vm.Name == name {
			vmID = vm.ID
		}
	}
	if vmID == "" {
		t.Fatalf("no %s in the inventory", name)
	}
	ctx := testkit.Context(t)
	if victim == 0 { // the first run takes PROGRESS's leader down
		moveLeader(t, o.Admin, bus.StreamProgress, c.Servers[victim].Name())
	}

	var j replicaJob
	if code := o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": vmID},
		"replication_type": "initial"}, &j); code != http.StatusCreated {
		t.Fatalf("create a job = %d", code)
	}
	if code := o.Do(http.MethodPost, "/api/v1/replications/"+j.JobID+"/start", map[string]any{"vcenter": sim.Host,
		"username": sim.Username, "password": sim.Password}, nil); code != http.StatusAccepted {
		t.Fatalf("start %s = %d", j.JobID, code)
	}
	testkit.Eventually(t, "the copy under way", func() bool {
		o.Do(http.MethodGet, "/api/v1/replications/"+j.JobID, nil, &j)
		return j.BytesTotal > 0 && j.BytesDone > 2<<20
	})
	roles := rolesOf(t, o.Admin, c, victim, v)
	c.Kill(victim)
	t.Logf("shut down %s (%s) at %d of %d bytes", c.Servers[victim].Name(), roles, j.BytesDone, j.BytesTotal)

	testkit.Eventually(t, "the job completed", func() bool {
		o.Do(http.MethodGet, "/api/v1/replications/"+j.JobID, nil, &j)
		return j.State == events.JobCompleted || j.State == events.JobFailed || j.State == events.JobCancelled
	})
	if j.State != events.JobCompleted {
		t.Fatalf("the job ended %s: %s\nVMA:\n%s", j.State, j.LastError, v.Logs)
	}
	for _, d := range j.Disks {
		src, err := sim.DiskFile(ctx, path, d.Key)
		if err != nil {
			t.Fatal(err)
		}
		if err := testkit.SameDisk(src, d.VolumePath); err != nil {
			t.Errorf("disk %d: %v", d.Key, err)
		}
	}

	// Every event of the job stored once, none missing; each applied once.
	seqs := map[uint64]int{}
	var maxSeq uint64
	stored := map[string]int{}
	var prev time.Time
	var stall time.Duration // the longest time between two stored progress events of the job
	for _, ev := range o.StreamEvents(t, bus.StreamProgress, "godwit.>") {
		var d struct {
			JobID string `json:"job_id"`
			Seq   uint64 `json:"seq"`
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.JobID != j.JobID {
			continue
		}
		seqs[d.Seq]++
		maxSeq = max(maxSeq, d.Seq)
		if ev.Type == events.TypeProgress {
			if !prev.IsZero() {
				stall = max(stall, ev.Stored.Sub(prev))
			}
			prev = ev.Stored
		}
		stored[ev.Type]++
	}
	for s := uint64(1); s <= maxSeq; s++ {
		if seqs[s] != 1 {
			t.Errorf("the job's event seq %d is stored %d times, want once", s, seqs[s])
		}
	}
	// An event delivered to the OMA through the node that went down may
	// be lost on the way and come again after the consumer's ack wait
	// (30 s), after the job completed: each is applied once, late or not.
	completed := time.Now()
	testkit.Eventually(t, "every stored event applied", func() bool {
		metrics := scrape(t, o)
		for _, typ := range []string{events.TypeProgress, events.TypeReplicationStatus} {
			applied := metrics[`godwit_events_applied_total{type="`+typ+`"}`]
			if applied > float64(stored[typ]) {
				t.Fatalf("the OMA applied %v %s events, and PROGRESS holds %d: some twice", applied, typ, stored[typ])
			}
			if applied != float64(stored[typ]) {
				return false
			}
		}
		return true
	})
	if late := time.Since(completed); late > time.Second {
		t.Logf("the last event was applied %s after the job completed (redelivered)", late.Round(time.Millisecond))
	}
	t.Logf("%d progress and %d status events, seqs 1 to %d; the longest time between two progress events stored: %s",
		stored[events.TypeProgress], stored[events.TypeReplicationStatus], maxSeq, stall.Round(time.Millisecond))
}

// replicaJob is the OMA's view of a job.
type replicaJob struct {
	JobID      string `json:"job_id"`
	State      string `json:"state"`
	LastError  string `json:"last_error"`
	BytesTotal int64  `json:"bytes_total"`
	BytesDone  int64  `json:"bytes_done"`
	Disks      []struct {
		Key        int32  `json:"key"`
		VolumePath string `json:"volume_path"`
	} `json:"disks"`
}

// moveLeader asks the leader of stream to step down until node leads it.
func moveLeader(t *testing.T, admin *bus.Conn, stream, node string) {
	t.Helper()
	testkit.Eventually(t, node+" leading "+stream, func() bool {
		s, err := admin.JetStream().Stream(testkit.Context(t), stream)
		if err != nil {
			return false
		}
		if s.CachedInfo().Cluster != nil && s.CachedInfo().Cluster.Leader == node {
			return true
		}
		req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, node)
		_, _ = admin.NATS().Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(req), 5*time.Second)
		time.Sleep(200 * time.Millisecond)
		return false
	})
}

// rolesOf says what node victim of c is to the test: the streams it
// leads, and whose connection it holds.
func rolesOf(t *testing.T, admin *bus.Conn, c *bustest.Cluster, victim int, v *testbed.VMA) string {
	t.Helper()
	name := c.Servers[victim].Name()
	var roles []string
	for _, stream := range []string{bus.StreamProgress, bus.StreamJobs, bus.StreamCommands} {
		s, err := admin.JetStream().Stream(testkit.Context(t), stream)
		if err == nil && s.CachedInfo().Cluster != nil && s.CachedInfo().Cluster.Leader == name {
			roles = append(roles, stream+" leader")
		}
	}
	for _, client := range c.Servers[victim].ClientNames() {
		role := client + "'s node"
		if (client == v.ID || client == "oma") && !slices.Contains(roles, role) {
			roles = append(roles, role)
		}
	}
	if len(roles) == 0 {
		return "a follower"
	}
	return strings.Join(roles, ", ")
}

// scrape reads the OMA's metrics through its API.
func scrape(t testing.TB, o *testbed.OMA) map[string]float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(testkit.Context(t), http.MethodGet, o.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+o.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if f, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = f
		}
	}
	return out
}
