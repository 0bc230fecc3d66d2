package control

import (
	"context"
	"time"

	"github.com/godwit/godwit/oma/store"
)

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
	p, err := c.store.Prune(c.cfg.Now().Add(-c.cfg.AppliedMaxAge))
	if err != nil {
		return err
	}
	if p != (store.Pruned{}) {
		c.log.Info("pruned", "event_ids", p.EventIDs, "discover_pages", p.DiscoverPages, "discover_requests", p.DiscoverRequests)
	}
	return nil
}
