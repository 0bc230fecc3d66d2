// Package worker is the VMA's side of the bus: it announces the VMA with
// heartbeats and answers discover requests from its durable consumer by
// querying vCenter.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/schema"
	"github.com/godwit/godwit/vma/identity"
	"github.com/godwit/godwit/vma/vcenter"
)

// Config configures a Worker. Identity is required.
type Config struct {
	Identity identity.Identity
	// Version is announced in heartbeats.
	Version string
	// Heartbeat is the heartbeat period; 0 means 10s.
	Heartbeat time.Duration
	// VCenterCAFile and VCenterInsecure say how to trust vCenter's certificate.
	VCenterCAFile   string
	VCenterInsecure bool
	// VCenterTimeout bounds connecting and logging in to vCenter; 0 means 15s.
	VCenterTimeout time.Duration
	// VCenterAllow lists the only vCenters the worker logs in to; empty: any.
	VCenterAllow vcenter.AllowList
	// Load, when set, says what the VMA is doing, for each heartbeat.
	Load   func() events.VMALoad
	Now    func() time.Time
	Logger *slog.Logger
}

// Worker runs the VMA's consumers.
type Worker struct {
	cfg     Config
	conn    *bus.Conn
	log     *slog.Logger
	started time.Time
}

// New returns a Worker publishing and consuming through conn.
func New(conn *bus.Conn, cfg Config) *Worker {
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Worker{cfg: cfg, conn: conn, log: log, started: cfg.Now()}
}

// Run sends heartbeats and answers discover requests until ctx ends. It
// returns once both have stopped.
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { w.heartbeats(ctx) })
	return w.conn.Consume(ctx, bus.StreamDiscovery, bus.VMADurable(w.cfg.Identity.ID), w.discover)
}

func (w *Worker) heartbeats(ctx context.Context) {
	t := time.NewTicker(w.cfg.Heartbeat)
	defer t.Stop()
	for {
		now := w.cfg.Now()
		hb := &events.Heartbeat{
			VMAID: w.cfg.Identity.ID, Version: w.cfg.Version, PublicKey: w.cfg.Identity.PublicKey(),
			StartedAt: w.started.UTC(), UptimeSeconds: int64(now.Sub(w.started).Seconds()),
		}
		if w.cfg.Load != nil {
			load := w.cfg.Load()
			hb.Load = &load
		}
		_, err := w.conn.Publish(ctx, hb)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("heartbeat", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// envelopeRoom is what a page leaves of the server's max payload for the
// envelope around it and the message headers.
const envelopeRoom = 8 << 10

// discover runs one discover request against vCenter and publishes the
// result, or the failure, for the requester and the OMA's inventory. A
// result larger than the server's max payload goes in pages. When the
// result can never be published, a failure result says why and the
// request is terminated, not redelivered.
func (w *Worker) discover(ctx context.Context, _ events.Event, p events.Payload) error {
	req, ok := p.(*events.DiscoverRequest)
	if !ok {
		return fmt.Errorf("%w: %s on the discovery consumer", bus.ErrPoison, p.EventType())
	}
	res := &events.DiscoverResult{RequestID: req.RequestID, VMAID: w.cfg.Identity.ID,
		VCenter: events.VCenterRef{Host: req.VCenter, Datacenter: req.Datacenter}, Filter: req.Filter}
	log := w.log.With("request", req.RequestID, "vcenter", req.VCenter, "user", req.Username)
	start := time.Now()
	res.VMs, res.Error = w.query(ctx, req)
	log.Info("discovery", "vms", len(res.VMs), "took", time.Since(start), "failure", res.Error)
	err := w.publishResult(ctx, res)
	if err == nil || !permanent(err) {
		return err
	}
	log.Error("discovery result cannot be published", "err", err)
	failed := *res
	failed.VMs, failed.Error = nil, &events.Failure{Code: events.FailureInternal, Message: "the discovery result cannot be published: " + err.Error()}
	if _, ferr := w.conn.Publish(ctx, &failed); ferr != nil {
		return fmt.Errorf("publish discover failure: %w", ferr)
	}
	return fmt.Errorf("%w: %w", bus.ErrPoison, err)
}

// publishResult publishes res, in as many pages as the server's max
// payload needs.
func (w *Worker) publishResult(ctx context.Context, res *events.DiscoverResult) error {
	pages, err := res.Paginate(int(w.conn.MaxPayload()) - envelopeRoom)
	if err != nil {
		return fmt.Errorf("page discover result: %w", err)
	}
	for i := range pages {
		if _, err := w.conn.Publish(ctx, &pages[i]); err != nil {
			return fmt.Errorf("publish discover result page %d of %d: %w", i+1, len(pages), err)
		}
	}
	return nil
}

// permanent reports whether a publish error will come back on every try.
func permanent(err error) bool {
	var se *schema.Error
	return errors.Is(err, events.ErrVMTooLarge) || errors.Is(err, nats.ErrMaxPayload) || errors.As(err, &se)
}

func (w *Worker) query(ctx context.Context, req *events.DiscoverRequest) ([]events.VM, *events.Failure) {
	s, err := vcenter.LoginSealed(ctx, vcenter.Config{Host: req.VCenter, Username: req.Username,
		CAFile: w.cfg.VCenterCAFile, Insecure: w.cfg.VCenterInsecure, CAPEM: req.CAPEM, Thumbprint: req.Thumbprint,
		Timeout: w.cfg.VCenterTimeout, Allow: w.cfg.VCenterAllow},
		w.cfg.Identity.Key, req.Password)
	if err != nil {
		return nil, failure(err)
	}
	defer s.Close()
	_, vms, err := s.Discover(ctx, req.Datacenter, req.Filter)
	if err != nil {
		return nil, failure(err)
	}
	return vms, nil
}

// failure classifies a vcenter error for the requester.
func failure(err error) *events.Failure {
	return &events.Failure{Code: vcenter.FailureCode(err), Message: err.Error()}
}
