package control

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// applyOnce runs apply in one transaction with the event's id, unless the
// event was applied before; the id is recorded in the same transaction.
func (c *Control) applyOnce(ev events.Event, apply func(tx *bbolt.Tx) error) error {
	return c.store.Update(func(tx *bbolt.Tx) error { return c.onceIn(tx, ev, apply) })
}

// onceIn runs apply within tx and records the event's id there, unless the
// event was applied before, in an earlier transaction or earlier in tx.
func (c *Control) onceIn(tx *bbolt.Tx, ev events.Event, apply func(tx *bbolt.Tx) error) error {
	if store.Applied(tx, ev.ID) {
		return nil
	}
	if err := apply(tx); err != nil {
		return err
	}
	return store.MarkApplied(tx, ev.ID, c.cfg.Now())
}

// pruneLoop forgets, every PruneEvery by the Config's clock, the ids of
// applied events older than AppliedMaxAge, and the pages of discoveries
// that never completed. It reads that clock every second of real time (or
// every PruneEvery/60 when shorter), so an injected clock is followed.
func (c *Control) pruneLoop(ctx context.Context) {
	t := time.NewTicker(max(min(c.cfg.PruneEvery/60, time.Second), time.Millisecond))
	defer t.Stop()
	last := c.started // Restore pruned then
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := c.cfg.Now(); now.Sub(last) >= c.cfg.PruneEvery {
			last = now
			if err := c.prune(); err != nil {
				c.log.Warn("prune applied event ids", "err", err)
			}
		}
	}
}

// prune forgets what is older than AppliedMaxAge: the ids of applied
// events, the pages of incomplete discoveries and the discover requests.
func (c *Control) prune() error {
	before := c.cfg.Now().Add(-c.cfg.AppliedMaxAge)
	n, err := c.store.PruneApplied(before)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	p, err := c.store.PruneDiscoverPages(before)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	r, err := c.store.PruneDiscoverRequests(before)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	if n > 0 || p > 0 || r > 0 {
		c.log.Info("pruned", "event_ids", n, "discover_pages", p, "discover_requests", r)
	}
	return nil
}
