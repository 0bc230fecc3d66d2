package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/testkit"
)

// putJobs stores jobs of vmaID in state, each with one 1 MiB disk, as
// CreateJob and Start would have left them (without their exports).
func (h *harness) putJobs(vmaID, state string, ids ...string) {
	h.t.Helper()
	now := h.clock.Now().UTC()
	err := h.st.Update(func(tx *bbolt.Tx) error {
		for _, id := range ids {
			j := store.Job{ID: id, VMAID: vmaID, VM: events.VMRef{ID: "vm-" + id}, ReplicationType: events.ReplicationInitial,
				State: state, BytesTotal: 1 << 20, CreatedAt: now, UpdatedAt: now,
				Disks: []store.JobDisk{{Key: 2000, Label: "Hard disk 1", CapacityBytes: 1 << 20, BytesTotal: 1 << 20}}}
			if err := store.PutJob(tx, j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

// transitions waits until the outbox is published and returns how many
// lifecycle events the JOBS stream holds for the job.
func (h *harness) transitions(jobID string) uint64 {
	h.t.Helper()
	testkit.Eventually(h.t, "the outbox published", func() bool {
		p, err := h.st.Outbox()
		return err == nil && len(p) == 0
	})
	return bustest.Count(h.t, h.conn, bus.StreamJobs, "godwit.job.*.*."+jobID)
}

// delivery builds the event of a progress or status payload as the bus
// hands it over.
func delivery(t testing.TB, p events.Payload) bus.Delivery {
	t.Helper()
	ev, err := events.New("/godwit/vma/test", p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return bus.Delivery{Event: ev, Payload: p}
}

func prog(job string, seq uint64, phase string, done int64) *events.Progress {
	return &events.Progress{JobID: job, VMAID: "vma-1", Seq: seq, Phase: phase, BytesTotal: 1 << 20, BytesDone: done,
		Disks: []events.DiskProgress{{Key: 2000, BytesTotal: 1 << 20, BytesDone: done}}}
}

// TestApplyProgressBatch: a batch applies in one transaction what one
// event at a time would: an event repeated in a batch or across batches
// applies once, counters follow the highest sequence number whatever the
// order in the batch, states only move forward, a final job never changes,
// and a poison event is refused alone while the rest of its batch applies.
func TestApplyProgressBatch(t *testing.T) {
	t.Parallel()
	poison := errors.New("poison")
	type want struct {
		state       string
		total, done int64
		seq         uint64
		transitions uint64
	}
	tests := []struct {
		name    string
		job     string
		batches func(job string) [][]bus.Delivery // the events, made for the job
		results [][]error                         // per batch; nil: all applied
		want    want
	}{{
		name: "duplicates in a batch and across batches",
		job:  "job-dup",
		batches: func(job string) [][]bus.Delivery {
			a, b := delivery(t, prog(job, 1, events.PhaseCopying, 10)), delivery(t, prog(job, 2, events.PhaseCopying, 20))
			return [][]bus.Delivery{{a, a, b, a}, {b, a}}
		},
		want: want{state: events.JobCopying, total: 1 << 20, done: 20, seq: 2, transitions: 1},
	}, {
		name: "out of order in a batch",
		job:  "job-order",
		batches: func(job string) [][]bus.Delivery {
			return [][]bus.Delivery{{
				delivery(t, prog(job, 3, events.PhaseCopying, 30)),
				delivery(t, prog(job, 1, events.PhaseSnapshotting, 10)),
				delivery(t, prog(job, 2, events.PhaseCopying, 20)),
			}}
		},
		want: want{state: events.JobCopying, total: 1 << 20, done: 30, seq: 3, transitions: 1},
	}, {
		name: "poison amid good events",
		job:  "job-poison",
		batches: func(job string) [][]bus.Delivery {
			other := prog(job, 5, events.PhaseFinalizing, 1<<20)
			other.VMAID = "vma-2"
			return [][]bus.Delivery{{
				delivery(t, prog(job, 1, events.PhaseSnapshotting, 0)),
				delivery(t, prog("no-such-job", 1, events.PhaseCopying, 10)),
				delivery(t, other),
				delivery(t, prog(job, 9, "dreaming", 1<<20)),
				delivery(t, prog(job, 2, events.PhaseCopying, 40)),
			}}
		},
		results: [][]error{{nil, poison, poison, poison, nil}},
		want:    want{state: events.JobCopying, total: 1 << 20, done: 40, seq: 2, transitions: 2},
	}, {
		name: "a final job never changes",
		job:  "job-final",
		batches: func(job string) [][]bus.Delivery {
			return [][]bus.Delivery{{
				delivery(t, prog(job, 1, events.PhaseCopying, 10)),
				delivery(t, &events.ReplicationStatus{JobID: job, VMAID: "vma-1", Seq: 2, State: events.StatusCompleted}),
				delivery(t, prog(job, 3, events.PhaseCopying, 30)),
				delivery(t, &events.ReplicationStatus{JobID: job, VMAID: "vma-1", Seq: 4, State: events.StatusFailed,
					Error: &events.Failure{Code: "internal", Message: "late"}}),
			}}
		},
		want: want{state: events.JobCompleted, total: 1 << 20, done: 1 << 20, seq: 2, transitions: 2},
	}, {
		// A VMA that resumes a job reports it copying before it knows
		// its figures again, and redoes bytes from its last checkpoint.
		name: "figures never go back",
		job:  "job-back",
		batches: func(job string) [][]bus.Delivery {
			zero := prog(job, 3, events.PhaseCopying, 0)
			zero.BytesTotal, zero.Disks = 0, nil
			return [][]bus.Delivery{
				{delivery(t, prog(job, 1, events.PhaseCopying, 300))},
				{delivery(t, prog(job, 2, events.PhaseCopying, 200))},
				{delivery(t, zero)},
				{delivery(t, &events.ReplicationStatus{JobID: job, VMAID: "vma-1", Seq: 4, State: events.StatusFailed, BytesTransferred: 250,
					Error: &events.Failure{Code: "internal", Message: "export gone"}})},
			}
		},
		want: want{state: events.JobFailed, total: 1 << 20, done: 300, seq: 4, transitions: 2},
	}, {
		// The last progress events were lost with the bus; the failure's
		// status, published until the OMA took it, says what was written.
		name: "a failure reports what was written",
		job:  "job-failed",
		batches: func(job string) [][]bus.Delivery {
			zero := prog(job, 1, events.PhaseCopying, 0)
			zero.BytesTotal, zero.Disks = 0, nil
			return [][]bus.Delivery{
				{delivery(t, zero)},
				{delivery(t, &events.ReplicationStatus{JobID: job, VMAID: "vma-1", Seq: 7, State: events.StatusFailed, BytesTransferred: 500,
					Error: &events.Failure{Code: "internal", Message: "export gone"}})},
			}
		},
		want: want{state: events.JobFailed, total: 1 << 20, done: 500, seq: 7, transitions: 2},
	}}
	h := newHarness(t)
	ctx := t.Context()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.putJobs("vma-1", events.JobQueued, tt.job)
			for i, batch := range tt.batches(tt.job) {
				got := h.ctl.ApplyProgress(ctx, batch)
				var want []error
				if i < len(tt.results) {
					want = tt.results[i]
				}
				if len(got) != 0 && len(got) != len(batch) {
					t.Fatalf("batch %d: %d outcomes for %d events", i, len(got), len(batch))
				}
				for k := range batch {
					var g, w error
					if got != nil {
						g = got[k]
					}
					if want != nil {
						w = want[k]
					}
					if (g == nil) != (w == nil) || (g != nil && !errors.Is(g, bus.ErrPoison)) {
						t.Errorf("batch %d event %d (%s): outcome %v, want %v", i, k, batch[k].Event.Data, g, w)
					}
				}
			}
			j, err := h.ctl.Job(tt.job)
			if err != nil {
				t.Fatal(err)
			}
			got := want{state: j.State, total: j.BytesTotal, done: j.BytesDone, seq: j.LastSeq, transitions: h.transitions(tt.job)}
			for _, d := range j.Disks {
				if d.BytesTotal == 0 || d.BytesDone > d.BytesTotal {
					t.Errorf("disk %d: %d of %d bytes done", d.Key, d.BytesDone, d.BytesTotal)
				}
			}
			if got != tt.want {
				t.Errorf("job = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestProgressThroughTheBus: events published to the running OMA, many at
// once, are applied in order of their sequence; an event delivered twice
// (no Nats-Msg-Id, so the stream keeps both) applies once; poison events
// amid them are terminated, not redelivered, and the good ones all apply.
func TestProgressThroughTheBus(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	jobs := []string{"job-1", "job-2", "job-3"}
	h.putJobs("vma-1", events.JobQueued, jobs...)
	h.putJobs("vma-2", events.JobQueued, "job-vma2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publish := func(p events.Payload) {
		if _, err := h.conn.Publish(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	const last = 50
	for seq := uint64(1); seq <= last; seq++ {
		for _, job := range jobs {
			publish(prog(job, seq, events.PhaseCopying, int64(seq)))
		}
		if seq%10 == 0 {
			publish(prog("no-such-job", seq, events.PhaseCopying, 1)) // unknown job
			publish(prog("job-vma2", seq, events.PhaseCopying, 1))    // vma-1 about vma-2's job
		}
	}
	again := delivery(t, prog("job-1", last+1, events.PhaseFinalizing, 1<<20)).Event
	raw, _ := json.Marshal(again)
	for range 2 {
		if _, err := h.conn.JetStream().Publish(ctx, "godwit.progress.vma-1.job-1", raw); err != nil {
			t.Fatal(err)
		}
	}
	var cons jetstream.Consumer
	testkit.Eventually(t, "the OMA's progress consumer, made as Run starts", func() bool {
		var err error
		cons, err = h.conn.JetStream().Consumer(ctx, bus.StreamProgress, bus.OMADurable)
		return err == nil
	})
	testkit.Eventually(t, "every event settled", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	info, _ := cons.Info(ctx)
	if info.NumRedelivered != 0 {
		t.Errorf("%d events redelivered, want none: poison is terminated", info.NumRedelivered)
	}
	for _, job := range jobs {
		j, err := h.ctl.Job(job)
		if err != nil {
			t.Fatal(err)
		}
		wantState, wantDone, wantSeq, wantMoves := events.JobCopying, int64(last), uint64(last), uint64(1)
		if job == "job-1" {
			wantState, wantDone, wantSeq, wantMoves = events.JobFinalizing, 1<<20, last+1, 2
		}
		if j.State != wantState || j.BytesDone != wantDone || j.LastSeq != wantSeq {
			t.Errorf("%s: %s, %d bytes, seq %d; want %s, %d, %d", job, j.State, j.BytesDone, j.LastSeq, wantState, wantDone, wantSeq)
		}
		if n := h.transitions(job); n != wantMoves {
			t.Errorf("%s: %d lifecycle events, want %d", job, n, wantMoves)
		}
	}
	if j, _ := h.ctl.Job("job-vma2"); j.State != events.JobQueued || j.LastSeq != 0 {
		t.Errorf("another VMA's job changed: %+v", j)
	}
}

// TestProgressRedeliveredAfterAFailedCommit: while the store cannot
// commit (closed under the running OMA, as in a crash), a batch is naked,
// not lost: when the OMA is back the events are redelivered and applied
// exactly once (their ids recorded, each job moved once).
func TestProgressRedeliveredAfterAFailedCommit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.putJobs("vma-1", events.JobQueued, "job-1", "job-2", "job-3")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cons jetstream.Consumer
	testkit.Eventually(t, "the OMA's progress consumer", func() bool {
		var err error
		cons, err = h.conn.JetStream().Consumer(ctx, bus.StreamProgress, bus.OMADurable)
		return err == nil
	})
	if err := h.st.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"job-1": events.JobFinalizing, "job-2": events.JobCopying, "job-3": events.JobSnapshotting}
	var ids []string
	for job, state := range want {
		ev, err := h.conn.Publish(ctx, prog(job, 1, state, 10))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID)
	}
	testkit.Eventually(t, "a failed delivery", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.Delivered.Stream == 3 && info.AckFloor.Stream == 0
	})
	h.stop()
	h.start()
	testkit.Eventually(t, "every event acked", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.AckFloor.Stream == 3 && info.NumAckPending == 0 && info.NumPending == 0
	})
	for job, state := range want {
		j, err := h.ctl.Job(job)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != state || j.BytesDone != 10 || j.LastSeq != 1 {
			t.Errorf("%s: %s, %d bytes, seq %d; want %s, 10, 1", job, j.State, j.BytesDone, j.LastSeq, state)
		}
		if n := h.transitions(job); n != 1 {
			t.Errorf("%s: %d lifecycle events, want 1", job, n)
		}
	}
	_ = h.st.View(func(tx *bbolt.Tx) error {
		for _, id := range ids {
			if !store.Applied(tx, id) {
				t.Errorf("event %s applied but its id not recorded", id)
			}
		}
		return nil
	})
}

// TestVerifyingThroughTheBus: a job that reads its copy back moves from
// copying to verifying, and the verifying events' own bytes and rate are
// the job's, going up to the total while the copied bytes stay at theirs;
// finalizing and completion follow. Published by a VMA's connection and
// applied by the running Control, as a VMA's events are.
func TestVerifyingThroughTheBus(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.putJobs("vma-1", events.JobQueued, "job-v")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const total = 1 << 20
	verifying := func(seq uint64, done int64) *events.Progress {
		p := prog("job-v", seq, events.PhaseVerifying, total)
		p.VerifyBytesTotal, p.VerifyBytesDone, p.VerifyRateBytesPerSecond = total, done, 1<<18
		p.Disks[0].VerifyBytesTotal, p.Disks[0].VerifyBytesDone = total, done
		return p
	}
	steps := []struct {
		p         events.Payload
		state     string
		done      int64 // the job's verify_bytes_done after it
		eventRate int64
	}{
		{prog("job-v", 1, events.PhaseCopying, total/2), events.JobCopying, 0, 0},
		{prog("job-v", 2, events.PhaseCopying, total), events.JobCopying, 0, 0},
		{verifying(3, 0), events.JobVerifying, 0, 1 << 18},
		{verifying(4, total/4), events.JobVerifying, total / 4, 1 << 18},
		{verifying(5, total), events.JobVerifying, total, 1 << 18},
		{&events.ReplicationStatus{JobID: "job-v", VMAID: "vma-1", Seq: 6, State: events.StatusCompleted, BytesTransferred: total,
			Disks: []events.DiskChange{{Key: 2000, ChangeID: "52 1/1", Verified: true, Digest: "sha256:" + strings.Repeat("0", 64)}}}, events.JobCompleted, total, 0},
	}
	for i, s := range steps {
		if _, err := h.conn.Publish(ctx, s.p); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		var j store.Job
		testkit.Eventually(t, "job-v "+s.state+" after step "+strconv.Itoa(i), func() bool {
			var err error
			j, err = h.ctl.Job("job-v")
			return err == nil && j.LastSeq >= uint64(i+1) && j.State == s.state
		})
		if j.VerifyBytesDone != s.done || j.VerifyRateBytesPerSecond != s.eventRate || j.BytesDone < total/2 {
			t.Errorf("step %d: %s, %d bytes copied, %d of %d read back at %d/s; want %d read back at %d/s", i, j.State, j.BytesDone,
				j.VerifyBytesDone, j.VerifyBytesTotal, j.VerifyRateBytesPerSecond, s.done, s.eventRate)
		}
		if s.state == events.JobVerifying && (j.BytesDone != total || j.VerifyBytesTotal != total || j.Disks[0].VerifyBytesDone != s.done) {
			t.Errorf("step %d: verifying job %d of %d copied, %d to read back, disk %+v", i, j.BytesDone, j.BytesTotal, j.VerifyBytesTotal, j.Disks[0])
		}
	}
	// The lifecycle: queued -> copying -> verifying -> completed, one event each.
	if n := h.transitions("job-v"); n != 3 {
		t.Errorf("%d lifecycle events, want 3 (copying, verifying, completed)", n)
	}
}
