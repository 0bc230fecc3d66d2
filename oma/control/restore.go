package control

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/store"
)

// Restore brings back what the OMA had before a restart: NATS access for
// every registered VMA with its consumers, the exports of active jobs on
// their leased ports, and the release of leases whose jobs have ended. A
// job whose exports cannot be served again (a missing export or volume,
// a failing nbdkit) is failed with the reason in its last error; the
// others are restored.
func (c *Control) Restore(ctx context.Context) error {
	if err := c.SyncAccess(ctx); err != nil {
		return err
	}
	if err := c.prune(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	var leases []store.Lease
	byID := map[string]store.Job{}
	err := c.store.View(func(tx *bbolt.Tx) error {
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
		if !ok || !jobs.Active(j.State) {
			c.release(l.JobID)
			continue
		}
		if err := c.serveAgain(ctx, l); err != nil {
			c.log.Error("job cannot get its exports back: failing it", "job", l.JobID, "port", l.Port, "err", err)
			if err := c.fail(l.JobID, err.Error()); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			c.release(l.JobID)
			continue
		}
		c.log.Info("restored exports", "job", l.JobID, "port", l.Port)
	}
	return c.outbox.Flush(ctx)
}

// serveAgain serves a lease's exports again, after checking that each is
// still there.
func (c *Control) serveAgain(ctx context.Context, l store.Lease) error {
	for _, name := range l.Exports {
		if _, err := os.Stat(filepath.Join(l.Dir, name)); err != nil {
			return fmt.Errorf("restore export %s of job %s: %w", name, l.JobID, err)
		}
	}
	if err := c.exports.Serve(ctx, l.JobID, l.Port, l.Dir); err != nil {
		return fmt.Errorf("restore exports of job %s on port %d: %w", l.JobID, l.Port, err)
	}
	return nil
}

// fail moves an active job to failed, saying why.
func (c *Control) fail(jobID, why string) error {
	return c.store.Update(func(tx *bbolt.Tx) error {
		j, err := store.GetJob(tx, jobID)
		if err != nil {
			return err
		}
		if _, err := c.transition(tx, &j, events.JobFailed, why); err != nil {
			return err
		}
		return store.PutJob(tx, j)
	})
}
