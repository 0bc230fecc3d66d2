package jobs

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// RunExpiry expires the jobs pending longer than Config.PendingJobTTL, and
// those paused longer than Config.PauseSnapshotMax, until ctx ends. It looks every second (by the wall clock) whether the
// next expiry is due by Now, and reads the jobs only then: at once, then
// at the earliest time a pending job can expire.
func (m *Manager) RunExpiry(ctx context.Context) {
	t := time.NewTicker(max(min(m.cfg.PendingJobTTL/60, m.cfg.PauseSnapshotMax/60, time.Second), time.Millisecond))
	defer t.Stop()
	var next time.Time // zero: look at once
	for {
		if now := m.cfg.Now(); !now.Before(next) {
			due, err := m.expirePending(ctx, now)
			if err != nil {
				m.log.Warn("expire pending jobs; retrying", "err", err)
				due = now.Add(time.Second)
			}
			paused, err := m.expirePaused(ctx, now)
			if err != nil {
				m.log.Warn("expire paused jobs; retrying", "err", err)
			}
			next = due
			if paused.Before(due) {
				next = paused
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// expirePending cancels every job pending since PendingJobTTL before now,
// saying it expired, and releases its export. It returns when the next
// pending job can expire: the earliest of those left, or now plus
// PendingJobTTL (a job created later expires later still).
func (m *Manager) expirePending(ctx context.Context, now time.Time) (time.Time, error) {
	ttl := m.cfg.PendingJobTTL
	next := now.Add(ttl)
	var due []string
	err := m.store.View(func(tx *bbolt.Tx) error {
		all, err := store.Jobs(tx)
		for _, j := range all {
			if j.State != events.JobPending {
				continue
			}
			if at := j.CreatedAt.Add(ttl); !at.After(now) {
				due = append(due, j.ID)
			} else if at.Before(next) {
				next = at
			}
		}
		return err
	})
	if err != nil {
		return now, fmt.Errorf("list pending jobs: %w", err)
	}
	for _, id := range due {
		why := fmt.Sprintf("expired: pending for %s without being started (-pending-job-ttl); its NBD port is released", ttl)
		moved := false
		err := m.store.Update(func(tx *bbolt.Tx) error {
			j, err := store.GetJob(tx, id)
			if err != nil || j.State != events.JobPending { // started or cancelled meanwhile
				return err
			}
			if moved, err = m.transition(tx, &j, events.JobCancelled, why); err != nil || !moved {
				return err
			}
			return store.PutJob(tx, j)
		})
		if err != nil {
			return now, fmt.Errorf("expire job %s: %w", id, err)
		}
		if moved {
			m.release(id)
			m.log.Info("pending job expired", "job", id, "pending_for", ttl)
		}
	}
	if len(due) > 0 {
		m.outbox.PublishSoon(ctx)
	}
	return next, nil
}
