package appliance

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/vma/tunnel"
)

// outages carries the tunnel's outages to the bus. The tunnel reports an
// outage when its connection is back, but the bus rides on that connection
// and may take a while longer to reconnect: outages wait here, in order,
// until they are published.
type outages struct {
	mu      sync.Mutex
	pending []tunnel.Outage
	wake    chan struct{}
}

func newOutages() *outages { return &outages{wake: make(chan struct{}, 1)} }

// add queues o; it never blocks (tunnel.Config.OnRestore).
func (q *outages) add(o tunnel.Outage) {
	q.mu.Lock()
	q.pending = append(q.pending, o)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// next returns the oldest queued outage, if any.
func (q *outages) next() (tunnel.Outage, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) == 0 {
		return tunnel.Outage{}, false
	}
	return q.pending[0], true
}

// done drops the oldest queued outage.
func (q *outages) done() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pending = q.pending[1:]
}

// publish publishes each queued outage as a TunnelOutage event of vmaID,
// retrying one that fails (the same event, so that a lost ack does not store
// it twice) every retry, until ctx ends.
func (q *outages) publish(ctx context.Context, conn *bus.Conn, vmaID string, retry time.Duration, log *slog.Logger) {
	for {
		for {
			o, ok := q.next()
			if !ok {
				break
			}
			if !publishOutage(ctx, conn, vmaID, o, retry, log) {
				return
			}
			q.done()
		}
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
	}
}

// publishOutage publishes o until it is stored or ctx ends, and reports
// whether it was stored.
func publishOutage(ctx context.Context, conn *bus.Conn, vmaID string, o tunnel.Outage, retry time.Duration, log *slog.Logger) bool {
	ev, err := conn.Publish(ctx, &events.TunnelOutage{
		VMAID: vmaID, LostAt: o.LostAt.UTC(), RestoredAt: o.RestoredAt.UTC(),
		DownSeconds: o.RestoredAt.Sub(o.LostAt).Seconds(), Cause: o.Err, Attempts: o.Attempts, Reconnects: o.Reconnects,
	})
	for err != nil {
		if ev.ID == "" { // the event could not be made: retrying cannot help
			log.Error("tunnel outage event", "err", err)
			return true
		}
		log.Warn("tunnel outage event not published yet", "err", err, "retry", retry)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(retry):
		}
		_, err = conn.PublishEvent(ctx, ev)
	}
	return true
}
