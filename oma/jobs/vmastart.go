package jobs

import (
	"context"
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/store"
)

// StartReply is the OMA's answer to a VMA's start request: the job's state
// after it, queued as a rule.
type StartReply struct {
	JobID string `json:"job_id"`
	State string `json:"state"`
}

// StartFromVMA answers a VMA's start request (subject.StartRequest), made
// when its API is asked to start one of its jobs (POST /api/v1/replicate):
// the request carries the job's replicate command, its password sealed to
// the VMA. A pending job of that VMA for the VM the command names is put
// in the OMA's queue like one started through the OMA's API, and its
// command goes to the VMA when a slot is free under every limit. Asking
// again for a job already started is answered with its state. The OMA
// cannot open the password: such a job cannot move to another VMA.
func (m *Manager) StartFromVMA(_ context.Context, subj string, data []byte) (any, error) {
	vmaID, jobID, err := subject.ParseStartRequest(subj)
	if err != nil {
		return nil, err
	}
	var cmd events.ReplicateCommand
	if err := json.Unmarshal(data, &cmd); err != nil {
		return nil, fmt.Errorf("%w: start request for job %s: %v", bus.ErrPoison, jobID, err)
	}
	if cmd.JobID != jobID || cmd.VMAID != vmaID {
		return nil, fault.Errorf(fault.Invalid, "", "the start request on %s carries job %s of VMA %s", subj, cmd.JobID, cmd.VMAID)
	}
	if _, err := m.newEvent(&cmd); err != nil { // a command that makes a valid event
		return nil, fault.Errorf(fault.Invalid, "", "job %s's command: %v", jobID, err)
	}
	var reply StartReply
	err = m.store.Update(func(tx *bbolt.Tx) error {
		j, err := store.GetJob(tx, jobID)
		if err == nil && j.VMAID != vmaID {
			if moved := movedFrom(j, vmaID); moved != nil {
				return moved
			}
			err = store.ErrNotFound
		}
		if err != nil {
			return fault.Errorf(fault.NotFound, "", "no replication job %q for VMA %s", jobID, vmaID)
		}
		reply = StartReply{JobID: j.ID, State: j.State}
		if j.State != events.JobPending {
			if Final(j.State) {
				return fault.Errorf(fault.Conflict, "", "job %s is %s", jobID, j.State)
			}
			return nil // started already: a repeated request
		}
		if len(cmd.VMPaths) != 1 || cmd.VMPaths[0] != j.VM.Path {
			return fault.Errorf(fault.Conflict, "", "job %s replicates %s, not %v", jobID, j.VM.Path, cmd.VMPaths)
		}
		if _, err := m.transition(tx, &j, events.JobQueued, ""); err != nil {
			return err
		}
		reply.State = j.State
		err = m.cfg.Queue.Enqueue(tx, store.QueueEntry{
			JobID: j.ID, VMAID: j.VMAID, ReplicationType: j.ReplicationType, Priority: j.Priority, RateLimit: j.RateLimit,
			VCenter: j.VCenter, ESXiHost: j.ESXiHost, Datastores: j.Datastores, QueuedAt: j.UpdatedAt, Command: cmd,
		})
		if err != nil {
			return err
		}
		return store.PutJob(tx, j)
	})
	if err != nil {
		return nil, err
	}
	m.outbox.Kick()
	return reply, nil
}
