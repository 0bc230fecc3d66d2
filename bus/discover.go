package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
)

// ErrNotPublished is wrapped by Discover's error when the request could
// not be published (the bus is down): nothing was asked.
var ErrNotPublished = errors.New("not published")

// Discover publishes a discover request and waits until ctx ends for its
// result, every page of it (see events.DiscoverPages), and returns the
// whole result, which may carry a Failure. The result's events are
// validated as Consume validates them. Errors wrap ErrNotPublished when the
// request was not published, or ctx's error when no complete result came
// in time.
func (c *Conn) Discover(ctx context.Context, dr *events.DiscoverRequest) (events.DiscoverResult, error) {
	resultSubject, err := subject.DiscoverResult(dr.VMAID, dr.RequestID)
	if err != nil {
		return events.DiscoverResult{}, fmt.Errorf("discover: %w", err)
	}
	w, err := c.Watch(resultSubject) // before publishing: no result can come first
	if err != nil {
		return events.DiscoverResult{}, fmt.Errorf("discover: %w", err)
	}
	defer w.Close()
	if _, err := c.Publish(ctx, dr); err != nil {
		return events.DiscoverResult{}, fmt.Errorf("discover: %w: %w", ErrNotPublished, err)
	}
	var pages events.DiscoverPages
	for !pages.Complete() {
		_, p, err := w.Next(ctx)
		if err != nil {
			return events.DiscoverResult{}, fmt.Errorf("discover: result of %s: %w", dr.RequestID, err)
		}
		page, ok := p.(*events.DiscoverResult)
		if !ok {
			c.log.Warn("ignored an event on a discover result subject", "subject", resultSubject, "type", fmt.Sprintf("%T", p))
			continue
		}
		pages.Add(*page)
	}
	return pages.Result(), nil
}
