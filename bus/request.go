package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/godwit/godwit/events/subject"
)

// DefaultRequestTimeout bounds Request when ctx has no deadline.
const DefaultRequestTimeout = 5 * time.Second

// errorHeader carries a responder's error message, codeHeader its code.
const (
	errorHeader = "Godwit-Error"
	codeHeader  = "Godwit-Error-Code"
)

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
		return &RemoteError{Subject: subj, Message: m, Code: msg.Header.Get(codeHeader)}
	}
	if err := json.Unmarshal(msg.Data, resp); err != nil {
		return fmt.Errorf("request %s: decode reply: %w", subj, err)
	}
	return nil
}

// RequestServed is Request that asks again, every servedRetryWait, while
// nobody serves subj, until ctx ends (or DefaultRequestTimeout passes when
// ctx has no deadline). For requests of a VMA to the OMA: its responder may
// be starting, and while the server reloads its accounts (a VMA
// registered) a VMA's service imports are gone for a moment.
func (c *Conn) RequestServed(ctx context.Context, subj string, req, resp any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	for {
		err := c.Request(ctx, subj, req, resp)
		if !errors.Is(err, ErrNoResponders) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(servedRetryWait):
		}
	}
}

// servedRetryWait is how long RequestServed waits before it asks again.
const servedRetryWait = 50 * time.Millisecond

// ReplyPrefix returns the prefix under which the reply subject of a request
// on subj must lie, such as the inbox prefix of the VMA that subj names, or
// an error when subj names nobody who may get an answer.
type ReplyPrefix func(subj string) (string, error)

// ServeOption changes how Serve answers.
type ServeOption func(*serveOptions)

type serveOptions struct{ workers int }

// Workers lets Serve answer up to n requests at once, each in its own
// goroutine, so that one slow answer does not hold the others back; n < 2
// means one at a time, in order (the default).
func Workers(n int) ServeOption { return func(o *serveOptions) { o.workers = n } }

// Serve answers requests on subj (which may hold wildcards) with h, in
// queue group queue so that several responders share the load. It returns
// once the subscription is in place; it stops when ctx ends. Requests are
// answered one at a time unless an option says otherwise.
//
// The requester chooses the reply subject, and the answer is published
// with this connection's rights, so Serve answers only into
// replies(msg.Subject) + ".>": a request whose reply lies anywhere else (a
// JetStream API subject, another VMA's inbox) is logged and dropped, and h
// is not called.
func (c *Conn) Serve(ctx context.Context, subj, queue string, replies ReplyPrefix, h Responder, opts ...ServeOption) error {
	if replies == nil {
		return fmt.Errorf("serve %s: no reply prefix", subj)
	}
	var o serveOptions
	for _, opt := range opts {
		opt(&o)
	}
	var slots chan struct{} // with Workers: one per answer under way
	if o.workers > 1 {
		slots = make(chan struct{}, o.workers)
	}
	sub, err := c.nc.QueueSubscribe(subj, queue, func(msg *nats.Msg) {
		if err := replyAllowed(msg, replies); err != nil {
			c.log.Warn("request dropped", "subject", msg.Subject, "reply", msg.Reply, "err", err)
			return
		}
		if slots == nil {
			c.answer(ctx, msg, h)
			return
		}
		select {
		case slots <- struct{}{}: // waits, holding the next requests, while n answers are under way
		case <-ctx.Done():
			return
		}
		go func() {
			defer func() { <-slots }()
			c.answer(ctx, msg, h)
		}()
	})
	if err != nil {
		return fmt.Errorf("serve %s: %w", subj, err)
	}
	if err := c.nc.FlushTimeout(DefaultRequestTimeout); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("serve %s: %w", subj, err)
	}
	// No goroutine waits for ctx: the drain is started when ctx ends.
	context.AfterFunc(ctx, func() { _ = sub.Drain() })
	return nil
}

// answer calls h with the request msg and sends its reply or error.
func (c *Conn) answer(ctx context.Context, msg *nats.Msg, h Responder) {
	reply := nats.NewMsg(msg.Reply)
	resp, err := h(ctx, msg.Subject, msg.Data)
	if err == nil {
		reply.Data, err = json.Marshal(resp)
	}
	if err != nil {
		c.log.Warn("request failed", "subject", msg.Subject, "err", err)
		reply.Data = nil
		reply.Header.Set(errorHeader, err.Error())
		var coded Coded
		if errors.As(err, &coded) && coded.RemoteCode() != "" {
			reply.Header.Set(codeHeader, coded.RemoteCode())
		}
	}
	if err := msg.RespondMsg(reply); err != nil {
		c.log.Warn("reply", "subject", msg.Subject, "err", err)
	}
}

// serviceReplyPrefix begins the reply subjects the server makes for a
// request that came through a service import, from a VMA's account: the
// server routes the answer back to the requester's own reply subject, so
// it can never land anywhere else.
const serviceReplyPrefix = "_R_."

// replyAllowed checks that msg has a reply subject under the prefix replies
// gives for its subject, or one the server made for a request from another
// account.
func replyAllowed(msg *nats.Msg, replies ReplyPrefix) error {
	if msg.Reply == "" {
		return errors.New("no reply subject")
	}
	if strings.HasPrefix(msg.Reply, serviceReplyPrefix) && !strings.ContainsAny(msg.Reply, "*> \t\r\n") {
		return nil
	}
	prefix, err := replies(msg.Subject)
	if err != nil {
		return fmt.Errorf("reply prefix: %w", err)
	}
	if prefix == "" || !strings.HasPrefix(msg.Reply, prefix+".") || strings.ContainsAny(msg.Reply, "*> \t\r\n") {
		return fmt.Errorf("reply subject is not under %s.>", prefix)
	}
	return nil
}

// ExportReplies is the ReplyPrefix of export requests
// (godwit.export.request.<vma>.<job>): the inbox prefix of the VMA the
// subject names, so that only that VMA gets the answer.
func ExportReplies(subj string) (string, error) {
	vmaID, _, err := subject.ParseExportRequest(subj)
	if err != nil {
		return "", err
	}
	return subject.InboxPrefix(vmaID)
}

// StartReplies is the ReplyPrefix of start requests
// (godwit.start.request.<vma>.<job>): the inbox prefix of the VMA the
// subject names, as for ExportReplies.
func StartReplies(subj string) (string, error) {
	vmaID, _, err := subject.ParseStartRequest(subj)
	if err != nil {
		return "", err
	}
	return subject.InboxPrefix(vmaID)
}

// VerifyReplies is the ReplyPrefix of verify requests
// (godwit.verify.request.<vma>.<job>): the inbox prefix of the VMA the
// subject names, as for ExportReplies.
func VerifyReplies(subj string) (string, error) {
	vmaID, _, err := subject.ParseVerifyRequest(subj)
	if err != nil {
		return "", err
	}
	return subject.InboxPrefix(vmaID)
}
