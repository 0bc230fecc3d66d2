package plans_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/oma/atrest"
	"github.com/godwit/godwit/oma/control"
	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/oma/plans"
	"github.com/godwit/godwit/oma/replicas"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/vcsim"
)

// benchVMs is how many VMs the plan benchmarks' plan has.
const benchVMs = 1000

// benchPorts is each VMA's share of the NBD port pool in the benchmarks:
// room for every job one tick may start (plans.DefaultMaxActive).
const benchPorts = plans.DefaultMaxActive

// bigBed is an OMA, a VMA and a simulated vCenter with benchVMs model VMs
// (model-vm-0001..., one 10 GiB disk and one NIC each, change tracking
// off), the vCenter registered as "sim" (which discovers it once).
type bigBed struct {
	sim   *vcsim.Simulator
	oma   *testbed.OMA
	vma   *testbed.VMA
	paths []string
}

func newBigBed(b *testing.B) *bigBed {
	b.Helper()
	bb := &bigBed{}
	bb.sim = testbed.StartSim(b, vcsim.Config{VMs: 1, ModelVMs: benchVMs})
	for i := range benchVMs {
		bb.paths = append(bb.paths, fmt.Sprintf("/%s/vm/model-vm-%04d", vcsim.Datacenter, i+1))
	}
	bb.oma = testbed.StartOMA(b, testbed.OMAConfig{Ports: benchPorts, Configure: func(c *appliance.Config) {
		c.MinSyncInterval = time.Second
	}})
	bb.vma = testbed.StartVMA(b, bb.oma, testbed.VMAConfig{VCenterCAFile: bb.sim.CAFile})
	var vc struct {
		Detail string `json:"detail"`
	}
	if code := bb.oma.Do(http.MethodPost, "/api/v1/vcenters", map[string]any{"name": "sim", "host": bb.sim.Host,
		"username": bb.sim.Username, "password": bb.sim.Password, "datacenters": []string{vcsim.Datacenter}}, &vc); code != http.StatusCreated {
		b.Fatalf("POST /api/v1/vcenters = %d: %s\nOMA log:\n%s", code, vc.Detail, bb.oma.Logs)
	}
	return bb
}

// closedWindow is a daily window that does not hold now (it opens in two
// hours): a plan with it starts no copy now.
func closedWindow(now time.Time) map[string]any {
	now = now.UTC()
	return map[string]any{"start": now.Add(2 * time.Hour).Format("15:04"), "end": now.Add(3 * time.Hour).Format("15:04"), "tz": "UTC"}
}

// createPlan creates plan name of the bed's VMs, synced every hour inside
// a window closed now, so that no copy starts, and returns the creation's
// wall time.
func (bb *bigBed) createPlan(b *testing.B, name string, force bool) time.Duration {
	b.Helper()
	var created struct {
		VMs       []struct{ ID string } `json:"vms"`
		Detail    string                `json:"detail"`
		Preflight *struct {
			Errors int `json:"errors"`
			VMs    []struct {
				Checks []plans.Check `json:"checks"`
			} `json:"vms"`
			Checks []plans.Check `json:"checks"`
		} `json:"preflight"`
	}
	body := map[string]any{"name": name, "vcenter": "sim", "vms": bb.paths, "force": force,
		"sync": map[string]any{"interval": "1h", "window": closedWindow(time.Now())}}
	start := time.Now()
	code := bb.oma.Do(http.MethodPost, "/api/v1/plans", body, &created)
	took := time.Since(start)
	if code != http.StatusCreated {
		b.Fatalf("POST /api/v1/plans = %d: %s", code, created.Detail)
	}
	if len(created.VMs) != benchVMs || created.Preflight == nil {
		b.Fatalf("the plan has %d VMs and preflight %v, want %d VMs and a preflight", len(created.VMs), created.Preflight, benchVMs)
	}
	for i, vm := range created.Preflight.VMs { // the VMA logged in and rediscovered them
		for _, c := range vm.Checks {
			if c.Check == "vma" && c.Status != plans.OK {
				b.Fatalf("the preflight's vma check of %s: %s: %s", bb.paths[i], c.Status, c.Message)
			}
		}
	}
	return took
}

