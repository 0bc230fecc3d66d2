package jobs_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	omaappliance "github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/store"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestQueue: with -max-jobs 4, four jobs started through the VMA's API run
// at once and a fifth waits in the OMA's queue, which knows the VMA's
// capacity from its heartbeat (the VMA holds only what the OMA sent it),
// then runs; all five complete.
func TestQueue(t *testing.T) {
	// The jobs crawl until the fifth waits, so that none ends while the
	// test starts the others, however slowly a loaded machine lets it
	// (at 2 KiB/s, shared, the jobs copy 360 KiB in the 3 minutes a
	// loaded CI machine took to start the five, against 3 MiB a disk; at
	// 16 KiB/s the first one ended); then they run at full speed.
	crawl := copier.NewLimiter(2<<10, nil)
	b := newBed(t, bedConfig{ports: 5, vma: func(c *appliance.Config) {
		c.Copy.Limiter = crawl
		c.MaxJobs = 4
	}})
	names := []string{"gen-vm-001", "gen-vm-003", "gen-vm-005", "gen-vm-007", "gen-vm-009"}
	var ids []string
	for _, n := range names {
		ids = append(ids, b.create(t, n).JobID)
	}
	for i, id := range ids {
		b.startFromVMA(t, id, "/"+vcsim.Datacenter+"/vm/"+names[i])
		if i < 4 {
			testkit.Eventually(t, id+" running", func() bool { return b.vmaStatus(t, id).State == store.StateRunning })
		}
	}
	fifth := ids[4]
	testkit.Eventually(t, "the fifth job waiting in the OMA's queue for the VMA", func() bool {
		var j struct {
			State string `json:"state"`
			Queue *struct {
				WaitingFor string `json:"waiting_for"`
			} `json:"queue"`
		}
		if code := b.o.Do(http.MethodGet, "/api/v1/replications/"+fifth, nil, &j); code != http.StatusOK {
			t.Fatalf("GET %s = %d", fifth, code)
		}
		if st := b.vmaStatus(t, fifth).State; st != store.StateAccepted {
			var others []string
			for _, id := range ids[:4] {
				s := b.vmaStatus(t, id)
				others = append(others, s.State+" "+s.Error)
			}
			t.Fatalf("the fifth job is %s on the VMA while four run (%q), want it to wait in the OMA's queue", st, others)
		}
		return j.State == events.JobQueued && j.Queue != nil && j.Queue.WaitingFor == "vma vma-1: 4 of 4 running"
	})
	running := 0
	for _, id := range ids[:4] {
		if b.vmaStatus(t, id).State == store.StateRunning {
			running++
		}
	}
	if running != 4 {
		t.Errorf("%d jobs ran at once while the fifth waited, want 4", running)
	}
	crawl.SetRate(0)
	for i, id := range ids {
		if got := b.wait(t, id); got.State != events.JobCompleted {
			t.Errorf("job %s of %s = %s (%s)", id, names[i], got.State, got.LastError)
		}
	}
}

