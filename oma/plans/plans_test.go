package plans_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/vcsim"
)

// planView is what GET /api/v1/plans/{name} answers, as the tests read it.
type planView struct {
	Name            string         `json:"name"`
	Blocked         string         `json:"blocked"`
	NextDue         time.Time      `json:"next_due"`
	LastSyncAt      *time.Time     `json:"last_sync_at"`
	Syncs           int            `json:"syncs"`
	Counts          map[string]int `json:"counts"`
	BytesCopied     int64          `json:"bytes_copied"`
	PreflightErrors int            `json:"preflight_errors"`
	Preflight       *struct {
		Errors   int `json:"errors"`
		Warnings int `json:"warnings"`
	} `json:"preflight"`
	VMs []struct {
		ID         string     `json:"id"`
		Path       string     `json:"path"`
		Wave       int        `json:"wave"`
		State      string     `json:"state"`
		CurrentJob string     `json:"current_job"`
		NextSync   *time.Time `json:"next_sync"`
		Syncs      int        `json:"syncs"`
		Failures   int        `json:"failures"`
		LastError  string     `json:"last_error"`
		LastSync   *struct {
			Job          string  `json:"job"`
			Type         string  `json:"type"`
			BytesChanged int64   `json:"bytes_changed"`
			Duration     float64 `json:"duration_seconds"`
			Verified     bool    `json:"verified"`
		} `json:"last_sync"`
	} `json:"vms"`
}

// jobView is a job as GET /api/v1/replications/{id} answers it.
type jobView struct {
	JobID      string     `json:"job_id"`
	Type       string     `json:"replication_type"`
	State      string     `json:"state"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at"`
	SourceVM   struct {
		ID string `json:"id"`
	} `json:"source_vm"`
	Disks []struct {
		Key        int32  `json:"key"`
		VolumePath string `json:"volume_path"`
	} `json:"disks"`
}

// bed is an OMA, a VMA and a simulated vCenter with n plain VMs of its own
// (plan-vm-01...), registered as vCenter "sim".
type bed struct {
	t     *testing.T
	sim   *vcsim.Simulator
	oma   *testbed.OMA
	vma   *testbed.VMA
	paths []string
}

func newBed(t *testing.T, n int, extra ...vcsim.VM) *bed {
	t.Helper()
	b := &bed{t: t}
	for i := range n {
		name := fmt.Sprintf("plan-vm-%02d", i+1)
		extra = append(extra, vcsim.VM{Name: name, Disks: []int64{16 << 20}, CBT: true, On: true})
		b.paths = append(b.paths, "/"+vcsim.Datacenter+"/vm/"+name)
	}
	b.sim = testbed.StartSim(t, vcsim.Config{VMs: 1, Extra: extra, DiskData: 1 << 20})
	b.oma = testbed.StartOMA(t, testbed.OMAConfig{Ports: 12, Configure: func(c *appliance.Config) {
		c.MinSyncInterval, c.PlanPoll = time.Second, 200*time.Millisecond
	}})
	b.vma = testbed.StartVMA(t, b.oma, testbed.VMAConfig{VCenterCAFile: b.sim.CAFile})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("OMA log:\n%s\nVMA log:\n%s", b.oma.Logs, b.vma.Logs)
		}
	})
	var vc struct {
		VMAs   []string `json:"vmas"`
		Detail string   `json:"detail"`
	}
	if code := b.oma.Do(http.MethodPost, "/api/v1/vcenters", map[string]any{"name": "sim", "host": b.sim.Host,
		"username": b.sim.Username, "password": b.sim.Password, "datacenters": []string{vcsim.Datacenter}}, &vc); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/vcenters = %d: %s", code, vc.Detail)
	}
	if !slices.Equal(vc.VMAs, []string{b.vma.ID}) {
		t.Fatalf("the vCenter's VMAs = %v, want the one that proved access, %s", vc.VMAs, b.vma.ID)
	}
	return b
}

func (b *bed) plan(name string) planView {
	b.t.Helper()
	var p planView
	if code := b.oma.Do(http.MethodGet, "/api/v1/plans/"+name, nil, &p); code != http.StatusOK {
		b.t.Fatalf("GET /api/v1/plans/%s = %d", name, code)
	}
	return p
}

func (b *bed) job(id string) jobView {
	b.t.Helper()
	var j jobView
	if code := b.oma.Do(http.MethodGet, "/api/v1/replications/"+id, nil, &j); code != http.StatusOK {
		b.t.Fatalf("GET /api/v1/replications/%s = %d", id, code)
	}
	return j
}

