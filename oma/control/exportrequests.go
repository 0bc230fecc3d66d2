package control

import (
	"context"
	"path/filepath"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/store"
)

// allocation answers a VMA's export request for one of its jobs.
func (c *Control) allocation(_ context.Context, subj string, _ []byte) (any, error) {
	vmaID, jobID, err := subject.ParseExportRequest(subj)
	if err != nil {
		return nil, err
	}
	j, err := c.Job(jobID)
	if err != nil {
		return nil, err
	}
	if j.VMAID != vmaID {
		// Said like an unknown job: a VMA learns nothing of others' jobs.
		return nil, errorf(NotFound, "id", "no replication job %q for VMA %s", jobID, vmaID)
	}
	if !jobs.Active(j.State) {
		return nil, errorf(Conflict, "id", "job %s is %s", jobID, j.State)
	}
	a := events.ExportAllocation{JobID: j.ID, VM: j.VM, ReplicationType: j.ReplicationType, State: j.State}
	for _, d := range j.Disks {
		a.Disks = append(a.Disks, events.AllocatedDisk{Key: d.Key, Label: d.Label, CapacityBytes: d.CapacityBytes, Export: d.Export, BaseChangeID: d.BaseChangeID})
	}
	return a, nil
}

func (c *Control) exportDir(jobID string) string {
	return filepath.Join(c.cfg.DataDir, "exports", jobID)
}

// release stops a job's nbdkit and deletes its lease; the volumes stay.
func (c *Control) release(jobID string) {
	c.exports.Stop(jobID)
	err := c.store.Update(func(tx *bbolt.Tx) error { return store.DeleteLease(tx, jobID) })
	if err != nil {
		c.log.Error("release lease", "job", jobID, "err", err)
	}
}