// BenchmarkCreatePlan1000 times POST /api/v1/plans with 1,000 VMs of the
// simulator, by path, and an interval schedule: the OMA resolves every VM
// against the inventory, stores the plan, and runs the preflight, for
// which the VMA logs in and rediscovers the plan's VMs (their 1,000 names
// are longer than a request's filter may be, so the whole datacenter, 1,002
// VMs). Every VM's vma check must be ok. The plan's window is closed, so
// that no copy starts; its preflight also finds an error (too little room
// for 1,000 new 10 GiB replicas), which costs nothing more. The peer,
// timed in the same iteration: one plain POST /api/v1/discover of the
// same 1,000 VMs (filter "model-vm"), through the same OMA and VMA. The
// plan is deleted after each iteration.
func BenchmarkCreatePlan1000(b *testing.B) {
	testkit.Long(b)
	bb := newBigBed(b)
	var create, discover time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		var res struct {
			VMs []events.VM `json:"vms"`
		}
		start := time.Now()
		code := bb.oma.Do(http.MethodPost, "/api/v1/discover", map[string]any{"vcenter": bb.sim.Host, "username": bb.sim.Username,
			"password": bb.sim.Password, "datacenter": vcsim.Datacenter, "filter": "model-vm"}, &res)
		discover += time.Since(start)
		if code != http.StatusOK || len(res.VMs) != benchVMs {
			b.Fatalf("discover = %d with %d VMs, want 200 with %d", code, len(res.VMs), benchVMs)
		}
		b.StartTimer()
		name := fmt.Sprintf("bench-%d", i)
		create += bb.createPlan(b, name, false)
		b.StopTimer()
		if code := bb.oma.Do(http.MethodDelete, "/api/v1/plans/"+name, nil, nil); code != http.StatusOK && code != http.StatusNoContent {
			b.Fatalf("DELETE /api/v1/plans/%s = %d", name, code)
		}
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(create.Seconds()/n, "s/create")
	b.ReportMetric(discover.Seconds()/n, "s/discover")
	b.ReportMetric(create.Seconds()/discover.Seconds(), "create/discover")
	b.ReportMetric(0, "ns/op")
}

// tickBed is a plan of benchVMs VMs, each with a completed initial copy,
// in the data dir of a stopped OMA: State holds its state database, as a
// tick finds it, for each variant.
type tickBed struct {
	dir         string
	first, last int
	key         *atrest.Key
	// due is when the plan's next sync is due.
	due time.Time
	// open and closed are state.db with the plan's schedule an interval
	// of an hour, without a window and with a window closed at due.
	open, closed []byte
}

// newTickBed makes the plan "bench" through the API (force: its preflight
// finds too little room for 1,000 new 10 GiB replicas), stops the OMA and
// the VMA, and records in the OMA's state what syncs completed copies of
// each VM, an hour apart, leave there: per VM an initial job, then
// syncs-1 incremental ones, each completed and verified, with the
// replica's volume (a sparse file of the disk's size), and the VM synced.
// Copying 1,000 disks for real would take the benchmark hours and measure
// the copies, not the tick.
func newTickBed(b *testing.B, syncs int) *tickBed {
	b.Helper()
	bb := newBigBed(b)
	bb.createPlan(b, "bench", true)
	bb.vma.Stop()
	bb.oma.Stop()
	tb := &tickBed{dir: bb.oma.Dir, first: bb.oma.FirstPort, last: bb.oma.LastPort}
	var err error
	if tb.key, err = atrest.Load(filepath.Join(tb.dir, "at-rest.key")); err != nil {
		b.Fatal(err)
	}
	st, err := appliance.OpenStore(tb.dir)
	if err != nil {
		b.Fatal(err)
	}
	copied := time.Now().UTC().Truncate(time.Second)
	tb.due = copied.Add(time.Hour)
	err = st.Update(func(tx *bbolt.Tx) error {
		invs, err := store.Inventories(tx)
		if err != nil {
			return err
		}
		disks := map[string][]events.Disk{}
		for _, inv := range invs {
			for _, vm := range inv.Result.VMs {
				disks[inv.VMAID+"\x00"+vm.ID] = vm.Disks
			}
		}
		vms, err := store.PlanVMs(tx, "bench")
		if err != nil {
			return err
		}
		if len(vms) != benchVMs {
			return fmt.Errorf("plan bench has %d VMs, want %d", len(vms), benchVMs)
		}
		for _, vm := range vms {
			ds := disks[vm.VMAID+"\x00"+vm.Key]
			if len(ds) == 0 {
				return fmt.Errorf("VM %s has no disks in the inventory", vm.Key)
			}
			var j store.Job
			for k := range syncs {
				done := copied.Add(-time.Duration(syncs-1-k) * time.Hour)
				base := j.ID
				j = store.Job{ID: fmt.Sprintf("repl-%s-%d", vm.Key, done.Add(-time.Minute).Unix()), VMAID: vm.VMAID, VCenter: vm.Host,
					VM: events.VMRef{ID: vm.Key, Name: vm.Name, Path: vm.Path, InstanceUUID: vm.InstanceUUID}, ReplicationType: events.ReplicationInitial,
					State: events.JobCompleted, ReplicaID: vm.ReplicaID, Generation: 1, BaseJobID: base, CreatedBy: "plan:bench",
					CreatedAt: done.Add(-time.Minute), UpdatedAt: done, FinishedAt: &done}
				if k > 0 {
					j.ReplicationType = events.ReplicationIncremental
				}
				for _, d := range ds {
					vol := replicas.VolumePath(tb.dir, vm.ReplicaID, d.Key, 1)
					if k == 0 {
						if err := os.MkdirAll(filepath.Dir(vol), 0o700); err != nil {
							return err
						}
						if err := os.WriteFile(vol, nil, 0o600); err != nil {
							return err
						}
						if err := os.Truncate(vol, d.CapacityBytes); err != nil {
							return err
						}
					}
					jd := store.JobDisk{Key: d.Key, Label: d.Label, CapacityBytes: d.CapacityBytes,
						Export: events.Export{Host: "127.0.0.1", Port: tb.first}, Volume: vol, BytesTotal: d.CapacityBytes, BytesDone: d.CapacityBytes,
						ChangeID: fmt.Sprintf("52 3c 8e 1f 0a 6d 4b 27-9e 55 1a 3f 7c 0b 2d 81/%d", k+1), Verified: true}
					if k > 0 {
						jd.BaseChangeID = fmt.Sprintf("52 3c 8e 1f 0a 6d 4b 27-9e 55 1a 3f 7c 0b 2d 81/%d", k)
						jd.BytesTotal, jd.BytesDone = 64<<20, 64<<20
					}
					j.Disks = append(j.Disks, jd)
					j.BytesTotal += jd.BytesTotal
				}
				j.BytesDone = j.BytesTotal
				if err := store.PutJob(tx, j); err != nil {
					return err
				}
				vm.BytesCopied += j.BytesDone
			}
			vm.State, vm.Job, vm.Syncs, vm.UpdatedAt = events.PlanVMSynced, j.ID, syncs, copied
			vm.LastSync = &store.PlanSyncDone{Job: j.ID, Type: j.ReplicationType, FinishedAt: copied,
				BytesChanged: j.BytesDone, DurationSeconds: 60, Verified: true}
			if err := store.PutPlanVM(tx, vm); err != nil {
				return err
			}
		}
		p, err := store.GetPlan(tx, "bench")
		if err != nil {
			return err
		}
		p.NextDue, p.UpdatedAt = tb.due, copied
		return store.PutPlan(tx, p)
	})
	if err == nil {
		tb.open, err = tb.snapshot(st, events.PlanSchedule{Interval: "1h"})
	}
	if err == nil {
		w := closedWindow(tb.due)
		tb.closed, err = tb.snapshot(st, events.PlanSchedule{Interval: "1h", Window: &events.PlanWindow{Start: w["start"].(string), End: w["end"].(string), TZ: "UTC"}})
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}
	return tb
}