// guestWrite writes 64 KiB of fresh bytes into the first disk of the VM at
// path, at an offset of its own for each round.
func (b *bed) guestWrite(path string, key int32, round int) {
	b.t.Helper()
	file, err := b.sim.DiskFile(context.Background(), path, key)
	if err != nil {
		b.t.Fatal(err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		b.t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(round*31 + i*7 + len(path))
	}
	if _, err := f.WriteAt(buf, int64(round)*(2<<20)+(8<<20)); err != nil {
		b.t.Fatal(err)
	}
}

// planEvents reads the payloads of the PLANS stream's events on subject
// (a filter), in the order the OMA published them.
func planEvents[T any](b *bed, subject string) []T {
	b.t.Helper()
	ctx := testkit.Context(b.t)
	c, err := b.oma.Admin.JetStream().OrderedConsumer(ctx, bus.StreamPlans, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		b.t.Fatal(err)
	}
	var out []T
	for {
		batch, err := c.FetchNoWait(100)
		if err != nil {
			b.t.Fatal(err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			var ev struct {
				Data T `json:"data"`
			}
			if err := json.Unmarshal(msg.Data(), &ev); err != nil {
				b.t.Fatal(err)
			}
			out = append(out, ev.Data)
		}
		if n == 0 {
			return out
		}
	}
}

// scheduled reads the plan's sync-scheduled events from the PLANS stream.
func (b *bed) scheduled(plan string) []events.PlanSyncScheduled {
	b.t.Helper()
	return planEvents[events.PlanSyncScheduled](b, "godwit.plan.scheduled."+plan)
}

// TestPlanWavesAndScheduledSyncs runs a plan of 12 VMs in two waves with a
// 5-second interval: wave 2 starts only after wave 1 has copied; after
// three scheduled syncs with guest writes before each, every replica equals
// its source; the syncs are counted and due on time, and an OMA restart
// in the middle, down past a due time, runs the missed sync once.
func TestPlanWavesAndScheduledSyncs(t *testing.T) {
	testkit.Long(t)
	b := newBed(t, 12)
	var created planView
	code := b.oma.Do(http.MethodPost, "/api/v1/plans", map[string]any{"name": "weekend-1", "vcenter": "sim", "vms": b.paths,
		"waves": [][]string{b.paths[:6], b.paths[6:]}, "sync": map[string]any{"interval": "5s"}}, &created)
	if code != http.StatusCreated {
		t.Fatalf("POST /api/v1/plans = %d", code)
	}
	if created.Preflight == nil || created.Preflight.Errors != 0 || created.Blocked != "" {
		t.Fatalf("a clean plan's preflight = %+v, blocked %q", created.Preflight, created.Blocked)
	}

	// Every VM gets its initial copy, wave by wave.
	testkit.Eventually(t, "every VM's initial copy", func() bool {
		p := b.plan("weekend-1")
		for _, vm := range p.VMs {
			if vm.LastSync == nil {
				return false
			}
		}
		return true
	})
	p := b.plan("weekend-1")
	var lastWave1 time.Time
	firstWave2 := time.Now().Add(time.Hour)
	var jobs struct {
		Replications []jobView `json:"replications"`
	}
	b.oma.Do(http.MethodGet, "/api/v1/replications", nil, &jobs)
	waveOf, diskOf := map[string]int{}, map[string]int32{}
	for _, vm := range p.VMs {
		waveOf[vm.ID] = vm.Wave
		diskOf[vm.Path] = b.job(vm.LastSync.Job).Disks[0].Key
	}
	initials := 0
	for _, j := range jobs.Replications {
		if j.Type != events.ReplicationInitial {
			continue
		}
		initials++
		if waveOf[j.SourceVM.ID] == 0 && j.FinishedAt != nil && j.FinishedAt.After(lastWave1) {
			lastWave1 = *j.FinishedAt
		}
		if waveOf[j.SourceVM.ID] == 1 && j.CreatedAt.Before(firstWave2) {
			firstWave2 = j.CreatedAt
		}
	}
	if initials != 12 {
		t.Errorf("%d initial jobs, want 12 (one per VM)", initials)
	}
	if firstWave2.Before(lastWave1) {
		t.Errorf("wave 2's first job was created at %s, before wave 1's last copy completed at %s", firstWave2, lastWave1)
	}

	// Three scheduled syncs, each after guest writes; the OMA restarts
	// before the second, down past a due time.
	for round := 1; round <= 3; round++ {
		if round == 2 {
			b.oma.Stop()
			due := b.planFromStore("weekend-1")
			for time.Now().Before(due.Add(time.Second)) {
				time.Sleep(100 * time.Millisecond) // down past the next due time
			}
			b.oma.Start()
		}
		wrote := time.Now()
		for _, path := range b.paths {
			b.guestWrite(path, diskOf[path], round)
		}
		testkit.Eventually(t, fmt.Sprintf("round %d: a sync of every VM after its guest wrote", round), func() bool {
			p := b.plan("weekend-1")
			for _, vm := range p.VMs {
				if vm.LastSync == nil || vm.LastSync.Type != events.ReplicationIncremental || !b.job(vm.LastSync.Job).CreatedAt.After(wrote) {
					return false
				}
			}
			return true
		})
		p := b.plan("weekend-1")
		for _, vm := range p.VMs {
			j := b.job(vm.LastSync.Job)
			src, err := b.sim.DiskFile(context.Background(), vm.Path, j.Disks[0].Key)
			if err != nil {
				t.Fatal(err)
			}
			if err := testkit.SameDisk(src, j.Disks[0].VolumePath); err != nil {
				t.Errorf("round %d: %s's replica differs from its source: %v", round, vm.Path, err)
			}
			// At most what the guest wrote, rounded up to blocks: none when a
			// sync created just before the write had already copied it.
			if !vm.LastSync.Verified || vm.LastSync.BytesChanged > 1<<20 {
				var raw map[string]any
				b.oma.Do(http.MethodGet, "/api/v1/replications/"+vm.LastSync.Job, nil, &raw)
				t.Errorf("round %d: %s's last sync = %+v, want verified, with at most the 64 KiB the guest wrote changed (a MiB of blocks); its job: %v", round, vm.Path, *vm.LastSync, raw)
			}
		}
	}

	p = b.plan("weekend-1")
	if p.LastSyncAt == nil || p.NextDue.Sub(*p.LastSyncAt) != 5*time.Second {
		t.Errorf("next due %s after the last sync at %v, want 5s after", p.NextDue, p.LastSyncAt)
	}
	if p.BytesCopied == 0 || p.BytesCopied >= 12*16<<20 {
		t.Errorf("the plan copied %d bytes, want the disks' data and the guests' writes, far below their capacities (%d)", p.BytesCopied, 12*16<<20)
	}
	if p.Counts[events.PlanVMFailed] != 0 || p.Counts[events.PlanVMPaused] != 0 {
		t.Errorf("counts = %v, want no failures", p.Counts)
	}
	// Paused, the plan schedules no more: its events catch up with its count.
	if code := b.oma.Do(http.MethodPost, "/api/v1/plans/weekend-1/pause", nil, &p); code != http.StatusOK {
		t.Fatalf("pause = %d", code)
	}
	var sched []events.PlanSyncScheduled
	testkit.Eventually(t, "a sync-scheduled event for each sync the plan counts", func() bool {
		sched = b.scheduled("weekend-1")
		return len(sched) == b.plan("weekend-1").Syncs
	})
	if len(sched) < 3 {
		t.Fatalf("%d sync-scheduled events, want 3 or more", len(sched))
	}
	missed := 0
	for i, ev := range sched {
		if ev.Sync != i+1 {
			t.Errorf("sync-scheduled event %d counts sync %d: lost or doubled", i, ev.Sync)
		}
		if ev.Reason == events.SyncReasonMissed {
			missed++
		}
		if i > 0 && ev.At.Before(sched[i-1].NextDue) {
			t.Errorf("sync %d ran at %s, before it was due at %s", ev.Sync, ev.At, sched[i-1].NextDue)
		}
	}
	if missed != 1 {
		t.Errorf("%d syncs ran as missed, want the one due while the OMA was down", missed)
	}
}

// planFromStore reads the plan's next due time from the stopped OMA's
// state database.
func (b *bed) planFromStore(name string) time.Time {
	b.t.Helper()
	st, err := appliance.OpenStore(b.oma.Dir)
	if err != nil {
		b.t.Fatal(err)
	}
	defer st.Close()
	var due time.Time
	err = st.View(func(tx *bbolt.Tx) error {
		p, err := store.GetPlan(tx, name)
		due = p.NextDue
		return err
	})
	if err != nil {
		b.t.Fatal(err)
	}
	return due
}
