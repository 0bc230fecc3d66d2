package control

import (
	"context"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/fault"
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
		return nil, fault.Errorf(fault.NotFound, "id", "no replication job %q for VMA %s", jobID, vmaID)
	}
	if !jobs.Active(j.State) {
		return nil, fault.Errorf(fault.Conflict, "id", "job %s is %s", jobID, j.State)
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

// releaseLater releases a cancelled job's export after CancelGrace,
// unless releaseSoon does first.
func (c *Control) releaseLater(jobID string) {
	c.releaseMu.Lock()
	defer c.releaseMu.Unlock()
	if c.runDone || c.releasing[jobID] != nil {
		return
	}
	c.releasing[jobID] = time.AfterFunc(c.cfg.CancelGrace, func() { c.releaseSoon(jobID) })
}

// releaseSoon releases a job's export now if releaseLater was waiting to.
func (c *Control) releaseSoon(jobID string) {
	c.releaseMu.Lock()
	t := c.releasing[jobID]
	delete(c.releasing, jobID)
	c.releaseMu.Unlock()
	if t != nil {
		t.Stop()
		c.release(jobID)
	}
}

// stopReleases stops the waiting releases as Run ends; the next Restore
// releases the exports of jobs that are final.
func (c *Control) stopReleases() {
	c.releaseMu.Lock()
	defer c.releaseMu.Unlock()
	c.runDone = true
	for id, t := range c.releasing {
		t.Stop()
		delete(c.releasing, id)
	}
}

// release stops a job's nbdkit and deletes its lease; the volumes stay.
func (c *Control) release(jobID string) {
	c.exports.Stop(jobID)
	err := c.store.Update(func(tx *bbolt.Tx) error { return store.DeleteLease(tx, jobID) })
	if err != nil {
		c.log.Error("release lease", "job", jobID, "err", err)
	}
}
