package queue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/outbox"
	"github.com/godwit/godwit/oma/queue"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/seal"
)

// Shape of the dispatch benchmark.
const (
	benchJobs     = 10_000
	benchVMAs     = 50
	benchCapacity = 4
	benchHosts    = 100
)

// BenchmarkDispatch10000 runs the OMA's queue over 10,000 queued jobs and
// 50 simulated VMAs of capacity 4 (NATS clients of the real embedded server
// that take each command and complete its job at once), with the real store
// and outbox: the queue dispatches as slots free up until every job ran. It
// reports the dispatch decisions per second and the time from a freed slot
// (a job's end committed) to the next command reaching that VMA, p50 and
// p99. Goals: 2,000 decisions/s, p99 under 50 ms.
//
// The jobs' ends are committed by one applier, in batches, as the OMA's
// status consumer does: calling the queue's Remove, as a job's final
// transition does, and dispatching within the same transaction when no
// pass holds the queue (Hold, DispatchIn).
func BenchmarkDispatch10000(b *testing.B) {
	for range b.N {
		r := runDispatch(b, false)
		b.ReportMetric(r.perSecond, "decisions/s")
		b.ReportMetric(float64(r.p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkDispatchBare10000 is BenchmarkDispatch10000's peer: the same
// VMAs, store, outbox and bus, without the queue. Each job's end writes
// the next command of its VMA to the outbox in the transaction that
// records the end (the least a dispatcher can do: no limits, no order,
// no pass), so the difference is what the queue costs.
func BenchmarkDispatchBare10000(b *testing.B) {
	for range b.N {
		r := runDispatch(b, true)
		b.ReportMetric(r.perSecond, "decisions/s")
		b.ReportMetric(float64(r.p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms")
	}
}

type dispatchResult struct {
	perSecond float64
	p50, p99  time.Duration
}

func runDispatch(b *testing.B, bare bool) dispatchResult {
	b.StopTimer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := b.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	srv := bustest.StartServer(b, filepath.Join(dir, "nats"), bus.Access{})
	conn := bustest.ConnectOMA(b, srv)
	out := outbox.New(st, conn, nil)
	q := queue.New(queue.Config{Source: "/godwit/oma"}, st, out)

	// The VMAs, a vCenter of 100 ESXi hosts, and the jobs, all queued.
	kp, err := seal.NewKeyPair()
	if err != nil {
		b.Fatal(err)
	}
	sealed, err := seal.Seal(seal.EncodeKey(kp.Public), []byte("pw"))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	next := map[string][]events.ReplicateCommand{} // bare: each VMA's commands not yet sent
	send := func(tx *bbolt.Tx, vma string) error {
		cmds := next[vma]
		if len(cmds) == 0 {
			return nil
		}
		next[vma] = cmds[1:]
		ev, err := events.New("/godwit/oma", &cmds[0], time.Now())
		if err != nil {
			return err
		}
		return store.Enqueue(tx, ev)
	}
	err = st.Update(func(tx *bbolt.Tx) error {
		for v := range benchVMAs {
			if err := store.PutVMA(tx, store.VMA{ID: vmaName(v), LastSeen: &now, Load: &events.VMALoad{MaxJobs: benchCapacity}}); err != nil {
				return err
			}
		}
		if err := store.PutVCenter(tx, store.VCenter{Name: "vc", Host: "vc.example.com",
			Limits: store.SourceLimits{VCenter: benchVMAs * benchCapacity, ESXiHost: 4, Datastore: 8}}); err != nil {
			return err
		}
		for i := range benchJobs {
			id := fmt.Sprintf("job-%05d", i)
			vma := vmaName(i % benchVMAs)
			j := store.Job{ID: id, VMAID: vma, VM: events.VMRef{ID: fmt.Sprintf("vm-%d", i), Path: fmt.Sprintf("/dc/vm/vm-%d", i)},
				VCenter: "vc.example.com", ReplicationType: events.ReplicationInitial, State: events.JobQueued,
				ESXiHost: fmt.Sprintf("esx-%d", i%benchHosts), Datastores: []string{fmt.Sprintf("ds-%d", i%(benchHosts/2))},
				CreatedAt: now, UpdatedAt: now}
			if err := store.PutJob(tx, j); err != nil {
				return err
			}
			cmd := events.ReplicateCommand{JobID: id, VMAID: vma, VCenter: "vc.example.com", Username: "u", Password: sealed,
				VMPaths: []string{j.VM.Path}, OMAURL: "http://localhost:8082", ReplicationType: j.ReplicationType}
			if bare {
				next[vma] = append(next[vma], cmd)
				continue
			}
			err := q.Enqueue(tx, store.QueueEntry{JobID: id, VMAID: vma, ReplicationType: j.ReplicationType, VCenter: j.VCenter,
				ESXiHost: j.ESXiHost, Datastores: j.Datastores, QueuedAt: now.Add(time.Duration(i)), Command: cmd})
			if err != nil {
				return err
			}
		}
		if bare { // every VMA's first slots
			for v := range benchVMAs {
				for range benchCapacity {
					if err := send(tx, vmaName(v)); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}

	// The applier: jobs' ends, committed in batches.
	type end struct {
		job, vma string
	}
	ends := make(chan end, benchJobs)
	var mu sync.Mutex
	freed := map[string][]time.Time{}    // per VMA, when each slot freed
	commands := map[string][]time.Time{} // per VMA, when each command came
	received := 0
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			var batch []end
			select {
			case <-ctx.Done():
				return
			case e := <-ends:
				batch = append(batch, e)
			}
			for len(batch) < 256 {
				select {
				case e := <-ends:
					batch = append(batch, e)
					continue
				default:
				}
				break
			}
			apply := func(held bool) error {
				return st.Update(func(tx *bbolt.Tx) error {
					var ended []string
					for _, e := range batch {
						j, err := store.GetJob(tx, e.job)
						if err != nil {
							return err
						}
						j.State = events.JobCompleted
						if err := store.PutJob(tx, j); err != nil {
							return err
						}
						if bare {
							if err := send(tx, e.vma); err != nil {
								return err
							}
						} else if err := q.Remove(tx, e.job); err != nil {
							return err
						}
						ended = append(ended, e.job)
					}
					if held {
						if err := q.DispatchIn(tx, ended); err != nil {
							return err
						}
					}
					tx.OnCommit(func() {
						at := time.Now()
						mu.Lock()
						for _, e := range batch {
							freed[e.vma] = append(freed[e.vma], at)
						}
						mu.Unlock()
					})
					return nil
				})
			}
			var err error
			if bare {
				err = apply(false)
			} else {
				err = q.Hold(apply)
			}
			if err != nil && ctx.Err() == nil {
				b.Error(err)
				return
			}
			if bare {
				out.Kick()
			}
		}
	})
	// The VMAs: each takes its commands and completes the job at once.
	for v := range benchVMAs {
		vma := vmaName(v)
		c := bustest.ConnectOMA(b, srv)
		subj, err := subject.ReplicateCommand(vma)
		if err != nil {
			b.Fatal(err)
		}
		_, err = c.NATS().Subscribe(subj, func(m *nats.Msg) {
			at := time.Now()
			var ev events.Event
			var cmd events.ReplicateCommand
			if err := json.Unmarshal(m.Data, &ev); err == nil {
				err = ev.Decode(&cmd)
			}
			if err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			commands[vma] = append(commands[vma], at)
			received++
			if received == benchJobs {
				close(done)
			}
			mu.Unlock()
			ends <- end{job: cmd.JobID, vma: vma}
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.NATS().Flush(); err != nil {
			b.Fatal(err)
		}
	}

	b.StartTimer()
	start := time.Now()
	wg.Go(func() { out.Run(ctx) })
	if !bare {
		wg.Go(func() { _ = q.Run(ctx) })
	}
	out.Kick()
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		b.Fatalf("%d of %d commands in 10 minutes", received, benchJobs)
	}
	took := time.Since(start)
	b.StopTimer()
	cancel()
	wg.Wait()

	// A slot freed on a VMA is taken by the next command to that VMA: the
	// first capacity commands took the initial slots.
	var lat []time.Duration
	for vma, cmds := range commands {
		fs := freed[vma]
		for i, f := range fs {
			k := i + benchCapacity
			if k >= len(cmds) {
				break
			}
			lat = append(lat, cmds[k].Sub(f))
		}
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no slot was freed and taken again")
	}
	return dispatchResult{perSecond: float64(benchJobs) / took.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100]}
}

func vmaName(i int) string { return fmt.Sprintf("vma-%02d", i+1) }
