package control

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// expireLoop expires the jobs pending longer than Config.PendingJobTTL,
// until ctx ends. It looks every second (by the wall clock) whether the
// next expiry is due by Now, and reads the jobs only then: at once, then
// at the earliest time a pending job can expire.
func (c *Control) expireLoop(ctx context.Context) {
	t := time.NewTicker(max(min(c.cfg.PendingJobTTL/60, time.Second), time.Millisecond))
	defer t.Stop()
	var next time.Time // zero: look at once
	for {
		if now := c.cfg.Now(); !now.Before(next) {
			due, err := c.expirePending(ctx, now)
			if err != nil {
				c.log.Warn("expire pending jobs; retrying", "err", err)
				due = now.Add(time.Second)
			}
			next = due
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
func (c *Control) expirePending(ctx context.Context, now time.Time) (time.Time, error) {
	ttl := c.cfg.PendingJobTTL
	next := now.Add(ttl)
	var due []string
	err := c.store.View(func(tx *bbolt.Tx) error {
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
		err := c.store.Update(func(tx *bbolt.Tx) error {
			j, err := store.GetJob(tx, id)
			if err != nil || j.State != events.JobPending { // started or cancelled meanwhile
				return err
			}
			if moved, err = c.transition(tx, &j, events.JobCancelled, why); err != nil || !moved {
				return err
			}
			return store.PutJob(tx, j)
		})
		if err != nil {
			return now, fmt.Errorf("expire job %s: %w", id, err)
		}
		if moved {
			c.release(id)
			c.log.Info("pending job expired", "job", id, "pending_for", ttl)
		}
	}
	if len(due) > 0 {
		c.publishSoon(ctx)
	}
	return next, nil
}
