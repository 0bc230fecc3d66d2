package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/events"
)

// ContentType is the Content-Type header of every published event: a
// CloudEvent in structured JSON mode.
const ContentType = "application/cloudevents+json"

// Publish wraps p in a new event from this connection's source, validates
// it, and publishes it to its stream. It returns the event, whose ID a
// caller may keep to retry with PublishEvent.
func (c *Conn) Publish(ctx context.Context, p events.Payload) (events.Event, error) {
	ev, err := events.New(c.source, p, c.now())
	if err != nil {
		return events.Event{}, fmt.Errorf("publish: %w", err)
	}
	subj, err := p.NATSSubject()
	if err != nil {
		return events.Event{}, fmt.Errorf("publish: %w", err)
	}
	if _, err := c.publish(ctx, ev, subj); err != nil {
		return ev, err
	}
	return ev, nil
}

// NewEvent wraps p in a new event from this connection's source, to be
// published (again) with PublishEvent.
func (c *Conn) NewEvent(p events.Payload) (events.Event, error) {
	ev, err := events.New(c.source, p, c.now())
	if err != nil {
		return events.Event{}, fmt.Errorf("new %s event: %w", p.EventType(), err)
	}
	return ev, nil
}

// PublishEvent validates ev and publishes it on its payload's subject with
// Nats-Msg-Id set to ev.ID, so publishing the same event again (a retry
// after a lost ack) is stored once: the ack then reports Duplicate. Without
// a deadline on ctx it waits 5s for the ack.
func (c *Conn) PublishEvent(ctx context.Context, ev events.Event) (*jetstream.PubAck, error) {
	_, subj, err := decode(ev)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", ev.Type, err)
	}
	return c.publish(ctx, ev, subj)
}

// publish validates ev and publishes it on subj.
func (c *Conn) publish(ctx context.Context, ev events.Event, subj string) (*jetstream.PubAck, error) {
	raw, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("publish %s: encode: %w", ev.Type, err)
	}
	if err := c.validator.CheckEvent(raw); err != nil {
		return nil, fmt.Errorf("publish %s: %w", ev.Type, err)
	}
	msg := &nats.Msg{Subject: subj, Data: raw, Header: nats.Header{}}
	msg.Header.Set("Content-Type", ContentType)
	ack, err := c.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID))
	// While the server reloads its accounts (a VMA registered), a publish
	// from a VMA's account may find nobody to store it for a moment: the
	// service import is gone until the reload ends, and the publish has no
	// responders. The message id makes trying again safe.
	retryUntil := time.Now().Add(publishRetry)
	if d, ok := ctx.Deadline(); ok {
		retryUntil = d
	}
	for err != nil && errors.Is(err, jetstream.ErrNoStreamResponse) &&
		time.Now().Add(publishRetryWait).Before(retryUntil) {
		select {
		case <-ctx.Done():
		case <-time.After(publishRetryWait):
		}
		ack, err = c.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID))
	}
	if err != nil {
		return nil, fmt.Errorf("publish %s on %s: %w", ev.Type, subj, err)
	}
	return ack, nil
}

// How long, and how often, a publish nobody stored is tried again when
// ctx has no deadline.
const (
	publishRetry     = 5 * time.Second
	publishRetryWait = 50 * time.Millisecond
)

// decode returns the payload of ev and the NATS subject it belongs on.
func decode(ev events.Event) (events.Payload, string, error) {
	p, ok := events.NewPayload(ev.Type)
	if !ok {
		return nil, "", fmt.Errorf("unknown event type %q", ev.Type)
	}
	if err := ev.Decode(p); err != nil {
		return nil, "", err
	}
	subj, err := p.NATSSubject()
	if err != nil {
		return nil, "", err
	}
	return p, subj, nil
}

// PublishEvents publishes evs in order without waiting for each ack
// (JetStream stores the messages of one connection in the order sent),
// each with Nats-Msg-Id set to its ID, then waits for the acks. It returns
// how many of the first events are acknowledged, in a row: those after a
// failure may or may not be stored, and publishing them again is harmless.
// Without a deadline on ctx it waits 5s for the acks.
func (c *Conn) PublishEvents(ctx context.Context, evs []events.Event) (int, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	var failed error
	for _, ev := range evs {
		_, subj, err := decode(ev)
		if err != nil {
			failed = fmt.Errorf("publish %s: %w", ev.Type, err)
			break
		}
		raw, err := json.Marshal(ev)
		if err != nil {
			failed = fmt.Errorf("publish %s: encode: %w", ev.Type, err)
			break
		}
		if err := c.validator.CheckEvent(raw); err != nil {
			failed = fmt.Errorf("publish %s: %w", ev.Type, err)
			break
		}
		msg := &nats.Msg{Subject: subj, Data: raw, Header: nats.Header{}}
		msg.Header.Set("Content-Type", ContentType)
		f, err := c.js.PublishMsgAsync(msg, jetstream.WithMsgID(ev.ID))
		if err != nil {
			failed = fmt.Errorf("publish %s on %s: %w", ev.Type, subj, err)
			break
		}
		futures = append(futures, f)
	}
	wait := time.After(publishRetry)
	if d, ok := ctx.Deadline(); ok {
		wait = time.After(time.Until(d))
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if errors.Is(err, jetstream.ErrNoStreamResponse) {
				// Nobody stored it (an account reload): the sync publish
				// tries again.
				if _, err := c.PublishEvent(ctx, evs[i]); err == nil {
					continue
				}
			}
			return i, fmt.Errorf("publish %s: %w", evs[i].Type, err)
		case <-ctx.Done():
			return i, ctx.Err()
		case <-wait:
			return i, fmt.Errorf("publish %s: no ack in time", evs[i].Type)
		}
	}
	return len(futures), failed
}
