package jobs

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// ApplyProgress applies a batch of progress and replication status events
// to their jobs in one transaction, each event's id recorded in it, so a
// batch costs one commit. Counters move only with a higher sequence
// number; the state moves only forward. A final job never changes. When an
// event of the batch is poison (an unknown job, another VMA's job, a bad
// phase or state), the transaction is dropped and the events are applied
// one by one, so the poison one is terminated and the others applied. Any
// other failure fails the whole batch, to be redelivered. Exports of jobs
// that ended are released after the commit.
func (m *Manager) ApplyProgress(ctx context.Context, batch []bus.Delivery) []error {
	var ends []endedJob
	// The jobs that end free their slots: the queue dispatches the next in
	// the same transaction when it can. A dispatch that fails leaves it to
	// the queue's own pass: the progress is applied without it.
	apply := func(dispatch bool) error {
		return m.store.Update(func(tx *bbolt.Tx) error {
			ends = ends[:0]
			var freed []string
			for _, d := range batch {
				end, err := m.progressOnce(tx, d.Event, d.Payload)
				if err != nil {
					return err
				}
				if end != goesOn {
					ends = append(ends, endedJob{jobOf(d.Payload), end})
				}
				if end == ended {
					freed = append(freed, jobOf(d.Payload))
				}
			}
			if dispatch && len(freed) > 0 {
				if err := m.cfg.Queue.DispatchIn(tx, freed); err != nil {
					return fmt.Errorf("%w: %w", errDispatchIn, err)
				}
			}
			return nil
		})
	}
	err := m.cfg.Queue.Hold(apply)
	if errors.Is(err, errDispatchIn) {
		m.log.Error("dispatch as jobs end: left to the queue's pass", "err", err)
		err = apply(false)
	}
	switch {
	case err == nil:
		m.released(ends)
		return nil
	case errors.Is(err, bus.ErrPoison):
		return m.applyProgressEach(batch)
	}
	out := make([]error, len(batch))
	for i := range out {
		out[i] = fmt.Errorf("apply %d progress events: %w", len(batch), err)
	}
	return out
}

// applyProgressEach applies each event of batch in a transaction of its own
// and returns each one's outcome.
func (m *Manager) applyProgressEach(batch []bus.Delivery) []error {
	out := make([]error, len(batch))
	var ends []endedJob
	for i, d := range batch {
		var end ending
		out[i] = m.store.Update(func(tx *bbolt.Tx) error {
			var err error
			end, err = m.progressOnce(tx, d.Event, d.Payload)
			return err
		})
		if out[i] == nil && end != goesOn {
			ends = append(ends, endedJob{jobOf(d.Payload), end})
		}
	}
	m.released(ends)
	return out
}

// released releases the exports of the jobs that ended, and those kept
// for cancelled jobs whose VMA reported their end, then wakes the outbox
// for the lifecycle events just committed.
func (m *Manager) released(ends []endedJob) {
	for _, e := range ends {
		if e.end == ended {
			m.release(e.id)
		} else {
			m.releaseSoon(e.id)
		}
	}
	m.outbox.Kick()
}

// errDispatchIn marks a failed dispatch within a progress transaction.
var errDispatchIn = errors.New("dispatch in the progress transaction")

// jobOf returns the job a progress or status event is about.
func jobOf(p events.Payload) string {
	switch v := p.(type) {
	case *events.Progress:
		return v.JobID
	case *events.ReplicationStatus:
		return v.JobID
	}
	return ""
}

