package jobs

import (
	"context"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/store"
)

// Allocation answers a VMA's export request for one of its jobs. Its
// errors name no field: the VMA shows their message as it is.
func (m *Manager) Allocation(_ context.Context, subj string, _ []byte) (any, error) {
	vmaID, jobID, err := subject.ParseExportRequest(subj)
	if err != nil {
		return nil, err
	}
	j, err := m.activeJobOf(vmaID, jobID)
	if err != nil {
		return nil, err
	}
	a := events.ExportAllocation{JobID: j.ID, VM: j.VM, ReplicationType: j.ReplicationType, State: j.State,
		Attempt: max(j.Attempt, 1), Snapshot: j.Snapshot}
	for _, d := range j.Disks {
		ad := events.AllocatedDisk{Key: d.Key, Label: d.Label, CapacityBytes: d.CapacityBytes, Export: d.Export, BaseChangeID: d.BaseChangeID}
		if j.Snapshot != "" {
			ad.Checkpoint, ad.PlannedBytes = d.Checkpoint, d.BytesTotal
		}
		a.Disks = append(a.Disks, ad)
	}
	return a, nil
}

func (m *Manager) exportDir(jobID string) string {
	return filepath.Join(m.cfg.DataDir, "exports", jobID)
}

// releaseLater releases a cancelled job's export after CancelGrace,
// unless releaseSoon does first.
func (m *Manager) releaseLater(jobID string) {
	m.releaseMu.Lock()
	defer m.releaseMu.Unlock()
	if m.runDone || m.releasing[jobID] != nil {
		return
	}
	m.releasing[jobID] = time.AfterFunc(m.cfg.CancelGrace, func() { m.releaseSoon(jobID) })
}

// releaseSoon releases a job's export now if releaseLater was waiting to.
func (m *Manager) releaseSoon(jobID string) {
	m.releaseMu.Lock()
	t := m.releasing[jobID]
	delete(m.releasing, jobID)
	m.releaseMu.Unlock()
	if t != nil {
		t.Stop()
		m.release(jobID)
	}
}

// StopReleases stops the waiting releases as the OMA stops; the next Restore
// releases the exports of jobs that are final.
func (m *Manager) StopReleases() {
	m.releaseMu.Lock()
	defer m.releaseMu.Unlock()
	m.runDone = true
	for id, t := range m.releasing {
		t.Stop()
		delete(m.releasing, id)
	}
}

// release stops a job's nbdkit and deletes its lease; the volumes stay.
func (m *Manager) release(jobID string) {
	m.exports.Stop(jobID)
	err := m.store.Update(func(tx *bbolt.Tx) error { return store.DeleteLease(tx, jobID) })
	if err != nil {
		m.log.Error("release lease", "job", jobID, "err", err)
	}
}

// activeJobOf returns job jobID when it is VMA vmaID's and active. Another
// VMA's job is said like an unknown one: a VMA learns nothing of others'
// jobs.
func (m *Manager) activeJobOf(vmaID, jobID string) (store.Job, error) {
	j, err := m.Job(jobID)
	if err == nil && j.VMAID != vmaID {
		if moved := movedFrom(j, vmaID); moved != nil {
			return store.Job{}, moved
		}
	}
	if fault.KindOf(err) == fault.NotFound || err == nil && j.VMAID != vmaID {
		return store.Job{}, fault.Errorf(fault.NotFound, "", "no replication job %q for VMA %s", jobID, vmaID)
	}
	if err != nil {
		return store.Job{}, err
	}
	if !Active(j.State) {
		return store.Job{}, fault.Errorf(fault.Conflict, "", "job %s is %s", jobID, j.State)
	}
	return j, nil
}
