package control

import (
	"context"
	"fmt"
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
	if err := c.Manager.Restore(ctx); err != nil {
		return err
	}
	return c.outbox.Flush(ctx)
}