// progressOnce applies one progress or status event within tx, unless it
// was applied before, and records its id. It says whether the event ended
// its job, or reported the end of a job that was final already.
func (m *Manager) progressOnce(tx *bbolt.Tx, ev events.Event, p events.Payload) (end ending, err error) {
	var jobID, vmaID string
	switch v := p.(type) {
	case *events.Progress:
		jobID, vmaID = v.JobID, v.VMAID
	case *events.ReplicationStatus:
		jobID, vmaID = v.JobID, v.VMAID
	case *events.PowerReport:
		return goesOn, store.OnceIn(tx, ev, m.cfg.Now(), func(tx *bbolt.Tx) error { return powerReport(tx, ev, v) })
	default:
		return goesOn, fmt.Errorf("%w: %s on the progress consumer", bus.ErrPoison, ev.Type)
	}
	err = store.OnceIn(tx, ev, m.cfg.Now(), func(tx *bbolt.Tx) error {
		j, err := store.GetJob(tx, jobID)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s for unknown job %s", bus.ErrPoison, ev.Type, jobID)
		}
		if err != nil {
			return err
		}
		if j.VMAID != vmaID {
			return fmt.Errorf("%w: %s for job %s from VMA %s, not its own", bus.ErrPoison, ev.Type, jobID, vmaID)
		}
		if Final(j.State) {
			// Late news about a finished job; the end of a cancelled one
			// lets its export go.
			if s, ok := p.(*events.ReplicationStatus); ok && s.State != events.StatusAccepted && s.State != events.StatusRunning {
				end = stoppedLate
			}
			return nil
		}
		switch v := p.(type) {
		case *events.Progress:
			err = m.progress(tx, &j, v)
		case *events.ReplicationStatus:
			err = m.status(tx, &j, v)
		}
		if err != nil {
			return err
		}
		if Final(j.State) {
			end = ended
		}
		return store.PutJob(tx, j)
	})
	return end, err
}

// ending is what an applied event did to its job.
type ending int

const (
	goesOn      ending = iota
	ended              // the job became final: its export is released
	stoppedLate        // its VMA reports the end of a job final already (cancelled): the export kept for it is released
)

// endedJob is a job whose export an applied event lets go.
type endedJob struct {
	id  string
	end ending
}

// progress applies a progress event. A job's figures never go back: bytes
// done only grow (a copy that starts again from its last checkpoint redoes
// bytes), and a total is taken only once known (a VMA that resumes a job
// reports it copying before it has planned it again, with nothing).
func (m *Manager) progress(tx *bbolt.Tx, j *store.Job, p *events.Progress) error {
	if p.Seq > j.LastSeq {
		j.LastSeq = p.Seq
		// Checkpoints only grow within a snapshot; a copy from another
		// snapshot (the first was lost) starts again, figures and all.
		fresh := p.Snapshot != "" && p.Snapshot != j.Snapshot
		again := fresh && j.Snapshot != ""
		if fresh {
			j.Snapshot = p.Snapshot
		}
		if again {
			j.BytesDone = 0
		}
		total, done := keep(j.BytesTotal, j.BytesDone, p.BytesTotal, p.BytesDone)
		j.BytesTotal, j.BytesDone, j.RateBytesPerSecond = total, done, p.RateBytesPerSecond
		j.AverageRateBytesPerSecond = p.AverageRateBytesPerSecond
		j.VerifyBytesTotal, j.VerifyBytesDone, j.VerifyRateBytesPerSecond = p.VerifyBytesTotal, p.VerifyBytesDone, p.VerifyRateBytesPerSecond
		for _, dp := range p.Disks {
			for i := range j.Disks {
				if d := &j.Disks[i]; d.Key == dp.Key {
					if again {
						d.BytesDone = 0
					}
					d.BytesTotal, d.BytesDone = keep(d.BytesTotal, d.BytesDone, dp.BytesTotal, dp.BytesDone)
					d.RateBytesPerSecond = dp.RateBytesPerSecond
					d.Checkpoint = max(d.Checkpoint, dp.Checkpoint)
					if fresh {
						d.Checkpoint = dp.Checkpoint
					}
					d.VerifyBytesTotal, d.VerifyBytesDone = dp.VerifyBytesTotal, dp.VerifyBytesDone
				}
			}
		}
		j.UpdatedAt = m.cfg.Now().UTC()
	}
	to, err := FromPhase(p.Phase)
	if err != nil {
		return fmt.Errorf("%w: %v", bus.ErrPoison, err)
	}
	from := j.State
	moved, err := m.transition(tx, j, to, "")
	if err != nil || !moved {
		return err
	}
	return m.adopt(tx, j, from)
}

