package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/events"
)

// Handler handles one validated event. Returning nil acks the message, so
// a handler must commit what the event changes before it returns. An error
// naks it for redelivery after a growing delay; an error wrapping ErrPoison
// terminates it. A handler may see an event again after a crash or a lost
// ack, and must then change nothing.
type Handler func(ctx context.Context, ev events.Event, p events.Payload) error

// ackTimeout bounds an ack, which is sent even when the consumer is
// stopping: the handler has committed, and a lost ack means a redelivery.
const ackTimeout = 5 * time.Second

// Consume reads the durable consumer of stream until ctx ends, calling h
// for one message at a time. A message that is not a valid event, or whose
// payload does not belong on the subject it came on (a VMA speaking for
// another), is logged and terminated without reaching h, and the consumer
// goes on. While h runs, JetStream is told every third of the consumer's
// ack wait that the message is in progress, so long work is not
// redelivered meanwhile. Consume returns nil when ctx ends, after the
// handler it is running has returned and its message was acked.
func (c *Conn) Consume(ctx context.Context, stream, durable string, h Handler) error {
	log := c.log.With("stream", stream, "consumer", durable)
	if c.confined {
		beat := progressInterval(consumerAckWait)
		return c.pull(ctx, stream, durable, func(msg jetstream.Msg) { c.handle(ctx, msg, h, beat, log) }, log)
	}
	var (
		running sync.Mutex // held while a message is handled
		stopped bool       // under running: deliver nothing more
	)
	defer func() {
		running.Lock()
		stopped = true
		running.Unlock()
	}()
	return c.consumeDurable(ctx, stream, durable, log, func(cons jetstream.Consumer, onErr func(error)) (jetstream.ConsumeContext, error) {
		beat := progressInterval(cons.CachedInfo().Config.AckWait)
		return cons.Consume(func(msg jetstream.Msg) {
			running.Lock()
			defer running.Unlock()
			if stopped {
				return // not acked: redelivered to the next consumer
			}
			c.handle(ctx, msg, h, beat, log)
		}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { onErr(err) }))
	}, func(cc jetstream.ConsumeContext) {
		cc.Stop()
		<-cc.Closed()
	})
}

// startFunc starts consuming cons, reporting the errors of the
// consumption to onErr.
type startFunc func(cons jetstream.Consumer, onErr func(error)) (jetstream.ConsumeContext, error)

// consumeDurable runs start on the durable consumer of stream until ctx
// ends, then stop. When the server says the durable is gone (deleted by
// an operator or a tool), consumeDurable logs it, creates it again with
// the configuration it had, delivering from the message after the last one
// this connection acked, and starts again.
func (c *Conn) consumeDurable(ctx context.Context, stream, durable string, log *slog.Logger, start startFunc, stop func(jetstream.ConsumeContext)) error {
	var cons jetstream.Consumer
	err := retryAPI(ctx, func() (err error) { cons, err = c.js.Consumer(ctx, stream, durable); return err })
	if err != nil && ctx.Err() != nil {
		return nil // stopped before it began
	}
	if err != nil {
		return fmt.Errorf("consume %s/%s: %w", stream, durable, err)
	}
	cfg := cons.CachedInfo().Config
	for {
		gone := make(chan struct{})
		var once sync.Once
		cc, err := start(cons, func(err error) {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				once.Do(func() { close(gone) })
				return
			}
			log.Warn("consume", "err", err)
		})
		if err != nil {
			return fmt.Errorf("consume %s/%s: %w", stream, durable, err)
		}
		select {
		case <-ctx.Done():
			stop(cc)
			return nil
		case <-gone:
		}
		stop(cc)
		if cons, err = c.recreate(ctx, stream, cfg, log); err != nil {
			return nil // ctx ended
		}
	}
}

