package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultRequestTimeout bounds Request when ctx has no deadline.
const DefaultRequestTimeout = 5 * time.Second

// errorHeader carries a responder's error message.
const errorHeader = "Godwit-Error"

// Responder answers one request: it returns the reply, encoded as JSON, or
// an error whose message goes back to the requester.
type Responder func(ctx context.Context, subject string, req []byte) (any, error)

// Request sends req as JSON on subj and decodes the JSON reply into resp.
// Without a deadline on ctx it waits DefaultRequestTimeout. It returns an
// error wrapping ErrNoResponders when nobody serves subj, one wrapping
// context.DeadlineExceeded on timeout, and a *RemoteError when the
// responder failed.
func (c *Conn) Request(ctx context.Context, subj string, req, resp any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("request %s: encode: %w", subj, err)
	}
	msg, err := c.nc.RequestWithContext(ctx, subj, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("request %s: %w", subj, ErrNoResponders)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("request %s: no reply in time: %w", subj, context.DeadlineExceeded)
	case err != nil:
		return fmt.Errorf("request %s: %w", subj, err)
	}
	if m := msg.Header.Get(errorHeader); m != "" {
		return &RemoteError{Subject: subj, Message: m}
	}
	if err := json.Unmarshal(msg.Data, resp); err != nil {
		return fmt.Errorf("request %s: decode reply: %w", subj, err)
	}
	return nil
}

// Serve answers requests on subj (which may hold wildcards) with h, in
// queue group queue so that several responders share the load. It returns
// once the subscription is in place; it stops when ctx ends.
func (c *Conn) Serve(ctx context.Context, subj, queue string, h Responder) error {
	sub, err := c.nc.QueueSubscribe(subj, queue, func(msg *nats.Msg) {
		reply := nats.NewMsg(msg.Reply)
		resp, err := h(ctx, msg.Subject, msg.Data)
		if err == nil {
			reply.Data, err = json.Marshal(resp)
		}
		if err != nil {
			c.log.Warn("request failed", "subject", msg.Subject, "err", err)
			reply.Data = nil
			reply.Header.Set(errorHeader, err.Error())
		}
		if err := msg.RespondMsg(reply); err != nil {
			c.log.Warn("reply", "subject", msg.Subject, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("serve %s: %w", subj, err)
	}
	if err := c.nc.FlushTimeout(DefaultRequestTimeout); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("serve %s: %w", subj, err)
	}
	go func() {
		<-ctx.Done()
		_ = sub.Drain()
	}()
	return nil
}