// adopt counts job j, which just moved from state from, in the queue as
// running when its VMA started it on its own (the VMA's /replicate): it
// moved out of pending without the OMA starting it.
func (m *Manager) adopt(tx *bbolt.Tx, j *store.Job, from string) error {
	if from != events.JobPending || Final(j.State) {
		return nil
	}
	now := m.cfg.Now().UTC()
	j.DispatchedAt = &now
	return m.cfg.Queue.Adopt(tx, store.QueueEntry{JobID: j.ID, VMAID: j.VMAID, ReplicationType: j.ReplicationType,
		VCenter: j.VCenter, ESXiHost: j.ESXiHost, Datastores: j.Datastores, QueuedAt: now, DispatchedAt: &now})
}

// keep returns a job's or disk's figures after a report of newTotal and
// newDone: the total once known (not zero), done never less than before.
func keep(total, done, newTotal, newDone int64) (int64, int64) {
	if newTotal > 0 {
		total = newTotal
	}
	return total, max(done, newDone)
}

// status applies a replication status event. Its bytes transferred (what
// the VMA recorded as written) count as done when more than the progress
// said: the last progress events may have been lost with the bus.
func (m *Manager) status(tx *bbolt.Tx, j *store.Job, s *events.ReplicationStatus) error {
	to, err := FromStatus(s.State)
	if err != nil {
		return fmt.Errorf("%w: %v", bus.ErrPoison, err)
	}
	if s.Seq > j.LastSeq {
		j.LastSeq = s.Seq
	}
	j.BytesDone = max(j.BytesDone, s.BytesTransferred)
	j.BytesWritten = max(j.BytesWritten, s.BytesTransferred)
	j.ZeroBytes = max(j.ZeroBytes, s.ZeroBytes)
	why := ""
	if s.Error != nil {
		why = s.Error.Message
	}
	from := j.State
	moved, err := m.transition(tx, j, to, why)
	if err != nil || !moved {
		return err
	}
	if s.Error != nil {
		j.ErrorCode = s.Error.Code
	}
	if err := m.adopt(tx, j, from); err != nil {
		return err
	}
	if to == events.JobCompleted {
		for _, dc := range s.Disks {
			for i := range j.Disks {
				if j.Disks[i].Key == dc.Key {
					j.Disks[i].ChangeID = dc.ChangeID
					j.Disks[i].Verified, j.Disks[i].Digest, j.Disks[i].FullCopy = dc.Verified, dc.Digest, dc.FullCopy
					j.Disks[i].BytesDone = j.Disks[i].BytesTotal
				}
			}
		}
		j.BytesDone = j.BytesTotal
		j.RateBytesPerSecond, j.VerifyRateBytesPerSecond = 0, 0
		for i := range j.Disks {
			j.Disks[i].RateBytesPerSecond = 0
		}
	}
	return nil
}

// powerReport records a VMA's report of a power command the OMA sent it,
// for the cutover that waits for it. A report of a command never sent, or
// sent to another VMA, is poison; a second report of one is ignored.
func powerReport(tx *bbolt.Tx, ev events.Event, r *events.PowerReport) error {
	req, err := store.GetPowerRequest(tx, r.RequestID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %s for unknown power request %s", bus.ErrPoison, ev.Type, r.RequestID)
	}
	if err != nil {
		return err
	}
	if req.VMAID != r.VMAID {
		return fmt.Errorf("%w: %s for power request %s from VMA %s, not the one asked", bus.ErrPoison, ev.Type, r.RequestID, r.VMAID)
	}
	if req.Report != nil {
		return nil
	}
	req.Report = r
	return store.PutPowerRequest(tx, req)
}
