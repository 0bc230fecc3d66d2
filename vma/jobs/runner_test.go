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
	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/store"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestQueue: with -max-jobs 4, four jobs run at once and a fifth waits,
// queued, then runs; all five complete.
func TestQueue(t *testing.T) {
	b := newBed(t, bedConfig{ports: 5, vma: func(c *appliance.Config) {
		slowly(4 << 20)(c)
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
			testbed.Eventually(t, id+" running", func() bool { return b.vmaStatus(t, id).State == store.StateRunning })
		}
	}
	fifth := ids[4]
	testbed.Eventually(t, "the fifth job queued on the VMA", func() bool {
		st := b.vmaStatus(t, fifth).State
		if st != store.StateAccepted && st != store.StateQueued {
			t.Fatalf("the fifth job is %s while four run, want it to wait", st)
		}
		return st == store.StateQueued
	})
	running := 0
	for _, id := range ids[:4] {
		if b.vmaStatus(t, id).State == store.StateRunning {
			running++
		}
	}
	if running < 2 {
		t.Errorf("%d jobs ran at once when the fifth was queued, want several", running)
	}
	testbed.Eventually(t, "the fifth job queued at the OMA", func() bool { return b.get(t, fifth).State == events.JobQueued })
	for i, id := range ids {
		if got := b.wait(t, id); got.State != events.JobCompleted {
			t.Errorf("job %s of %s = %s (%s)", id, names[i], got.State, got.LastError)
		}
	}
}

// TestProgressEvents: a job's progress events reach the bus at most once
// per interval within a phase, in order, with every field, ending at 100%.
func TestProgressEvents(t *testing.T) {
	const interval = 200 * time.Millisecond
	b := newBed(t, bedConfig{vma: func(c *appliance.Config) {
		slowly(6 << 20)(c)
		c.ProgressInterval = interval
	}})
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
	testbed.Eventually(t, "a live rate and ETA from the VMA", func() bool {
		b.vmaDo(t, http.MethodGet, "/api/v1/progress/"+j.JobID, nil, &live)
		return live.RateBytesPerSecond > 0 && live.ETASeconds != nil && len(live.Disks) == 3 && live.Percent < 100
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
	phases := []string{events.PhaseSnapshotting, events.PhaseCopying, events.PhaseFinalizing}
	rank := func(ph string) int { return strings.Index(strings.Join(phases, ","), ph) }
	for i, p := range ps {
		if i > 0 {
			prev := ps[i-1]
			if p.Seq <= prev.Seq || rank(p.Phase) < rank(prev.Phase) || p.BytesDone < prev.BytesDone {
				t.Errorf("event %d (seq %d, %s, %d done) after (seq %d, %s, %d done)", i, p.Seq, p.Phase, p.BytesDone, prev.Seq, prev.Phase, prev.BytesDone)
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
}

// TestRestartEndsUnfinishedJobs: a VMA that finds a job it was running when
// it died records it failed, reports it so, and removes its snapshot.
func TestRestartEndsUnfinishedJobs(t *testing.T) {
	b := newBed(t, bedConfig{})
	j := b.create(t, threeDisks)
	b.v.Stop()

	// What a VMA killed mid-copy leaves: the job running, its snapshot taken.
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
	if _, err := st.Update(j.JobID, true, func(sj *store.Job) error {
		sj.State, sj.Phase, sj.VCenter, sj.Username, sj.Password = store.StateRunning, events.PhaseCopying, b.vc, b.sim.Username, &sealed
		sj.VMPaths, sj.VMRef, sj.Snapshot, sj.Seq = []string{threeDisksPath}, vm.Ref.Value, snap.Ref.Value, 5
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	b.v.Start()
	testbed.Eventually(t, "the snapshot removed", func() bool { return b.vmaStatus(t, j.JobID).Snapshot == "" })
	b.assertNoSnapshot(t, threeDisksPath)
	vs := b.vmaStatus(t, j.JobID)
	if vs.State != store.StateFailed || !strings.Contains(vs.Error, "restarted while the job was copying") {
		t.Errorf("VMA status = %+v, want failed: restarted", vs)
	}
	if got := b.wait(t, j.JobID); got.State != events.JobFailed || !strings.Contains(got.LastError, "restarted") {
		t.Errorf("OMA job = %s (%s), want failed: restarted", got.State, got.LastError)
	}
	if sj, err := b.storedJob(t, j.JobID); err != nil || sj.Password != nil {
		t.Errorf("the stored job keeps its sealed password after cleanup (%v)", err)
	}
}

// TestStopEndsRunningJobs: a VMA stopped while a job copies ends it failed,
// saying so, and removes its snapshot before it stops.
func TestStopEndsRunningJobs(t *testing.T) {
	b := newBed(t, bedConfig{vma: slowly(1 << 20)})
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	b.waitCopying(t, j.JobID)
	b.v.Stop()
	b.assertNoSnapshot(t, threeDisksPath)
	if got := b.wait(t, j.JobID); got.State != events.JobFailed || !strings.Contains(got.LastError, "the VMA stopped during copy") {
		t.Errorf("OMA job = %s (%s), want failed: the VMA stopped", got.State, got.LastError)
	}
	b.v.Start()
	if vs := b.vmaStatus(t, j.JobID); vs.State != store.StateFailed || vs.Snapshot != "" {
		t.Errorf("VMA status after the restart = %+v", vs)
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