// TestProgressEvents: a job's progress events reach the bus at most once
// per interval within a phase, in order, with every field, ending at 100%.
// Checking the copy is the verifying phase, its bytes going up to the
// total, shown live by the VMA and the OMA (the OMA hashes while the copy
// goes on, one block a request, rate limited to half the copy's rate, so
// what is left to check when the copy ends lasts a few intervals).
func TestProgressEvents(t *testing.T) {
	const interval = 200 * time.Millisecond
	b := newBed(t, bedConfig{vma: func(c *appliance.Config) {
		slowly(2 << 20)(c)
		c.Copy.HashBatch = 1
		c.ProgressInterval = interval
	}, oma: func(c *omaappliance.Config) { c.VerifyRate = 1 << 20 }})
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	b.waitCopying(t, j.JobID)
	var live struct {
		Percent    float64 `json:"percent"`
		ETASeconds *int64  `json:"eta_seconds"`
		Disks      []struct {
			Key int32 `json:"key"`
		} `json:"disks"`
		RateBytesPerSecond int64 `json:"rate_bytes_per_second"`
	}
	testkit.Eventually(t, "a live rate and ETA from the VMA", func() bool {
		b.vmaDo(t, http.MethodGet, "/api/v1/progress/"+j.JobID, nil, &live)
		return live.RateBytesPerSecond > 0 && live.ETASeconds != nil && len(live.Disks) == 3 && live.Percent < 100
	})
	var verifying struct {
		Phase                    string  `json:"phase"`
		Percent                  float64 `json:"percent"`
		BytesTotal               int64   `json:"bytes_total"`
		VerifyBytesTotal         int64   `json:"verify_bytes_total"`
		VerifyBytesDone          int64   `json:"verify_bytes_done"`
		VerifyRateBytesPerSecond int64   `json:"verify_rate_bytes_per_second"`
		ETASeconds               *int64  `json:"eta_seconds"`
	}
	testkit.Eventually(t, "the VMA verifying, with a rate and an ETA", func() bool {
		b.vmaDo(t, http.MethodGet, "/api/v1/progress/"+j.JobID, nil, &verifying)
		return verifying.Phase == events.PhaseVerifying && verifying.VerifyRateBytesPerSecond > 0 && verifying.ETASeconds != nil &&
			verifying.VerifyBytesDone < verifying.VerifyBytesTotal
	})
	if verifying.VerifyBytesTotal != verifying.BytesTotal || verifying.Percent != 100 {
		t.Errorf("VMA verifying %+v: want %d bytes to read back, copied 100%%", verifying, verifying.BytesTotal)
	}
	var oma struct {
		State                    string  `json:"state"`
		VerifyBytesTotal         int64   `json:"verify_bytes_total"`
		VerifyBytesDone          int64   `json:"verify_bytes_done"`
		VerifyPercent            float64 `json:"verify_percent"`
		VerifyRateBytesPerSecond int64   `json:"verify_rate_bytes_per_second"`
		ETASeconds               *int64  `json:"eta_seconds"`
	}
	testkit.Eventually(t, "the OMA's job verifying, with a rate and an ETA", func() bool {
		b.o.Do(http.MethodGet, "/api/v1/replications/"+j.JobID, nil, &oma)
		return oma.State == events.JobVerifying && oma.VerifyBytesTotal >= 3*diskData && oma.VerifyRateBytesPerSecond > 0 &&
			oma.ETASeconds != nil && oma.VerifyPercent < 100
	})
	if got := b.wait(t, j.JobID); got.State != events.JobCompleted {
		t.Fatalf("job = %s (%s)", got.State, got.LastError)
	}

	var ps []events.Progress
	evs := b.events(t, bus.StreamProgress, "godwit.progress.vma-1."+j.JobID)
	for _, ev := range evs {
		var p events.Progress
		if err := ev.Decode(&p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) < 4 {
		t.Fatalf("%d progress events, want several", len(ps))
	}
	phases := []string{events.PhaseSnapshotting, events.PhaseCopying, events.PhaseVerifying, events.PhaseFinalizing}
	rank := func(ph string) int { return strings.Index(strings.Join(phases, ","), ph) }
	for i, p := range ps {
		if i > 0 {
			prev := ps[i-1]
			if p.Seq <= prev.Seq || rank(p.Phase) < rank(prev.Phase) || p.BytesDone < prev.BytesDone || p.Percent < prev.Percent ||
				p.VerifyBytesDone < prev.VerifyBytesDone {
				t.Errorf("event %d (seq %d, %s, %d done, %.1f%%) after (seq %d, %s, %d done, %.1f%%)", i, p.Seq, p.Phase, p.BytesDone, p.Percent,
					prev.Seq, prev.Phase, prev.BytesDone, prev.Percent)
			}
			if p.Phase == prev.Phase && p.Phase == events.PhaseCopying && i < len(ps)-1 {
				if gap := evs[i].Time.Sub(evs[i-1].Time); gap < interval-20*time.Millisecond {
					t.Errorf("events %d and %d of the copying phase %s apart, want at most one per %s", i-1, i, gap, interval)
				}
			}
		}
		if p.Percent < 0 || p.Percent > 100 || len(p.Disks) > 3 {
			t.Errorf("event %d: %+v", i, p)
		}
	}
	last := ps[len(ps)-1]
	if last.Phase != events.PhaseFinalizing || last.Percent != 100 || last.BytesDone != last.BytesTotal || last.BytesTotal < 3*diskData {
		t.Errorf("last progress = %+v, want finalizing at 100%%", last)
	}
	// The verifying phase: after every byte is copied, its own bytes going
	// up, event by event, to all that was copied.
	var seen []int64
	for _, p := range ps {
		if p.Phase != events.PhaseVerifying {
			continue
		}
		if p.BytesDone != p.BytesTotal || p.VerifyBytesTotal != p.BytesTotal {
			t.Errorf("verifying event %+v: want every byte copied and all of them to read back", p)
		}
		seen = append(seen, p.VerifyBytesDone)
	}
	if len(seen) < 2 || seen[0] >= last.VerifyBytesTotal {
		t.Errorf("verifying events read back %v of %d bytes: want several, going up", seen, last.VerifyBytesTotal)
	}
	if last.VerifyBytesDone != last.VerifyBytesTotal || last.VerifyBytesTotal != last.BytesTotal {
		t.Errorf("last progress read back %d of %d bytes, want all %d", last.VerifyBytesDone, last.VerifyBytesTotal, last.BytesTotal)
	}
}

// TestRestartResumesAJob: a VMA that finds a job it was running when it
// died resumes it from the snapshot it took, completes it byte-exact and
// removes the snapshot; a job whose snapshot is gone starts again from zero
// in a new one, whatever its checkpoints said; a job it kept no
// credentials for fails, saying so.
func TestRestartResumesAJob(t *testing.T) {
	const gonePath = "/" + vcsim.Datacenter + "/vm/gen-vm-009"
	b := newBed(t, bedConfig{})
	j := b.create(t, threeDisks)
	orphan := b.create(t, "gen-vm-005")
	gone := b.create(t, "gen-vm-009")
	b.v.Stop()

	// What a VMA killed mid-job leaves: the job running, its snapshot taken.
	s := b.login(t)
	defer s.Close()
	ctx := context.Background()
	vm, err := s.FindVM(ctx, threeDisksPath)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.CreateSnapshot(ctx, vm, "godwit-"+j.JobID, "left by a crash")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := seal.Seal(b.v.PublicKey, []byte(b.sim.Password))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(b.v.Dir, "vma", "state.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range []struct {
		id   string
		seal *events.Sealed
		path string
	}{{j.JobID, &sealed, threeDisksPath}, {orphan.JobID, nil, threeDisksPath}, {gone.JobID, &sealed, gonePath}} {
		if _, err := st.Update(rec.id, true, func(sj *store.Job) error {
			sj.State, sj.Phase, sj.VCenter, sj.Username, sj.Password = store.StateRunning, events.PhaseCopying, b.vc, b.sim.Username, rec.seal
			sj.VMPaths, sj.Seq = []string{rec.path}, 5
			switch rec.id {
			case j.JobID:
				sj.VMRef, sj.Snapshot = vm.Ref.Value, snap.Ref.Value
			case gone.JobID: // checkpoints of a snapshot that is no more: they must not count
				sj.Snapshot = "snapshot-999999"
				for _, d := range gone.Disks {
					sj.Disks = append(sj.Disks, store.Disk{Key: d.Key, BytesTotal: diskData, Checkpoint: 1 << 40})
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	b.v.Start()
	if got := b.wait(t, j.JobID); got.State != events.JobCompleted {
		t.Fatalf("resumed job = %s (%s), want completed\n%s", got.State, got.LastError, b.v.Logs)
	}
	b.assertCopied(t, threeDisksPath, b.get(t, j.JobID))
	b.assertNoSnapshot(t, threeDisksPath)
	// The resumed job never reports itself copying without its figures.
	for _, ev := range b.events(t, bus.StreamProgress, "godwit.progress.vma-1."+j.JobID) {
		var p events.Progress
		if err := ev.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Phase == events.PhaseCopying && (p.BytesTotal == 0 || len(p.Disks) == 0) {
			t.Errorf("progress event seq %d: copying %d of %d bytes, %d disks", p.Seq, p.BytesDone, p.BytesTotal, len(p.Disks))
		}
	}
	if !strings.Contains(b.v.Logs.String(), "resuming a job the VMA did not finish") {
		t.Error("the VMA did not say it resumed the job")
	}
	if got := b.wait(t, gone.JobID); got.State != events.JobCompleted {
		t.Fatalf("job whose snapshot is gone = %s (%s), want completed", got.State, got.LastError)
	}
	b.assertCopied(t, gonePath, b.get(t, gone.JobID))
	b.assertNoSnapshot(t, gonePath)
	if !strings.Contains(b.v.Logs.String(), "snapshot is gone") {
		t.Error("the VMA did not say the job's snapshot was gone")
	}
	if vs := b.vmaStatus(t, orphan.JobID); vs.State != store.StateFailed || !strings.Contains(vs.Error, "no credentials") {
		t.Errorf("job without credentials = %+v, want failed", vs)
	}
	if sj, err := b.storedJob(t, j.JobID); err != nil || sj.Password != nil {
		t.Errorf("the stored job keeps its sealed password after it completed (%v)", err)
	}
}

// TestStopAndResume: a VMA stopped while a job copies records its
// checkpoints and keeps the snapshot; started again, it resumes each disk
// from its checkpoint and completes the job byte-exact.
func TestStopAndResume(t *testing.T) {
	b := newBed(t, bedConfig{vma: slowly(2 << 20)})
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	testkit.Eventually(t, "a checkpoint moved", func() bool {
		var p struct {
			Phase string `json:"phase"`
			Disks []struct {
				Checkpoint int64 `json:"checkpoint"`
			} `json:"disks"`
		}
		b.vmaDo(t, http.MethodGet, "/api/v1/progress/"+j.JobID, nil, &p)
		for _, d := range p.Disks {
			if p.Phase == events.PhaseCopying && d.Checkpoint > 0 {
				return true
			}
		}
		return false
	})
	b.v.Stop()
	sj, err := b.storedJob(t, j.JobID) // starts the VMA again, which resumes
	if err != nil {
		t.Fatal(err)
	}
	var saved int64
	for _, d := range sj.Disks {
		saved += d.Checkpoint
	}
	if sj.State != store.StateRunning || sj.Snapshot == "" || saved == 0 {
		t.Errorf("after the stop the job is %s, snapshot %q, checkpoints %+v: want running, its snapshot kept, progress saved", sj.State, sj.Snapshot, sj.Disks)
	}
	got := b.wait(t, j.JobID)
	if got.State != events.JobCompleted {
		t.Fatalf("job = %s (%s), want completed", got.State, got.LastError)
	}
	b.assertCopied(t, threeDisksPath, got)
	b.assertNoSnapshot(t, threeDisksPath)
	if !strings.Contains(b.v.Logs.String(), "resuming disk") {
		t.Errorf("no disk resumed from its checkpoint:\n%s", b.v.Logs)
	}
}

// storedJob reads a job from the stopped-or-running VMA's state through its
// API's view (status) and, for fields the API does not show, from the
// store after stopping the VMA.
func (b *bed) storedJob(t *testing.T, id string) (store.Job, error) {
	t.Helper()
	b.v.Stop()
	defer b.v.Start()
	st, err := store.Open(filepath.Join(b.v.Dir, "vma", "state.db"), time.Second)
	if err != nil {
		return store.Job{}, err
	}
	defer st.Close()
	return st.Get(id)
}

// events returns the events a stream holds on subject, in order.
func (b *bed) events(t testing.TB, stream, subject string) []events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := b.o.Admin.JetStream().OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var evs []events.Event
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var ev events.Event
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatalf("%s message %s: %v", stream, m.Data(), err)
			}
			evs = append(evs, ev)
		}
		if n == 0 {
			return evs
		}
	}
}
