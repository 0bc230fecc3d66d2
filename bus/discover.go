package bus

import (
	"context"
	"encoding/json"
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
// whole result, which may carry a Failure. A confined connection (a VMA)
// may not publish discover requests: it submits its own to the OMA
// (subject.DiscoverSubmit), which publishes it and records it, since the
// OMA takes into its inventory the results of its recorded requests only. The result's events are
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
	if err := c.SubmitDiscover(ctx, dr); err != nil {
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

// SubmitDiscover publishes dr without waiting for its result, or, on a
// confined connection, submits it to the OMA, which publishes it (asking
// again while the OMA does not serve submissions, until ctx ends).
func (c *Conn) SubmitDiscover(ctx context.Context, dr *events.DiscoverRequest) error {
	if !c.confined {
		_, err := c.Publish(ctx, dr)
		return err
	}
	ev, err := events.New(c.source, dr, c.now())
	if err != nil {
		return err
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode %s: %w", ev.Type, err)
	}
	if err := c.validator.CheckEvent(raw); err != nil {
		return err
	}
	subj, err := subject.DiscoverSubmit(dr.VMAID)
	if err != nil {
		return err
	}
	var ok struct{}
	return c.RequestServed(ctx, subj, json.RawMessage(raw), &ok)
}

// CheckSubmission returns the discover request a VMA submitted on subj
// (subject.DiscoverSubmit): a valid event whose request is for the VMA the
// subject names. The OMA then publishes it with PublishEvent.
func (c *Conn) CheckSubmission(subj string, data []byte) (events.Event, *events.DiscoverRequest, error) {
	vmaID, err := subject.ParseDiscoverSubmit(subj)
	if err != nil {
		return events.Event{}, nil, err
	}
	ev, err := c.validator.ValidateEvent(data)
	if err != nil {
		return events.Event{}, nil, err
	}
	p, _, err := decode(ev)
	if err != nil {
		return events.Event{}, nil, err
	}
	dr, ok := p.(*events.DiscoverRequest)
	if !ok {
		return events.Event{}, nil, fmt.Errorf("a %s is not a discover request", ev.Type)
	}
	if dr.VMAID != vmaID {
		return events.Event{}, nil, fmt.Errorf("VMA %s submitted a discover request for VMA %s", vmaID, dr.VMAID)
	}
	return ev, dr, nil
}

// SubmitReplies is the ReplyPrefix of discover submissions: the inbox
// prefix of the VMA the subject names.
func SubmitReplies(subj string) (string, error) {
	vmaID, err := subject.ParseDiscoverSubmit(subj)
	if err != nil {
		return "", err
	}
	return subject.InboxPrefix(vmaID)
}
