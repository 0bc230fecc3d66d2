package control

import (
	"context"

	"github.com/godwit/godwit/bus"
)

// ApplyProgress exposes the progress consumer's batch handler to the tests.
func (c *Control) ApplyProgress(ctx context.Context, batch []bus.Delivery) []error {
	return c.applyProgress(ctx, batch)
}
