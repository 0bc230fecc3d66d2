// Package outbox publishes the lifecycle events and commands the OMA's
// changes wrote to the store's outbox, in the transaction of the change:
// after it commits, so none is lost and none is published for a change
// that did not happen.
package outbox

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// publisher publishes events in order; *bus.Conn satisfies it.
type publisher interface {
	// PublishEvents publishes evs in order and returns how many of the
	// first are acknowledged.
	PublishEvents(ctx context.Context, evs []events.Event) (int, error)
}

// Outbox publishes what waits in a store's outbox. It is safe for
// concurrent use; Run it once.
type Outbox struct {
	store *store.Store
	bus   publisher
	log   *slog.Logger

	flushMu sync.Mutex    // serializes flushes
	last    store.Pending // the last event published, under flushMu
	wake    chan struct{}

	sentMu   sync.Mutex
	sent     []store.Pending // published, to remove from the store
	sentWake chan struct{}
}

// New returns an Outbox publishing st's outbox on conn. A nil log discards.
func New(st *store.Store, conn publisher, log *slog.Logger) *Outbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Outbox{store: st, bus: conn, log: log, wake: make(chan struct{}, 1), sentWake: make(chan struct{}, 1)}
}

// Kick asks Run to publish the outbox soon, without waiting for it.
func (o *Outbox) Kick() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Run publishes the outbox when kicked, and every 2 seconds for events
// whose publish failed (the bus was down), until ctx ends. Beside it, it
// removes what was published from the store.
func (o *Outbox) Run(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { o.removeSent(ctx) })
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-o.wake:
		}
		if err := o.Flush(ctx); err != nil && ctx.Err() == nil {
			o.log.Warn("publish lifecycle events", "err", err)
		}
	}
}

// sentBatch is how many events one flush publishes at once, without
// waiting for each ack.
const sentBatch = 256

// Flush publishes what waits in the outbox, in order (the streams keep the
// order of the changes), sentBatch events at a time without waiting for
// each ack. What was acknowledged is removed from the store beside it
// (Run), so that the next events go out without waiting for a commit: the
// flush goes on after the last event it published. Nats-Msg-Id makes a
// repeat of an event that was published but not removed (a crash in
// between) harmless. It returns the first failure; what was not published
// stays for the next flush.
func (o *Outbox) Flush(ctx context.Context) error {
	o.flushMu.Lock()
	defer o.flushMu.Unlock()
	for {
		batch, err := o.store.OutboxAfter(o.last, sentBatch)
		if err != nil || len(batch) == 0 {
			return err
		}
		evs := make([]events.Event, len(batch))
		for i, p := range batch {
			evs[i] = p.Event
		}
		n, err := o.bus.PublishEvents(ctx, evs)
		if n > 0 {
			o.last = batch[n-1]
			o.sentMu.Lock()
			o.sent = append(o.sent, batch[:n]...)
			o.sentMu.Unlock()
			select {
			case o.sentWake <- struct{}{}:
			default:
			}
		}
		if err != nil {
			return err
		}
	}
}

// removeSent removes the published events from the store, all that
// gathered in one transaction, until ctx ends; then once more.
func (o *Outbox) removeSent(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
		case <-o.sentWake:
		}
		o.sentMu.Lock()
		sent := o.sent
		o.sent = nil
		o.sentMu.Unlock()
		if len(sent) > 0 {
			if err := o.store.Sent(sent...); err != nil {
				// Published: a restart publishes them again, harmlessly.
				o.log.Warn("remove published events from the outbox", "events", len(sent), "err", err)
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// PublishSoon publishes the outbox now; what fails stays for Run.
func (o *Outbox) PublishSoon(ctx context.Context) {
	if err := o.Flush(ctx); err != nil {
		o.log.Warn("publish lifecycle events; retrying", "err", err)
	}
}