// snapshot sets the plan's schedule to sync and returns the database's
// bytes as committed.
func (tb *tickBed) snapshot(st *store.Store, sync events.PlanSchedule) ([]byte, error) {
	err := st.Update(func(tx *bbolt.Tx) error {
		p, err := store.GetPlan(tx, "bench")
		if err != nil {
			return err
		}
		p.Sync = sync
		return store.PutPlan(tx, p)
	})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = st.View(func(tx *bbolt.Tx) error {
		_, err := tx.WriteTo(&buf)
		return err
	})
	return buf.Bytes(), err
}

// tickResult is what one timed tick did.
type tickResult struct {
	took   time.Duration
	queued int // the plan's jobs queued by the tick
	due    int // the VMs still due, waiting for a later tick
}

// tick starts the OMA's Control afresh on db (embedded NATS with its file
// store, bbolt, nbdkit), its clock a minute before the plan is due, lets
// its own first tick pass (nothing is due), moves the clock to the due
// time and times one Manager.Tick. It checks what the tick did: the
// sync-scheduled event says every VM due, and the jobs it started are
// queued.
func (tb *tickBed) tick(b *testing.B, db []byte) tickResult {
	b.Helper()
	path := filepath.Join(tb.dir, "state.db")
	if err := os.WriteFile(path, db, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(tb.dir, "exports")); err != nil {
		b.Fatal(err)
	}
	srv := bustest.StartServer(b, "", bus.Access{})
	conn := bustest.ConnectOMA(b, srv)
	st, err := store.Open(path, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	exp := exports.New(exports.Config{FirstPort: tb.first, LastPort: tb.last})
	clock := testkit.NewClock()
	clock.Add(tb.due.Add(-time.Minute).Sub(clock.Now()))
	ctl := control.New(control.Config{DataDir: tb.dir, AtRestKey: tb.key, NBDPortsPerVMA: benchPorts, MinSyncInterval: time.Second,
		PlanPoll: time.Hour, Now: clock.Now}, st, conn, exp, srv)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Control.Run: %v", err)
		}
		exp.StopAll()
		_ = st.Close()
	}()
	if err := ctl.Restore(ctx); err != nil {
		done <- nil
		b.Fatal(err)
	}
	go func() { done <- ctl.Run(ctx) }()
	if err := ctl.Plans().Tick(ctx); err != nil { // after Run's first tick: nothing is due yet
		b.Fatal(err)
	}
	clock.Add(time.Minute)

	b.StartTimer()
	start := time.Now()
	err = ctl.Plans().Tick(ctx)
	took := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}

	r := tickResult{took: took}
	err = st.View(func(tx *bbolt.Tx) error {
		vms, err := store.PlanVMs(tx, "bench")
		if err != nil {
			return err
		}
		for _, vm := range vms {
			switch {
			case vm.Due && vm.State == events.PlanVMSynced:
				r.due++
			case vm.State == events.PlanVMSyncing:
				j, err := store.GetJob(tx, vm.Job)
				if err != nil {
					return err
				}
				if j.State != events.JobQueued || j.ReplicationType != events.ReplicationIncremental {
					return fmt.Errorf("VM %s's job %s is a %s job %s, want a queued incremental", vm.Key, j.ID, j.ReplicationType, j.State)
				}
				r.queued++
			default:
				return fmt.Errorf("VM %s is %s (due %v, waiting %q, error %q) after the tick", vm.Key, vm.State, vm.Due, vm.Waiting, vm.LastError)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	var ev events.PlanSyncScheduled
	testkit.Eventually(b, "the plan's sync-scheduled event in the PLANS stream", func() bool {
		var env struct {
			Data events.PlanSyncScheduled `json:"data"`
		}
		s, err := conn.JetStream().Stream(ctx, bus.StreamPlans)
		if err != nil {
			return false
		}
		msg, err := s.GetLastMsgForSubject(ctx, "godwit.plan.scheduled.bench")
		if err != nil || json.Unmarshal(msg.Data, &env) != nil {
			return false
		}
		ev = env.Data
		return true
	})
	if ev.DueVMs != benchVMs || ev.Reason != events.SyncReasonSchedule || !ev.DueAt.Equal(tb.due) {
		b.Fatalf("sync-scheduled event = %+v, want %d VMs due at %s by the schedule", ev, benchVMs, tb.due)
	}
	return r
}

// BenchmarkScheduleTick1000 times the OMA's schedule tick for a plan of
// 1,000 synced VMs all due at once: Manager.Tick, called directly on a
// Control of real parts (embedded NATS with its file store, bbolt, the
// jobs manager starting nbdkit per job) on the state a real OMA left,
// from the due time until it returns, which is when every VM is recorded
// due (one transaction, with the sync-scheduled event) and the jobs it may
// start (plans.DefaultMaxActive, 16) are created and queued. Calling Tick
// measures the tick alone: the OMA's Run would add up to a poll interval
// of waiting, and events read from the stream would add the outbox's
// publishing. Each iteration starts from the same state: the tick with
// the plan's window closed (it marks 1,000 VMs due and starts nothing)
// and the tick with no window (it also creates and queues 16 jobs); the
// difference, over the jobs, is ms/job. The plan's VMs have one completed
// copy each (syncs=1: 1,000 jobs in the OMA), or ten (syncs=10: 10,000
// jobs, as after ten syncs: the OMA keeps every job).
func BenchmarkScheduleTick1000(b *testing.B) {
	testkit.Long(b)
	for _, syncs := range []int{1, 10} {
		b.Run(fmt.Sprintf("syncs=%d", syncs), func(b *testing.B) { benchmarkTick(b, syncs) })
	}
}

func benchmarkTick(b *testing.B, syncs int) {
	tb := newTickBed(b, syncs)
	var tick, mark time.Duration
	jobs := 0
	b.ResetTimer()
	b.StopTimer()
	for range b.N {
		m := tb.tick(b, tb.closed)
		if m.queued != 0 || m.due != benchVMs {
			b.Fatalf("with the window closed: %d jobs queued, %d VMs due; want none and %d", m.queued, m.due, benchVMs)
		}
		t := tb.tick(b, tb.open)
		if t.queued != plans.DefaultMaxActive || t.due != benchVMs-plans.DefaultMaxActive {
			b.Fatalf("%d jobs queued, %d VMs left due; want %d and %d", t.queued, t.due, plans.DefaultMaxActive, benchVMs-plans.DefaultMaxActive)
		}
		mark += m.took
		tick += t.took
		jobs += t.queued
	}
	n := float64(b.N)
	b.ReportMetric(float64(tick.Microseconds())/1e3/n, "ms/tick")
	b.ReportMetric(float64(mark.Microseconds())/1e3/n, "ms/mark")
	b.ReportMetric(float64((tick-mark).Microseconds())/1e3/float64(jobs), "ms/job")
	b.ReportMetric(0, "ns/op")
}
