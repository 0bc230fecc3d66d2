package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/events"
)

// Delivery is one validated event of a batch: its envelope and its decoded
// payload.
type Delivery struct {
	Event   events.Event
	Payload events.Payload
}

// BatchHandler handles a batch of validated events, in the order the
// stream holds them, and returns one outcome per event, in the same order:
// nil acks the event, so a handler must commit what the batch changes
// before it returns; an error wrapping ErrPoison terminates it; any other
// error naks it for redelivery after a growing delay. A nil slice acks the
// whole batch; a slice of any other length than the batch naks it all. A
// handler may see an event again after a crash or a lost ack, or twice in
// one batch, and must then change nothing.
type BatchHandler func(ctx context.Context, batch []Delivery) []error

// DefaultBatch is the batch size ConsumeBatch uses when given 0.
const DefaultBatch = 256

// ConsumeBatch reads the durable consumer of stream until ctx ends, calling
// h with batches of at most size events (0 means DefaultBatch). It does not
// wait to fill a batch: h gets what has arrived by the time it is free,
// so a lone event is handled at once and, under load, the events that
// came while h ran make the next batch. Each message is checked as Consume
// checks it: one that is not a valid event, or whose payload does not
// belong on its subject, is logged and terminated without reaching h.
// While h runs, JetStream is told every third of the consumer's ack wait
// that the batch's messages are in progress. The outcomes h returns are
// sent after it returns; the acks last, confirmed by the server. Messages
// received but not yet handed to h when ctx ends are naked, to be
// redelivered at once to the next consumer, not after the ack wait. ConsumeBatch returns nil when
// ctx ends, after the batch it is running was handled and acked.
func (c *Conn) ConsumeBatch(ctx context.Context, stream, durable string, size int, h BatchHandler) error {
	if size <= 0 {
		size = DefaultBatch
	}
	log := c.log.With("stream", stream, "consumer", durable)
	var beat atomic.Int64 // the consumer's progress interval, set by start
	in := make(chan jetstream.Msg, size)
	start := func(cons jetstream.Consumer, onErr func(error)) (jetstream.ConsumeContext, error) {
		beat.Store(int64(progressInterval(cons.CachedInfo().Config.AckWait)))
		return cons.Consume(func(msg jetstream.Msg) {
			select {
			case in <- msg:
			case <-ctx.Done():
				_ = msg.Nak() // redelivered at once to the next consumer
			}
		}, jetstream.PullMaxMessages(2*size), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { onErr(err) }))
	}
	stop := func(cc jetstream.ConsumeContext) {
		cc.Drain() // what the client has buffered goes through the callback: naked
		<-cc.Closed()
	}
	consumed := make(chan error, 1)
	cctx, cancel := context.WithCancel(ctx)
	go func() { consumed <- c.consumeDurable(cctx, stream, durable, log, start, stop) }()
	defer func() {
		cancel()
		<-consumed
		for {
			select {
			case msg := <-in:
				_ = msg.Nak()
			default:
				return
			}
		}
	}()
	msgs := make([]jetstream.Msg, 0, size)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-consumed:
			consumed <- err // for the deferred wait
			return err
		case msg := <-in:
			msgs = append(msgs[:0], msg)
		}
	more:
		for len(msgs) < size {
			select {
			case msg := <-in:
				msgs = append(msgs, msg)
			default:
				break more
			}
		}
		c.handleBatch(ctx, msgs, h, time.Duration(beat.Load()), log)
	}
}

// handleBatch checks msgs, calls h with the valid ones and settles each
// message by its outcome.
func (c *Conn) handleBatch(ctx context.Context, msgs []jetstream.Msg, h BatchHandler, beat time.Duration, log *slog.Logger) {
	batch := make([]Delivery, 0, len(msgs))
	valid := make([]jetstream.Msg, 0, len(msgs))
	for _, msg := range msgs {
		ev, p, ok := c.check(msg, log)
		if !ok {
			continue
		}
		batch = append(batch, Delivery{Event: ev, Payload: p})
		valid = append(valid, msg)
	}
	if len(batch) == 0 {
		return
	}
	var outcomes []error
	err := inProgress(valid, beat, func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("batch handler panic: %v", r)
			}
		}()
		outcomes = h(ctx, batch)
		if outcomes != nil && len(outcomes) != len(batch) {
			return fmt.Errorf("batch handler returned %d outcomes for %d events", len(outcomes), len(batch))
		}
		return nil
	})
	var acked []jetstream.Msg
	for i, msg := range valid {
		oerr := err
		if oerr == nil && outcomes != nil {
			oerr = outcomes[i]
		}
		ev := batch[i].Event
		switch {
		case oerr == nil:
			acked = append(acked, msg)
		case errors.Is(oerr, ErrPoison):
			log.Error("terminated poison event", "id", ev.ID, "type", ev.Type, "err", oerr)
			_ = msg.TermWithReason(oerr.Error())
		default:
			delay := redeliveryDelay(msg)
			log.Warn("event failed; redelivering", "id", ev.ID, "type", ev.Type, "in", delay, "err", oerr)
			c.noteFailed(msg)
			_ = msg.NakWithDelay(delay)
		}
	}
	for _, msg := range acked {
		c.noteHandled(msg)
	}
	c.ackAll(ctx, acked, log)
}

// ackAll acks msgs, waiting for the server to confirm the last one: it
// handles one consumer's acks in order, so the others are then in too.
func (c *Conn) ackAll(ctx context.Context, msgs []jetstream.Msg, log *slog.Logger) {
	if len(msgs) == 0 {
		return
	}
	last := len(msgs) - 1
	for _, msg := range msgs[:last] {
		if err := msg.Ack(); err != nil {
			log.Warn("ack", "subject", msg.Subject(), "err", err)
		}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	if err := msgs[last].DoubleAck(actx); err != nil {
		log.Warn("ack", "subject", msgs[last].Subject(), "err", err)
	}
}

// inProgress calls fn and, until it returns, tells JetStream every beat
// that msgs are still being worked on.
func inProgress(msgs []jetstream.Msg, beat time.Duration, fn func() error) error {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(beat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, msg := range msgs {
					_ = msg.InProgress() // best effort: a lost one means at worst a redelivery
				}
			}
		}
	})
	defer wg.Wait()
	defer close(done)
	return fn()
}
