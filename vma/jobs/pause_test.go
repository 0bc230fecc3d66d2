package jobs_test

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	omaappliance "github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/copier"
)

// pausedJob is the OMA's view of a job with its pause fields.
type pausedJob struct {
	State            string     `json:"state"`
	LastError        string     `json:"last_error"`
	BytesDone        int64      `json:"bytes_done"`
	PauseRequestedAt *time.Time `json:"pause_requested_at"`
	PausedAt         *time.Time `json:"paused_at"`
	Queue            *struct {
		WaitingFor string `json:"waiting_for"`
	} `json:"queue"`
	Disks []struct {
		Key        int32 `json:"key"`
		Checkpoint int64 `json:"checkpoint"`
	} `json:"disks"`
}

// TestPauseAndResume: a job paused mid-copy stops at a checkpoint (no
// byte copied while paused), keeps its snapshot, and, resumed, goes on
// from its checkpoints to a byte-exact copy; a job waiting in the OMA's
// queue pauses at once, holding no slot; a job paused longer than
// -pause-snapshot-max ends paused-expired and its snapshot is removed;
// what cannot be paused or resumed is refused.
func TestPauseAndResume(t *testing.T) {
	testkit.Long(t)
	b := newBed(t, bedConfig{
		oma: func(c *omaappliance.Config) { c.PauseSnapshotMax = 4 * time.Second },
		vma: func(c *appliance.Config) {
			c.MaxJobs = 1
			c.CheckpointInterval = 200 * time.Millisecond
			c.Copy.Limiter = copier.NewLimiter(1<<20, nil) // 9 MiB of data: about 9 s
			c.Copy.RequestSize = 64 << 10                  // checkpoints move in small steps
		},
	})
	get := func(id string) pausedJob { t.Helper(); return getAs[pausedJob](t, b, id) }
	do := func(id, action string, want int) pausedJob {
		t.Helper()
		var j pausedJob
		if code := b.o.Do(http.MethodPost, "/api/v1/replications/"+id+"/"+action, nil, &j); code != want {
			t.Fatalf("%s %s = %d, want %d", action, id, code, want)
		}
		return j
	}
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	// Under way, with a durable checkpoint the VMA reported to the OMA:
	// the pause must keep it.
	testkit.Eventually(t, "a durable checkpoint on the OMA", func() bool {
		g := get(j.JobID)
		for _, d := range g.Disks {
			if d.Checkpoint > 0 {
				return g.State == events.JobCopying
			}
		}
		return false
	})

	// A second job waits in the OMA's queue: the VMA takes one at a time.
	other := b.create(t, "gen-vm-001")
	b.startFromOMA(t, other.JobID)
	testkit.Eventually(t, "the second job waiting for the VMA", func() bool {
		g := get(other.JobID)
		return g.Queue != nil && g.Queue.WaitingFor == "vma vma-1: 1 of 1 running"
	})
	if p := do(other.JobID, "pause", http.StatusAccepted); p.State != events.JobPaused || p.PausedAt == nil {
		t.Errorf("pause a waiting job: %+v, want paused at once", p)
	}

	// Paused mid-copy: the VMA stops at a checkpoint and says so.
	if p := do(j.JobID, "pause", http.StatusAccepted); p.PauseRequestedAt == nil {
		t.Errorf("pause a running job: %+v, want pause_requested_at", p)
	}
	testkit.Eventually(t, "the job paused", func() bool { return get(j.JobID).State == events.JobPaused })
	pausedAt := get(j.JobID)
	at := pausedAt.BytesDone
	time.Sleep(1500 * time.Millisecond)
	if p := get(j.JobID); p.BytesDone != at || p.State != events.JobPaused {
		t.Errorf("while paused: %d bytes done, then %d (%s)", at, p.BytesDone, p.State)
	}
	s := b.login(t)
	vm, err := s.FindVM(t.Context(), threeDisksPath)
	if err != nil {
		t.Fatal(err)
	}
	if snaps, err := s.Snapshots(t.Context(), vm, ""); err != nil || len(snaps) != 1 {
		t.Errorf("a paused job's VM has snapshots %+v (%v), want its one", snaps, err)
	}
	s.Close()
	do(j.JobID, "pause", http.StatusAccepted) // again: a no-op
	do(other.JobID, "resume", http.StatusAccepted)
	do(j.JobID, "resume", http.StatusAccepted)
	do(j.JobID, "resume", http.StatusConflict) // not paused any more

	done := b.wait(t, j.JobID)
	if done.State != events.JobCompleted {
		t.Fatalf("the resumed job = %s (%s)", done.State, done.LastError)
	}
	b.assertCopied(t, threeDisksPath, done)
	b.assertNoSnapshot(t, threeDisksPath)
	// Each disk resumed from its checkpoint, at or past the one the OMA
	// was told (a progress event may not carry the last one).
	var resumed int64
	from := map[int32]int64{}
	for _, m := range regexp.MustCompile(`msg="resuming disk" [^\n]*?job=`+regexp.QuoteMeta(j.JobID)+` disk=(\d+) from=(\d+)`).FindAllStringSubmatch(b.v.Logs.String(), -1) {
		key, _ := strconv.ParseInt(m[1], 10, 32)
		n, _ := strconv.ParseInt(m[2], 10, 64)
		from[int32(key)] = n
		resumed += n
	}
	for _, d := range pausedAt.Disks {
		if d.Checkpoint > from[d.Key] {
			t.Errorf("disk %d: the OMA recorded checkpoint %d, past the %d the VMA resumed from", d.Key, d.Checkpoint, from[d.Key])
		}
	}
	if resumed == 0 {
		var lines []string
		for _, l := range strings.Split(b.v.Logs.String(), "\n") {
			if strings.Contains(l, j.JobID) {
				lines = append(lines, l)
			}
		}
		t.Errorf("the resumed job started its disks from zero, not from their checkpoints; the VMA said:\n%s", strings.Join(lines, "\n"))
	}
	if o := b.wait(t, other.JobID); o.State != events.JobCompleted {
		t.Errorf("the job resumed from the queue = %s (%s)", o.State, o.LastError)
	}

	// Paused too long: paused-expired, its snapshot removed.
	j3 := b.create(t, threeDisks)
	b.startFromOMA(t, j3.JobID)
	testkit.Eventually(t, "the third copy under way", func() bool { return get(j3.JobID).State == events.JobCopying })
	do(j3.JobID, "pause", http.StatusAccepted)
	testkit.Eventually(t, "the third job paused, then expired", func() bool { return get(j3.JobID).State == events.JobPausedExpired })
	if e := get(j3.JobID); !strings.Contains(e.LastError, "pause-snapshot-max") {
		t.Errorf("an expired pause says %q", e.LastError)
	}
	testkit.Eventually(t, "the expired job's snapshot removed", func() bool {
		s := b.login(t)
		defer s.Close()
		vm, err := s.FindVM(t.Context(), threeDisksPath)
		if err != nil {
			return false
		}
		snaps, err := s.Snapshots(t.Context(), vm, "")
		return err == nil && len(snaps) == 0
	})

	// Refusals.
	do(j.JobID, "pause", http.StatusConflict)   // completed
	do(j3.JobID, "resume", http.StatusConflict) // expired
	do("repl-nope-1", "pause", http.StatusNotFound)
}
