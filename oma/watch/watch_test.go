package watch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/watch"
	"github.com/godwit/godwit/testkit"
)

var t0 = time.Date(2026, 11, 26, 9, 14, 3, 0, time.UTC)

func event(t *testing.T, p events.Payload) events.Event {
	t.Helper()
	ev, err := events.New("/godwit/test", p, t0)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func state(id, from, to string, at time.Duration, errText string) *events.JobStateChanged {
	return &events.JobStateChanged{JobID: id, VMAID: "vma-1", From: from, To: to, Error: errText, ChangedAt: t0.Add(at)}
}

func TestPrinter(t *testing.T) {
	created := &events.JobCreated{JobID: "j1", VMAID: "vma-1", VM: events.VMRef{ID: "vm-31", Name: "PGWINTESTBIOS", Path: "/DC/vm/PGWINTESTBIOS"},
		ReplicationType: "initial", State: events.JobPending, CreatedAt: t0,
		Disks: []events.JobDisk{{Key: 2000, CapacityBytes: 40 << 30}, {Key: 2001, CapacityBytes: 100 << 30}}}
	status := func(verified ...bool) *events.ReplicationStatus {
		s := &events.ReplicationStatus{JobID: "j1", VMAID: "vma-1", Seq: 9, State: events.JobCompleted, BytesTransferred: 300 << 20}
		for i, v := range verified {
			s.Disks = append(s.Disks, events.DiskChange{Key: int32(2000 + i), ChangeID: "52 d1/4", Verified: v})
		}
		return s
	}
	tests := []struct {
		name string
		in   []events.Payload
		want []string
	}{
		{"a job from creation to completion", []events.Payload{
			created,
			state("j1", "pending", "queued", 0, ""),
			state("j1", "queued", "snapshotting", time.Second, ""),
			state("j1", "snapshotting", "copying", 2*time.Second, ""),
			status(true, true),
			state("j1", "copying", "finalizing", 3*time.Second, ""),
			state("j1", "finalizing", "completed", 4*time.Second, ""),
		}, []string{
			"09:14:03 job j1 created: PGWINTESTBIOS, initial, 2 disk(s), 140.0 GiB, on vma-1",
			"09:14:03 job j1 pending -> queued",
			"09:14:04 job j1 queued -> snapshotting",
			"09:14:05 job j1 snapshotting -> copying",
			"09:14:06 job j1 copying -> finalizing",
			"09:14:07 job j1 completed: 300.0 MiB copied in 3s (100.0 MiB/s), verified",
		}},
		{"checking the copy", []events.Payload{
			state("j1", "queued", "snapshotting", 0, ""),
			state("j1", "snapshotting", "copying", time.Second, ""),
			state("j1", "copying", "verifying", 3*time.Second, ""),
			status(true, true),
			state("j1", "verifying", "finalizing", 3340*time.Millisecond, ""),
			state("j1", "finalizing", "completed", 5*time.Second, ""),
		}, []string{
			"09:14:03 job j1 queued -> snapshotting",
			"09:14:04 job j1 snapshotting -> copying",
			"09:14:06 job j1 copying -> verifying: every byte copied, checking the copy",
			"09:14:06 job j1 verifying -> finalizing",
			"09:14:08 job j1 completed: 300.0 MiB copied in 5s (60.0 MiB/s), verified (checked in 340ms)",
		}},
		{"one disk unverified", []events.Payload{
			state("j1", "queued", "snapshotting", 0, ""),
			status(true, false),
			state("j1", "finalizing", "completed", 2*time.Second, ""),
		}, []string{
			"09:14:03 job j1 queued -> snapshotting",
			"09:14:05 job j1 completed: 300.0 MiB copied in 2s (150.0 MiB/s), 1 of 2 disks verified",
		}},
		{"watching from the middle: no time, no rate", []events.Payload{
			status(true),
			state("j1", "finalizing", "completed", 0, ""),
		}, []string{"09:14:03 job j1 completed: 300.0 MiB copied, verified"}},
		{"waiting in the queue, then paused and resumed", []events.Payload{
			&events.QueueQueued{JobID: "j1", VMAID: "vma-1", Position: 3, WaitingFor: "esxi host esx-21: 4 of 4 running", QueuedAt: t0},
			&events.QueueDispatched{JobID: "j1", VMAID: "vma-1", Position: 1, WaitedSeconds: 42.4, DispatchedAt: t0.Add(42 * time.Second)},
			state("j1", "copying", "paused", 50*time.Second, "paused through the OMA API"),
			state("j1", "paused", "queued", 60*time.Second, ""),
		}, []string{
			"09:14:03 job j1 waiting in the queue at 3: esxi host esx-21: 4 of 4 running",
			"09:14:45 job j1 dispatched to vma-1 after 42s in the queue",
			"09:14:53 job j1 copying -> paused: paused through the OMA API",
			"09:15:03 job j1 paused -> queued",
		}},
		{"moved from a gone VMA", []events.Payload{
			&events.QueueMoved{JobID: "j1", VMAID: "vma-2", FromVMA: "vma-1", Attempt: 2, Reason: "vma-1: no heartbeat for 30s", MovedAt: t0},
			&events.QueueMoved{JobID: "j2", VMAID: "vma-2", FromVMA: "vma-1", Attempt: 2, Running: true, Reason: "vma-1: no heartbeat for 2m30s", MovedAt: t0},
		}, []string{
			"09:14:03 job j1 waiting job moved from vma-1 to vma-2 (attempt 2): vma-1: no heartbeat for 30s",
			"09:14:03 job j2 taken over from vma-1 to vma-2 (attempt 2): vma-1: no heartbeat for 2m30s",
		}},
		{"limits changed", []events.Payload{
			&events.QueueLimits{Object: events.LimitsVMA, Name: "vma-1", Rate: ptr(int64(100 << 20)),
				RateWindows: []events.RateWindow{{Start: "08:00", End: "20:00", TZ: "Europe/Berlin", Rate: 50 << 20}}, ChangedAt: t0},
			&events.QueueLimits{Object: events.LimitsGlobal, Name: "all", Rate: ptr(int64(0)), ChangedAt: t0},
			&events.QueueLimits{Object: events.LimitsVCenter, Name: "prod-vc1", VCenter: 16, ESXiHost: 2, Datastore: 4, ChangedAt: t0},
		}, []string{
			"09:14:03 limits vma vma-1: rate 100.0 MiB/s, 08:00-20:00 Europe/Berlin: 50.0 MiB/s",
			"09:14:03 limits global all: no rate limit",
			"09:14:03 limits vcenter prod-vc1: 16 jobs at once, 2 per ESXi host, 4 per datastore",
		}},
		{"failed with its reason", []events.Payload{
			state("j1", "copying", "failed", 0, "copy: disk 2000: EIO"),
		}, []string{"09:14:03 job j1 failed: copy: disk 2000: EIO"}},
		{"a plan", []events.Payload{
			&events.PlanCreated{Plan: "weekend-1", VCenter: "prod-vc1", CreatedAt: t0, NextDue: t0.Add(5 * time.Second),
				Sync: events.PlanSchedule{Interval: "4h", Window: &events.PlanWindow{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"}},
				VMs:  []events.PlanVMRef{{ID: "vm-1", Name: "db1", Wave: 0}, {ID: "vm-2", Name: "web1", Wave: 1}}},
			&events.PlanSyncScheduled{Plan: "weekend-1", Reason: events.SyncReasonMissed, Sync: 3, DueVMs: 2, At: t0.Add(time.Second), NextDue: t0.Add(time.Hour)},
			&events.PlanVMStateChanged{Plan: "weekend-1", VMID: "vm-1", Name: "db1", From: "synced", To: "syncing", Job: "j2", ChangedAt: t0.Add(2 * time.Second)},
			&events.PlanSyncDone{Plan: "weekend-1", VMID: "vm-1", Name: "db1", Job: "j2", ReplicationType: "incremental", BytesChanged: 64 << 20,
				DurationSeconds: 2.04, Verified: true, FinishedAt: t0.Add(4 * time.Second)},
			&events.PlanVMStateChanged{Plan: "weekend-1", VMID: "vm-2", Name: "web\x1b[2J1", From: "syncing", To: "paused", Job: "j3", Error: "3 syncs failed", ChangedAt: t0.Add(5 * time.Second)},
			&events.PlanChanged{Plan: "weekend-1", Change: events.PlanChangePaused, ChangedAt: t0.Add(6 * time.Second)},
		}, []string{
			"09:14:03 plan weekend-1 created: 2 VM(s) of prod-vc1 in 2 wave(s), every 4h inside 22:00-06:00 Europe/Berlin, first sync due 09:14:08",
			"09:14:04 plan weekend-1 sync 3 (missed): 2 VM(s) due, next due 10:14:03",
			"09:14:05 plan weekend-1 vm db1 synced -> syncing (job j2)",
			"09:14:07 plan weekend-1 vm db1 synced: incremental, 64.0 MiB copied in 2s, verified",
			`09:14:08 plan weekend-1 vm "web\x1b[2J1" syncing -> paused (job j3): 3 syncs failed`,
			"09:14:09 plan weekend-1 paused",
		}},
		{"a cutover", []events.Payload{
			&events.PowerReport{RequestID: "vm-1-c1-off", VMAID: "vma-1", VMID: "vm-1", Action: events.PowerOff, StateBefore: events.PowerStateOn,
				StateAfter: events.PowerStateOff, Method: events.PowerMethodGuest, Seconds: 21.4, DoneAt: t0},
			&events.CutoverStateChanged{Cutover: "vm-1-c1", VMID: "vm-1", Name: "db1", Plan: "weekend-1", To: "powering_off", ChangedAt: t0},
			&events.CutoverStateChanged{Cutover: "vm-1-c1", VMID: "vm-1", Name: "db1", Plan: "weekend-1", From: "final_sync", To: "converting", Job: "j9", ChangedAt: t0.Add(time.Second)},
			&events.CutoverStateChanged{Cutover: "vm-1-c1", VMID: "vm-1", Name: "db1", From: "boot_check", To: "failed", Error: "boot check: Kernel panic", ChangedAt: t0.Add(2 * time.Second)},
			&events.CutoverDone{Cutover: "vm-1-c1", VMID: "vm-1", Name: "db1", Measured: events.Downtime{PowerOff: 21.4, FinalSync: 7.9, Conversion: 231, Export: 6.2, BootCheck: 74.5, Total: 341},
				PredictedSeconds: 356, FinalSyncBytes: 100 << 20, Converted: true, TargetDir: "/mnt/primary/db1", DoneAt: t0.Add(3 * time.Second)},
			&events.PowerReport{RequestID: "vm-2-c1-off", VMAID: "vma-1", VMID: "vm-2", Action: events.PowerOff, StateBefore: events.PowerStateOn, StateAfter: events.PowerStateOn,
				GuestTimedOut: true, Seconds: 300.2, DoneAt: t0.Add(4 * time.Second), Error: &events.Failure{Code: events.FailureInvalid, Message: "the guest did not shut down within 5m0s"}},
		}, []string{
			"09:14:03 power vm-1-c1-off off vm vm-1: poweredOn -> poweredOff (guest) in 21.4s",
			"09:14:03 cutover vm-1-c1 vm db1 started: powering_off",
			"09:14:04 cutover vm-1-c1 vm db1 final_sync -> converting (final sync j9)",
			"09:14:05 cutover vm-1-c1 vm db1 boot_check -> failed: boot check: Kernel panic",
			"09:14:06 cutover vm-1-c1 vm db1 cut over: downtime 5m41s (power-off 21.4s, final sync 7.9s of 100.0 MiB, conversion 3m51s, export 6.2s, boot check 1m14.5s), predicted 5m56s; disks in /mnt/primary/db1",
			"09:14:07 power vm-2-c1-off off vm vm-2 failed after 5m0.2s: the guest did not shut down within 5m0s",
		}},
		{"progress and heartbeats make no line", []events.Payload{
			&events.Progress{JobID: "j1", VMAID: "vma-1", Seq: 1, Phase: events.PhaseCopying},
			&events.Heartbeat{VMAID: "vma-1", Version: "t", PublicKey: "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=", StartedAt: t0},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			p := watch.NewPrinter(&out, time.UTC)
			for _, pl := range tt.in {
				if err := p.Handle(event(t, pl)); err != nil {
					t.Fatal(err)
				}
			}
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if out.Len() == 0 {
				got = nil
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 40 << 30: "40.0 GiB", 3 << 40: "3.0 TiB"} {
		if got := watch.Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestRun: events published on a real NATS server come out as lines, in order.
func TestRun(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	out := &testkit.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- watch.Run(ctx, nc, watch.NewPrinter(out, time.UTC)) }()
	pub, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	publish := func(p events.Payload) {
		subj, _ := p.NATSSubject()
		raw, _ := json.Marshal(event(t, p))
		if err := pub.Publish(subj, raw); err != nil {
			t.Fatal(err)
		}
	}
	// Until Run has subscribed, publishes are lost: probe until one is seen.
	testkit.Eventually(t, "Run to subscribe", func() bool {
		publish(state("probe", "pending", "queued", 0, ""))
		return out.String() != ""
	})
	publish(state("j2", "pending", "queued", 0, ""))
	publish(state("j2", "queued", "failed", 0, "cancelled by the operator"))
	want := "09:14:03 job j2 pending -> queued\n09:14:03 job j2 failed: cancelled by the operator\n"
	// Probes in flight may still come out before them.
	withoutProbes := func() string {
		var b strings.Builder
		for line := range strings.Lines(out.String()) {
			if !strings.Contains(line, " job probe ") {
				b.WriteString(line)
			}
		}
		return b.String()
	}
	testkit.Eventually(t, "j2's lines", func() bool { return withoutProbes() == want })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v after ctx ended, want nil", err)
	}
}

func ptr[T any](v T) *T { return &v }
