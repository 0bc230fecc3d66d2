package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/godwit/godwit/events"
)

// Watch is a live subscription to events on a subject, as they are
// published; see Conn.Watch.
type Watch struct {
	c   *Conn
	sub *nats.Subscription
}

// Watch subscribes to the events published on subj (which may hold
// wildcards) from now on, without JetStream: the way to wait for the answer
// to an event one is about to publish. Subscribe before publishing, then
// call Next. The caller must Close it.
func (c *Conn) Watch(subj string) (*Watch, error) {
	sub, err := c.nc.SubscribeSync(subj)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", subj, err)
	}
	return &Watch{c: c, sub: sub}, nil
}

// Next returns the next valid event and its decoded payload. An event that
// fails its schema, or whose payload belongs on another subject than the
// one it came on, is skipped with a log line, as Consume does. It returns an
// error wrapping ctx's error when ctx ends first.
func (w *Watch) Next(ctx context.Context) (events.Event, events.Payload, error) {
	for {
		msg, err := w.sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil && (errors.Is(err, ctxErr) || errors.Is(err, nats.ErrTimeout)) {
				err = ctxErr
			}
			return events.Event{}, nil, fmt.Errorf("wait on %s: %w", w.sub.Subject, err)
		}
		ev, err := w.c.validator.ValidateEvent(msg.Data)
		if err != nil {
			w.c.log.Error("ignored invalid event", "subject", msg.Subject, "err", err)
			continue
		}
		p, subj, err := decode(ev)
		if err != nil || subj != msg.Subject {
			w.c.log.Error("ignored event on a foreign subject", "subject", msg.Subject, "want", subj, "id", ev.ID, "err", err)
			continue
		}
		return ev, p, nil
	}
}

// Close ends the subscription.
func (w *Watch) Close() error { return w.sub.Unsubscribe() }