// recreate creates the durable of cfg again on stream, delivering from the
// message after the last this connection acked, and retries every second
// until it exists or ctx ends. A durable created meanwhile by someone else
// is taken as it is.
func (c *Conn) recreate(ctx context.Context, stream string, cfg jetstream.ConsumerConfig, log *slog.Logger) (jetstream.Consumer, error) {
	if seq := c.lastAcked(stream, cfg.Durable); seq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, seq+1, nil
	}
	log.Error("durable consumer was deleted; creating it again", "from_stream_seq", cfg.OptStartSeq)
	for {
		cons, err := c.js.CreateConsumer(ctx, stream, cfg)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = c.js.Consumer(ctx, stream, cfg.Durable)
		}
		if err == nil {
			log.Info("durable consumer created again")
			return cons, nil
		}
		log.Warn("create durable consumer again", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// noteHandled records that msg of a durable was handled, its changes
// committed, for recreate; its ack is sent next.
func (c *Conn) noteHandled(msg jetstream.Msg) { c.note(msg, false) }

// noteFailed records that msg of a durable was naked: until it is
// handled, recreate delivers from it again.
func (c *Conn) noteFailed(msg jetstream.Msg) { c.note(msg, true) }

// handledSeqs is what a connection handled of one durable.
type handledSeqs struct {
	last   uint64              // the highest stream sequence handled
	failed map[uint64]struct{} // naked, not handled since
}

func (c *Conn) note(msg jetstream.Msg, failed bool) {
	md, err := msg.Metadata()
	if err != nil {
		return
	}
	if !failed && c.onHandled != nil {
		c.onHandled(md.Stream, md.Timestamp)
	}
	key := md.Stream + "/" + md.Consumer
	c.ackedMu.Lock()
	defer c.ackedMu.Unlock()
	if c.acked == nil {
		c.acked = make(map[string]*handledSeqs)
	}
	h := c.acked[key]
	if h == nil {
		h = &handledSeqs{failed: map[uint64]struct{}{}}
		c.acked[key] = h
	}
	seq := md.Sequence.Stream
	if failed {
		h.failed[seq] = struct{}{}
		return
	}
	delete(h.failed, seq)
	h.last = max(h.last, seq)
}

// lastAcked is the stream sequence up to which every message of durable
// on stream that this connection was given was handled, 0 when none.
func (c *Conn) lastAcked(stream, durable string) uint64 {
	c.ackedMu.Lock()
	defer c.ackedMu.Unlock()
	h := c.acked[stream+"/"+durable]
	if h == nil {
		return 0
	}
	last := h.last
	for seq := range h.failed {
		last = min(last, seq-1)
	}
	return last
}

// progressInterval is how often a running handler's message is reported in
// progress: a third of the ack wait (30s when unknown), at least 10ms.
func progressInterval(ackWait time.Duration) time.Duration {
	if ackWait <= 0 {
		ackWait = 30 * time.Second
	}
	return max(ackWait/3, 10*time.Millisecond)
}

func (c *Conn) handle(ctx context.Context, msg jetstream.Msg, h Handler, beat time.Duration, log *slog.Logger) {
	ev, p, ok := c.check(msg, log)
	if !ok {
		return
	}
	err := inProgress([]jetstream.Msg{msg}, beat, func() error { return call(ctx, h, ev, p) })
	switch {
	case err == nil:
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
		defer cancel()
		c.noteHandled(msg)
		if err := msg.DoubleAck(actx); err != nil {
			log.Warn("ack", "id", ev.ID, "err", err)
		}
	case errors.Is(err, ErrPoison):
		log.Error("terminated poison event", "id", ev.ID, "type", ev.Type, "err", err)
		_ = msg.TermWithReason(err.Error())
	default:
		delay := redeliveryDelay(msg)
		log.Warn("event failed; redelivering", "id", ev.ID, "type", ev.Type, "in", delay, "err", err)
		c.noteFailed(msg)
		_ = msg.NakWithDelay(delay)
	}
}

// check validates msg as an event whose payload belongs on the subject it
// came on. A message that fails is logged and terminated, and ok is false.
func (c *Conn) check(msg jetstream.Msg, log *slog.Logger) (ev events.Event, p events.Payload, ok bool) {
	ev, err := c.validator.ValidateEvent(msg.Data())
	if err != nil {
		log.Error("rejected invalid event", "subject", msg.Subject(), "err", err)
		_ = msg.TermWithReason("invalid event")
		return ev, nil, false
	}
	p, subj, err := decode(ev)
	if err != nil || subj != msg.Subject() {
		log.Error("rejected event on a foreign subject", "subject", msg.Subject(), "want", subj, "id", ev.ID, "err", err)
		_ = msg.TermWithReason("subject mismatch")
		return ev, nil, false
	}
	return ev, p, true
}

// call runs h, turning a panic into an error so one bad event cannot stop
// the consumer.
func call(ctx context.Context, h Handler, ev events.Event, p events.Payload) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return h(ctx, ev, p)
}

// redeliveryDelay is 1s after the first failure, doubling up to 30s.
func redeliveryDelay(msg jetstream.Msg) time.Duration {
	n := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		n = md.NumDelivered
	}
	d := time.Second
	for i := uint64(1); i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}
