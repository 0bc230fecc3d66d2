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

// applyProgress applies progress and replication status to their job.
// Counters move only with a higher sequence number; the state moves only
// forward. A final job never changes.
func (c *Control) applyProgress(ctx context.Context, ev events.Event, p events.Payload) error {
	var jobID, vmaID string
	switch v := p.(type) {
	case *events.Progress:
		jobID, vmaID = v.JobID, v.VMAID
	case *events.ReplicationStatus:
		jobID, vmaID = v.JobID, v.VMAID
	default:
		return fmt.Errorf("%w: %s on the progress consumer", bus.ErrPoison, ev.Type)
	}
	var final, ended bool // the job became final; its VMA reports the end of a job final before
	err := c.applyOnce(ev, func(tx *bbolt.Tx) error {
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
			// Late news about a finished job; the end of a cancelled one
			// lets its export go.
			if s, ok := p.(*events.ReplicationStatus); ok && s.State != events.StatusAccepted && s.State != events.StatusRunning {
				ended = true
			}
			return nil
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
	if err != nil {
		return err
	}
	if final {
		c.release(jobID)
	}
	if ended {
		c.releaseSoon(jobID)
	}
	c.kick()
	return nil
}

func (c *Control) progress(tx *bbolt.Tx, j *store.Job, p *events.Progress) error {
	if p.Seq > j.LastSeq {
		j.LastSeq = p.Seq
		j.BytesTotal, j.BytesDone, j.RateBytesPerSecond = p.BytesTotal, p.BytesDone, p.RateBytesPerSecond
		j.AverageRateBytesPerSecond = p.AverageRateBytesPerSecond
		for _, dp := range p.Disks {
			for i := range j.Disks {
				if j.Disks[i].Key == dp.Key {
					j.Disks[i].BytesTotal, j.Disks[i].BytesDone = dp.BytesTotal, dp.BytesDone
					j.Disks[i].RateBytesPerSecond = dp.RateBytesPerSecond
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
		for i := range j.Disks {
			j.Disks[i].RateBytesPerSecond = 0
		}
	}
	return nil
}
