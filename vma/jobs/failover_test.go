package jobs_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	omaappliance "github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/vcsim"
)

// movedJob is the OMA's view of a job with its move fields.
type movedJob struct {
	job
	VMAID   string `json:"vma_id"`
	Attempt int    `json:"attempt"`
	Moves   []struct {
		From    string `json:"from_vma"`
		To      string `json:"to_vma"`
		Running bool   `json:"running"`
		Reason  string `json:"reason"`
	} `json:"moves"`
}

// progressOf returns job id's progress events, oldest first.
func progressOf(t *testing.T, o *testbed.OMA, id string) []events.Progress {
	t.Helper()
	var out []events.Progress
	for _, ev := range o.StreamEvents(t, bus.StreamProgress, subject.AllProgress) {
		var p events.Progress
		if ev.Type == events.TypeProgress && json.Unmarshal(ev.Data, &p) == nil && p.JobID == id {
			out = append(out, p)
		}
	}
	return out
}

// TestVMAFailover: two VMAs that both found the VMs; vma-1 runs a copy
// and holds a second job waiting in the OMA's queue, then dies mid-copy.
// After -vma-heartbeat-timeout the waiting job goes to vma-2; after the
// takeover grace the running one does too, and vma-2 goes on from the
// checkpoints the OMA recorded, in the same snapshot: the job completes
// byte-exact, vma-2 copying no more than what vma-1 had left plus one
// checkpoint interval. vma-1's exports are revoked (nbdkit no longer
// serves them); back, its requests about the job are refused as moved, it
// lets the job go without touching the snapshot, and it gets new work.
func TestVMAFailover(t *testing.T) {
	testkit.Long(t)
	const (
		rate       = 1 << 20 // vma-1's bandwidth: 9 MiB take about 9 s
		checkpoint = 200 * time.Millisecond
		request    = 64 << 10
	)
	b, v2 := twoVMAs(t, rate, checkpoint, request, 200*time.Millisecond, 5*time.Second)
	create := func(name, vma string) movedJob { t.Helper(); return createOn(t, b, name, vma) }
	get := func(id string) movedJob { t.Helper(); return getAs[movedJob](t, b, id) }
	running := create(threeDisks, "vma-1")
	testkit.Eventually(t, "the copy under way, with durable checkpoints", func() bool {
		j := get(running.JobID)
		return j.State == events.JobCopying && j.BytesTotal > 0 && j.BytesDone > 2*j.BytesTotal/5
	})
	waiting := create("gen-vm-001", "vma-1") // vma-1 takes one job at a time

	// vma-1's own view of the running job's exports, as it asked for them.
	asV1 := bustest.ConnectVMA(t, b.o.NATSURL, "vma-1", b.v.Seed)
	exportReq, err := subject.ExportRequest("vma-1", running.JobID)
	if err != nil {
		t.Fatal(err)
	}
	var old events.ExportAllocation
	if err := asV1.Request(testkit.Context(t), exportReq, struct{}{}, &old); err != nil {
		t.Fatalf("vma-1's export request: %v", err)
	}

	killed := time.Now()
	b.v.Stop() // dies mid-copy: its snapshot stays, its record says running

	testkit.Eventually(t, "the waiting job moved to vma-2 and completed", func() bool {
		j := get(waiting.JobID)
		return j.VMAID == "vma-2" && j.State == events.JobCompleted
	})
	done := b.wait(t, running.JobID)
	if done.State != events.JobCompleted {
		t.Fatalf("the job taken over = %s (%s)", done.State, done.LastError)
	}
	b.assertCopied(t, threeDisksPath, done)
	b.assertCopied(t, "/"+vcsim.Datacenter+"/vm/gen-vm-001", b.get(t, waiting.JobID))

	moved := get(running.JobID)
	if moved.VMAID != "vma-2" || moved.Attempt != 2 || len(moved.Moves) != 1 || !moved.Moves[0].Running ||
		moved.Moves[0].From != "vma-1" || !strings.Contains(moved.Moves[0].Reason, "vma-1: no heartbeat for") {
		t.Errorf("the job taken over: vma %s, attempt %d, moves %+v", moved.VMAID, moved.Attempt, moved.Moves)
	}
	if w := get(waiting.JobID); len(w.Moves) != 1 || w.Moves[0].Running {
		t.Errorf("the waiting job's moves: %+v, want one, not running", w.Moves)
	}

	// The moves are events, and the takeover came after the grace.
	var takeover *events.QueueMoved
	for _, ev := range b.o.StreamEvents(t, bus.StreamJobs, subject.AllJobs) {
		if ev.Type != events.TypeQueueMoved {
			continue
		}
		var m events.QueueMoved
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			t.Fatal(err)
		}
		if m.JobID == running.JobID {
			takeover = &m
		}
	}
	if takeover == nil || takeover.FromVMA != "vma-1" || takeover.VMAID != "vma-2" || takeover.Snapshot == "" || len(takeover.Disks) != 3 {
		t.Fatalf("the takeover event: %+v", takeover)
	}
	// Its last heartbeat came at most one beat (200 ms) before the kill.
	if after := takeover.MovedAt.Sub(killed); after < 7*time.Second-300*time.Millisecond {
		t.Errorf("taken over %s after vma-1 died: before the heartbeat timeout and grace (7s after its last beat)", after)
	}

	// vma-2 went on from the checkpoints vma-1 last reported, as the OMA
	// recorded them (none lost on the way), in the same snapshot; so it
	// copied no more than what vma-1 had left when it died plus one
	// checkpoint interval: the bytes vma-1 copied between two durable
	// checkpoints, as its progress shows (with a request per disk of
	// granularity; twice that, for a late checkpoint on a busy machine).
	var v1Done, v2First, v2Last, total, interval int64 = 0, -1, 0, 0, 0
	var v1Last events.Progress
	var lastAdvance int64 // vma-1's bytes done when its checkpoints last moved
	sum := func(p events.Progress) (n int64) {
		for _, d := range p.Disks {
			n += d.Checkpoint
		}
		return n
	}
	for _, p := range progressOf(t, b.o, running.JobID) {
		switch {
		case p.VMAID == "vma-1":
			if sum(p) > sum(v1Last) {
				if lastAdvance > 0 {
					interval = max(interval, p.BytesDone-lastAdvance)
				}
				lastAdvance = p.BytesDone
			}
			if p.Seq > v1Last.Seq {
				v1Last = p
			}
			v1Done = max(v1Done, p.BytesDone)
		case p.VMAID == "vma-2" && p.BytesTotal > 0:
			if v2First < 0 && p.Phase == events.PhaseCopying {
				v2First = p.BytesDone
				if p.Snapshot != takeover.Snapshot {
					t.Errorf("vma-2 copied from snapshot %s, not the job's %s", p.Snapshot, takeover.Snapshot)
				}
			}
			v2Last, total = max(v2Last, p.BytesDone), p.BytesTotal
		}
	}
	if v2First < 0 {
		t.Fatal("no copying progress from vma-2")
	}
	resumed := map[int32]int64{}
	for _, m := range regexp.MustCompile(`msg="resuming disk" [^\n]*?job=`+regexp.QuoteMeta(running.JobID)+` disk=(\d+) from=(\d+)`).FindAllStringSubmatch(v2.Logs.String(), -1) {
		key, _ := strconv.ParseInt(m[1], 10, 32)
		resumed[int32(key)], _ = strconv.ParseInt(m[2], 10, 64)
	}
	for _, d := range takeover.Disks {
		var reported int64
		for _, ld := range v1Last.Disks {
			if ld.Key == d.Key {
				reported = ld.Checkpoint
			}
		}
		if d.Checkpoint != reported || resumed[d.Key] != d.Checkpoint {
			t.Errorf("disk %d: vma-1 last reported checkpoint %d, the OMA handed over %d, vma-2 resumed from %d", d.Key, reported, d.Checkpoint, resumed[d.Key])
		}
	}
	copied := v2Last - v2First
	allowance := 2 * (max(interval, int64(rate*checkpoint.Seconds())) + 3*request)
	t.Logf("taken over %s after vma-1 died; vma-1 had copied %d of %d bytes (checkpoints every %d bytes at most), vma-2 went on from %d and copied %d (bound: %d left + %d)",
		takeover.MovedAt.Sub(killed).Round(10*time.Millisecond), v1Done, total, interval, v2First, copied, total-v1Done, allowance)
	if left := total - v1Done; copied > left+allowance || v2Last != total {
		t.Errorf("vma-2 copied %d bytes (to %d of %d); vma-1 had %d left: more than that plus %d", copied, v2Last, total, left, allowance)
	}
	if v2First == 0 {
		t.Error("vma-2 copied the job from zero, not from its checkpoints")
	}

	// vma-1's exports are revoked: nbdkit no longer serves its names.
	for _, d := range old.Disks {
		uri := fmt.Sprintf("nbd://%s:%d/%s", d.Export.Host, d.Export.Port, d.Export.Name)
		if c, err := nbd.Dial(testkit.Context(t), uri, nbd.Config{}); err == nil {
			c.Close()
			t.Errorf("disk %d: vma-1's old export is still served", d.Key)
		}
	}
	// Its requests about the job are refused as moved.
	var again events.ExportAllocation
	var re *bus.RemoteError
	if err := asV1.Request(testkit.Context(t), exportReq, struct{}{}, &again); !errors.As(err, &re) || re.Code != bus.CodeMoved {
		t.Errorf("vma-1's export request after the takeover: %v, want refused as moved", err)
	}

	// vma-1 comes back: it resumes the job it held, is refused, lets it go
	// (reporting nothing, leaving the snapshot), and gets new work.
	b.v.Start()
	b.vmaURL = b.v.URL
	testkit.Eventually(t, "vma-1 letting the job go", func() bool {
		var st struct {
			State string `json:"state"`
			Error string `json:"error"`
		}
		b.vmaDo(t, http.MethodGet, "/api/v1/status/"+running.JobID, nil, &st)
		return st.State == "cancelled" && strings.Contains(st.Error, "moved to another VMA")
	})
	if j := get(running.JobID); j.State != events.JobCompleted || j.VMAID != "vma-2" {
		t.Errorf("after vma-1 came back the job is %s on %s", j.State, j.VMAID)
	}
	b.assertNoSnapshot(t, threeDisksPath)
	next := create("gen-vm-002", "vma-1")
	if j := b.wait(t, next.JobID); j.State != events.JobCompleted {
		t.Errorf("new work for vma-1 = %s (%s)", j.State, j.LastError)
	}
}

