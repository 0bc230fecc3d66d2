package control

import (
	"context"
	"time"

	"github.com/godwit/godwit/events"
)

// newEvent wraps a lifecycle payload in an envelope from the OMA.
func (c *Control) newEvent(p events.Payload) (events.Event, error) {
	return events.New("/godwit/oma", p, c.cfg.Now())
}

// kick asks flushLoop to publish the outbox soon, without waiting for it.
func (c *Control) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// flushLoop publishes the outbox when kicked, and every 2 seconds for
// events whose publish failed (the bus was down).
func (c *Control) flushLoop(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.wake:
		}
		if err := c.flush(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("publish lifecycle events", "err", err)
		}
	}
}

// flush publishes what waits in the outbox. Nats-Msg-Id makes a repeat of
// an event that was published but not removed harmless.
func (c *Control) flush(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	pending, err := c.store.Outbox()
	if err != nil {
		return err
	}
	for _, p := range pending {
		if _, err := c.bus.PublishEvent(ctx, p.Event); err != nil {
			return err
		}
		if err := c.store.Sent(p); err != nil {
			return err
		}
	}
	return nil
}

// publishSoon publishes the outbox now; what fails stays for flushLoop.
func (c *Control) publishSoon(ctx context.Context) {
	if err := c.flush(ctx); err != nil {
		c.log.Warn("publish lifecycle events; retrying", "err", err)
	}
}
