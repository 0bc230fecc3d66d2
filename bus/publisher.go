package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/events"
)

// DefaultPublishWindow is how many events a Publisher has in flight at
// most, unless told otherwise.
const DefaultPublishWindow = 64

// DefaultPublishStall is how long a Publisher goes without any
// acknowledgement, while its connection counts itself connected, before it
// makes the connection reconnect, unless told otherwise.
const DefaultPublishStall = 10 * time.Second

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Window is how many events are in flight at most (0 means
	// DefaultPublishWindow).
	Window int
	// Stall is how long the publisher waits without any acknowledgement
	// on a connection that counts itself connected before it reconnects
	// (0 means DefaultPublishStall): a server that has stopped answering
	// one connection's publishes, as a node once did here after an
	// accounts reload, is left for another.
	Stall time.Duration
}

// publisherAckWait is how long a Publisher waits for an event's
// acknowledgement before it sends the event, and those after it, again:
// a publish sent to a node that went away is never answered.
const publisherAckWait = time.Second

// Publisher publishes events without waiting for each acknowledgement, so
// that a replicated stream's round trip is paid once per window rather
// than once per event. It keeps at most a window of events unacknowledged
// and sends each again, with its id (stored once), until JetStream
// acknowledges it: through reconnections and the loss of a node. Events
// are sent in the order published and their OnAck callbacks run in that
// order. It is safe for concurrent use; Close it.
type Publisher struct {
	c      *Conn
	stall  time.Duration
	window chan struct{} // one token per event in flight
	wake   chan struct{}
	done   chan struct{}
	cancel context.CancelFunc

	mu      sync.Mutex
	queue   []*outgoing // unacknowledged, in order
	flushed *sync.Cond  // signalled when the queue empties
	err     error       // why the publisher stopped
}

// outgoing is one event a Publisher has yet to have acknowledged.
type outgoing struct {
	msg    *nats.Msg
	id     string
	onAck  func()
	future jetstream.PubAckFuture // nil until sent (again)
	sentAt time.Time
	first  time.Time // when it was first sent
}

// NewPublisher returns a publisher on the connection.
func (c *Conn) NewPublisher(cfg PublisherConfig) *Publisher {
	if cfg.Window <= 0 {
		cfg.Window = DefaultPublishWindow
	}
	if cfg.Stall <= 0 {
		cfg.Stall = DefaultPublishStall
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{c: c, stall: cfg.Stall, window: make(chan struct{}, cfg.Window), wake: make(chan struct{}, 1), done: make(chan struct{}), cancel: cancel}
	p.flushed = sync.NewCond(&p.mu)
	go p.run(ctx)
	return p
}

// Publish wraps pl in a new event from the connection's source and queues
// it, as PublishEvent does; it returns the event.
func (p *Publisher) Publish(ctx context.Context, pl events.Payload, onAck func()) (events.Event, error) {
	ev, err := events.New(p.c.source, pl, p.c.now())
	if err != nil {
		return events.Event{}, fmt.Errorf("publish: %w", err)
	}
	return ev, p.PublishEvent(ctx, ev, onAck)
}

// PublishEvent validates ev and queues it; it waits only while the window
// is full, or until ctx ends. onAck, when not nil, is called once
// JetStream has stored the event (from the publisher's goroutine: keep it
// short).
func (p *Publisher) PublishEvent(ctx context.Context, ev events.Event, onAck func()) error {
	_, subj, err := decode(ev)
	if err != nil {
		return fmt.Errorf("publish %s: %w", ev.Type, err)
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("publish %s: encode: %w", ev.Type, err)
	}
	if err := p.c.validator.CheckEvent(raw); err != nil {
		return fmt.Errorf("publish %s: %w", ev.Type, err)
	}
	msg := &nats.Msg{Subject: subj, Data: raw, Header: nats.Header{}}
	msg.Header.Set("Content-Type", ContentType)
	select {
	case p.window <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", ev.Type, ctx.Err())
	case <-p.done:
		return fmt.Errorf("publish %s: the publisher is closed", ev.Type)
	}
	p.mu.Lock()
	p.queue = append(p.queue, &outgoing{msg: msg, id: ev.ID, onAck: onAck})
	p.mu.Unlock()
	p.poke()
	return nil
}

// Flush waits until every event published so far is acknowledged, or ctx
// ends.
func (p *Publisher) Flush(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.flushed.Broadcast()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) > 0 && ctx.Err() == nil && p.err == nil {
		p.flushed.Wait()
	}
	if len(p.queue) == 0 {
		return nil
	}
	if p.err != nil {
		return p.err
	}
	return fmt.Errorf("flush %d events: %w", len(p.queue), ctx.Err())
}

