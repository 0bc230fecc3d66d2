package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// Restore brings back the jobs' exports after a restart: the exports of
// active jobs on their leased ports, and the release of leases whose jobs
// have ended. A job whose exports cannot be served again (a missing export
// or volume, a failing nbdkit) is failed with the reason in its last
// error; the others are restored. The lifecycle events it writes wait in
// the outbox.
func (m *Manager) Restore(ctx context.Context) error {
	var leases []store.Lease
	byID := map[string]store.Job{}
	err := m.store.View(func(tx *bbolt.Tx) error {
		var err error
		if leases, err = store.Leases(tx); err != nil {
			return err
		}
		for _, l := range leases {
			if j, err := store.GetJob(tx, l.JobID); err == nil {
				byID[l.JobID] = j
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	for _, l := range leases {
		j, ok := byID[l.JobID]
		if !ok || !Active(j.State) {
			m.release(l.JobID)
			continue
		}
		if err := m.serveAgain(ctx, l); err != nil {
			m.log.Error("job cannot get its exports back: failing it", "job", l.JobID, "port", l.Port, "err", err)
			if err := m.fail(l.JobID, err.Error()); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			m.release(l.JobID)
			continue
		}
		m.log.Info("restored exports", "job", l.JobID, "port", l.Port)
	}
	return nil
}

// serveAgain serves a lease's exports again, after checking that each is
// still there.
func (m *Manager) serveAgain(ctx context.Context, l store.Lease) error {
	for _, name := range l.Exports {
		if _, err := os.Stat(filepath.Join(l.Dir, name)); err != nil {
			return fmt.Errorf("restore export %s of job %s: %w", name, l.JobID, err)
		}
	}
	if err := m.exports.Serve(ctx, l.JobID, l.Port, l.Dir); err != nil {
		return fmt.Errorf("restore exports of job %s on port %d: %w", l.JobID, l.Port, err)
	}
	return nil
}

// fail moves an active job to failed, saying why.
func (m *Manager) fail(jobID, why string) error {
	return m.store.Update(func(tx *bbolt.Tx) error {
		j, err := store.GetJob(tx, jobID)
		if err != nil {
			return err
		}
		if _, err := m.transition(tx, &j, events.JobFailed, why); err != nil {
			return err
		}
		return store.PutJob(tx, j)
	})
}
