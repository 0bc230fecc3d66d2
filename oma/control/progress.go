package control

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/store"
)

// applyProgress applies a batch of progress and replication status events
// to their jobs in one transaction, each event's id recorded in it, so a
// batch costs one commit. Counters move only with a higher sequence
// number; the state moves only forward. A final job never changes. When an
// event of the batch is poison (an unknown job, another VMA's job, a bad
// phase or state), the transaction is dropped and the events are applied
// one by one, so the poison one is terminated and the others applied. Any
// other failure fails the whole batch, to be redelivered. Exports of jobs
// that ended are released after the commit.
func (c *Control) applyProgress(ctx context.Context, batch []bus.Delivery) []error {
	var ended []string
	err := c.store.Update(func(tx *bbolt.Tx) error {
		ended = ended[:0]
		for _, d := range batch {
			final, err := c.progressOnce(tx, d.Event, d.Payload)
			if err != nil {
				return err
			}
			if final {
				ended = append(ended, jobOf(d.Payload))
			}
		}
		return nil
	})
	switch {
	case err == nil:
		c.released(ended)
		return nil
	case errors.Is(err, bus.ErrPoison):
		return c.applyProgressEach(batch)
	}
	out := make([]error, len(batch))
	for i := range out {
		out[i] = fmt.Errorf("apply %d progress events: %w", len(batch), err)
	}
	return out
}

// applyProgressEach applies each event of batch in a transaction of its own
// and returns each one's outcome.
func (c *Control) applyProgressEach(batch []bus.Delivery) []error {
	out := make([]error, len(batch))
	var ended []string
	for i, d := range batch {
		var final bool
		out[i] = c.store.Update(func(tx *bbolt.Tx) error {
			var err error
			final, err = c.progressOnce(tx, d.Event, d.Payload)
			return err
		})
		if out[i] == nil && final {
			ended = append(ended, jobOf(d.Payload))
		}
	}
	c.released(ended)
	return out
}

// released releases the exports of the jobs that ended, then wakes the
// outbox for the lifecycle events just committed.
func (c *Control) released(ended []string) {
	for _, id := range ended {
		c.release(id)
	}
	c.kick()
}

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
// was applied before, and records its id. final is whether it ended its
// job.
func (c *Control) progressOnce(tx *bbolt.Tx, ev events.Event, p events.Payload) (final bool, err error) {
	var jobID, vmaID string
	switch v := p.(type) {
	case *events.Progress:
		jobID, vmaID = v.JobID, v.VMAID
	case *events.ReplicationStatus:
		jobID, vmaID = v.JobID, v.VMAID
	default:
		return false, fmt.Errorf("%w: %s on the progress consumer", bus.ErrPoison, ev.Type)
	}
	err = c.onceIn(tx, ev, func(tx *bbolt.Tx) error {
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
		if jobs.Final(j.State) {
			return nil // late news about a finished job
		}
		switch v := p.(type) {
		case *events.Progress:
			err = c.progress(tx, &j, v)
		case *events.ReplicationStatus:
			err = c.status(tx, &j, v)
		}
		if err != nil {
			return err
		}
		final = jobs.Final(j.State)
		return store.PutJob(tx, j)
	})
	return final, err
}

func (c *Control) progress(tx *bbolt.Tx, j *store.Job, p *events.Progress) error {
	if p.Seq > j.LastSeq {
		j.LastSeq = p.Seq
		j.BytesTotal, j.BytesDone, j.RateBytesPerSecond = p.BytesTotal, p.BytesDone, p.RateBytesPerSecond
		for _, dp := range p.Disks {
			for i := range j.Disks {
				if j.Disks[i].Key == dp.Key {
					j.Disks[i].BytesTotal, j.Disks[i].BytesDone = dp.BytesTotal, dp.BytesDone
				}
			}
		}
		j.UpdatedAt = c.cfg.Now().UTC()
	}
	to, err := jobs.FromPhase(p.Phase)
	if err != nil {
		return fmt.Errorf("%w: %v", bus.ErrPoison, err)
	}
	_, err = c.transition(tx, j, to, "")
	return err
}

func (c *Control) status(tx *bbolt.Tx, j *store.Job, s *events.ReplicationStatus) error {
	to, err := jobs.FromStatus(s.State)
	if err != nil {
		return fmt.Errorf("%w: %v", bus.ErrPoison, err)
	}
	if s.Seq > j.LastSeq {
		j.LastSeq = s.Seq
	}
	why := ""
	if s.Error != nil {
		why = s.Error.Message
	}
	moved, err := c.transition(tx, j, to, why)
	if err != nil || !moved {
		return err
	}
	if to == events.JobCompleted {
		for _, dc := range s.Disks {
			for i := range j.Disks {
				if j.Disks[i].Key == dc.Key {
					j.Disks[i].ChangeID = dc.ChangeID
					j.Disks[i].BytesDone = j.Disks[i].BytesTotal
				}
			}
		}
		j.BytesDone = j.BytesTotal
		j.RateBytesPerSecond = 0
	}
	return nil
}