// Pending returns how many events wait for their acknowledgement.
func (p *Publisher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// Close stops the publisher; the events not yet acknowledged are dropped
// (Flush first to keep them).
func (p *Publisher) Close() {
	p.cancel()
	<-p.done
}

func (p *Publisher) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run sends what is queued and collects the acknowledgements in order.
func (p *Publisher) run(ctx context.Context) {
	defer close(p.done)
	defer func() {
		p.mu.Lock()
		p.err = errors.New("the publisher is closed")
		p.flushed.Broadcast()
		p.mu.Unlock()
	}()
	retry := 50 * time.Millisecond
	quiet := time.Now() // since the last acknowledgement or reconnection
	for {
		p.mu.Lock()
		for _, o := range p.queue { // send what is not in flight, in order
			if o.future != nil {
				continue
			}
			f, err := p.c.js.PublishMsgAsync(o.msg, jetstream.WithMsgID(o.id))
			if err != nil {
				break // disconnected, or too many in flight: later
			}
			o.future, o.sentAt = f, time.Now()
			if o.first.IsZero() {
				o.first = o.sentAt
			}
		}
		var head *outgoing
		if len(p.queue) > 0 {
			head = p.queue[0]
		}
		p.mu.Unlock()

		if head == nil || head.future == nil {
			wait := retry
			if head == nil {
				wait = time.Hour
			}
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			case <-time.After(wait):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-head.future.Ok():
			if head.onAck != nil { // before Flush may return
				head.onAck()
			}
			p.mu.Lock()
			p.queue = p.queue[1:]
			if len(p.queue) == 0 {
				p.flushed.Broadcast()
			}
			p.mu.Unlock()
			<-p.window
			retry = 50 * time.Millisecond
			quiet = time.Now()
		case err := <-head.future.Err():
			p.c.log.Debug("publish again", "subject", head.msg.Subject, "id", head.id, "err", err)
			p.resend(ctx, &retry)
		case <-time.After(time.Until(head.sentAt.Add(publisherAckWait))):
			p.c.log.Debug("publish again: no acknowledgement", "subject", head.msg.Subject, "id", head.id, "after", publisherAckWait)
			since := quiet
			if head.first.After(since) {
				since = head.first
			}
			if time.Since(since) >= p.stall && p.c.nc.IsConnected() {
				p.c.log.Warn("no acknowledgement on this connection: reconnecting", "server", p.c.nc.ConnectedServerName(),
					"for", time.Since(since).Round(time.Millisecond), "pending", p.Pending())
				if err := p.c.nc.ForceReconnect(); err != nil {
					p.c.log.Warn("reconnect", "err", err)
				}
				quiet = time.Now()
			}
			p.resend(ctx, &retry)
		}
	}
}

// resend marks every queued event as not sent, so that the head and those
// after it go again in order, after a growing pause.
func (p *Publisher) resend(ctx context.Context, retry *time.Duration) {
	p.mu.Lock()
	for _, o := range p.queue {
		o.future = nil
	}
	p.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-time.After(*retry):
	}
	*retry = min(2**retry, time.Second)
}