// twoVMAs starts a bed whose vma-1 copies at rate (one job at a time) and
// a second VMA, vma-2, that found the same VMs; heartbeats every beat, a
// VMA gone after timeout without one, its running jobs taken over 2 s later.
func twoVMAs(t *testing.T, rate int64, checkpoint time.Duration, request int, beat, timeout time.Duration) (*bed, *testbed.VMA) {
	t.Helper()
	beats := func(c *appliance.Config) {
		c.Heartbeat = beat
		c.CheckpointInterval = checkpoint
		c.Copy.RequestSize = request
	}
	b := newBed(t, bedConfig{
		ports: 8,
		oma: func(c *omaappliance.Config) {
			c.HeartbeatTimeout = timeout // many beats: a busy machine does not miss so many
			c.TakeoverGrace = 2 * time.Second
		},
		vma: func(c *appliance.Config) {
			beats(c)
			c.MaxJobs = 1
			c.Copy.Limiter = copier.NewLimiter(rate, nil)
		},
	})
	v2 := testbed.StartVMA(t, b.o, testbed.VMAConfig{ID: "vma-2", VCenterCAFile: b.sim.CAFile, Configure: func(c *appliance.Config) {
		c.Source = "datastore"
		c.ProgressInterval = 50 * time.Millisecond
		beats(c)
	}})
	var found struct {
		VMs []events.VM `json:"vms"`
	}
	if code := b.o.Do(http.MethodPost, "/api/v1/discover", map[string]any{"vcenter": b.vc, "username": b.sim.Username,
		"password": b.sim.Password, "datacenter": vcsim.Datacenter, "vma_id": "vma-2"}, &found); code != http.StatusOK || len(found.VMs) != len(b.vms) {
		t.Fatalf("discover through vma-2 = %d, %d VMs", code, len(found.VMs))
	}
	testkit.Eventually(t, "vma-2's VMs in the OMA's inventory", func() bool {
		var inv struct {
			VMs []struct {
				VMAID string `json:"vma_id"`
			} `json:"vms"`
		}
		b.o.Do(http.MethodGet, "/api/v1/vms", nil, &inv)
		n := 0
		for _, vm := range inv.VMs {
			if vm.VMAID == "vma-2" {
				n++
			}
		}
		return n == len(b.vms)
	})
	return b, v2
}

// createOn creates and starts an initial job of the VM called name on vma.
func createOn(t *testing.T, b *bed, name, vma string) movedJob {
	t.Helper()
	var j struct {
		movedJob
		Detail string `json:"detail"`
	}
	if code := b.o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": b.vms[name].ID},
		"replication_type": "initial", "vma_id": vma}, &j); code != http.StatusCreated {
		t.Fatalf("create a job of %s on %s = %d: %s", name, vma, code, j.Detail)
	}
	b.startFromOMA(t, j.JobID)
	return j.movedJob
}

// TestNoMovesAfterOMARestart: an OMA that was down longer than the
// heartbeat timeout and grace moves nothing when it starts: the heartbeats
// its VMAs sent meanwhile (every 2 s here) arrive as they reconnect, and
// a VMA's silence counts from the OMA's start at the earliest. vma-1's
// running and waiting jobs stay on it and complete.
func TestNoMovesAfterOMARestart(t *testing.T) {
	testkit.Long(t)
	// A heartbeat timeout of 5 beats: with 2.5 beats (5 s), vma-1 took
	// longer to reconnect and beat to the restarted OMA on a loaded CI
	// machine, and one of its jobs moved after the first check, as the
	// OMA should move it then.
	b, _ := twoVMAs(t, 1<<20, 200*time.Millisecond, 64<<10, 2*time.Second, 10*time.Second)
	running := createOn(t, b, threeDisks, "vma-1")
	testkit.Eventually(t, "the copy under way", func() bool { return getAs[movedJob](t, b, running.JobID).State == events.JobCopying })
	waiting := createOn(t, b, "gen-vm-001", "vma-1")
	testkit.Eventually(t, "the second job waiting for vma-1", func() bool {
		j := getAs[struct {
			Queue *struct {
				WaitingFor string `json:"waiting_for"`
			} `json:"queue"`
		}](t, b, waiting.JobID)
		return j.Queue != nil && j.Queue.WaitingFor == "vma vma-1: 1 of 1 running"
	})
	b.o.Stop()
	time.Sleep(13 * time.Second) // past the timeout and the grace
	b.o.Start()
	time.Sleep(3 * time.Second) // three failover checks
	for _, id := range []string{running.JobID, waiting.JobID} {
		if j := getAs[movedJob](t, b, id); j.VMAID != "vma-1" || len(j.Moves) != 0 {
			t.Errorf("job %s after the OMA's restart: on %s, moves %+v; want it left on vma-1", id, j.VMAID, j.Moves)
		}
	}
	for _, id := range []string{running.JobID, waiting.JobID} {
		if j := b.wait(t, id); j.State != events.JobCompleted {
			t.Errorf("job %s = %s (%s)", id, j.State, j.LastError)
		}
		if j := getAs[movedJob](t, b, id); j.Attempt != 1 || j.VMAID != "vma-1" {
			t.Errorf("job %s completed on %s, attempt %d", id, j.VMAID, j.Attempt)
		}
	}
}
