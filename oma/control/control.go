// Package control is the OMA's logic: jobs and their exports, the
// inventory, VMAs, and the consumers that keep them up to date from the
// bus. The REST API translates requests into calls on a Control.
//
// Every change is a bbolt transaction; the lifecycle events a change
// causes are written to an outbox in the same transaction and published
// after it commits, so none is lost and none is published for a change
// that did not happen.
package control

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/store"
)

// AccessSetter updates who may connect to NATS; *bus.Server implements it.
type AccessSetter interface {
	SetAccess(bus.Access) error
	Access() bus.Access
}

// Config configures a Control. DataDir is required.
type Config struct {
	// DataDir holds volumes/ (the migrated disks) and exports/ (what nbdkit serves).
	DataDir string
	// ExportHost is the host the VMA is told to reach exports at; empty
	// means 127.0.0.1.
	ExportHost string
	// APIURL is the OMA API URL given to VMAs in commands; empty means
	// http://localhost:8082.
	APIURL string
	// NATSURL is the NATS URL given to new VMAs.
	NATSURL string
	// DiscoverTimeout bounds a discovery when the request sets none; 0 means 60s.
	DiscoverTimeout time.Duration
	// AppliedMaxAge is how long the ids of applied events are kept, at
	// least the streams' max age; 0 means 31 days.
	AppliedMaxAge time.Duration
	// PruneEvery is how often, by Now, Run forgets the ids of applied
	// events older than AppliedMaxAge; 0 means an hour.
	PruneEvery time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Control runs the OMA's jobs. It is safe for concurrent use.
type Control struct {
	cfg     Config
	store   *store.Store
	bus     *bus.Conn
	exports *exports.Manager
	access  AccessSetter
	log     *slog.Logger

	mu       sync.Mutex // guards creating, the jobs being created; never held across I/O but bbolt reads
	creating map[string]reservation
	vmaMu    sync.Mutex // serializes VMA registrations, which change NATS access
	flushMu  sync.Mutex // serializes outbox flushes
	wake     chan struct{}
	started  time.Time
}

// New returns a Control over its parts.
func New(cfg Config, st *store.Store, conn *bus.Conn, exp *exports.Manager, access AccessSetter) *Control {
	if cfg.ExportHost == "" {
		cfg.ExportHost = "127.0.0.1"
	}
	if cfg.APIURL == "" {
		cfg.APIURL = "http://localhost:8082"
	}
	if cfg.DiscoverTimeout == 0 {
		cfg.DiscoverTimeout = 60 * time.Second
	}
	if cfg.AppliedMaxAge == 0 {
		cfg.AppliedMaxAge = 31 * 24 * time.Hour
	}
	if cfg.PruneEvery == 0 {
		cfg.PruneEvery = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Control{cfg: cfg, store: st, bus: conn, exports: exp, access: access, log: log, started: cfg.Now(),
		wake: make(chan struct{}, 1), creating: map[string]reservation{}}
}

// Started returns when the Control was made.
func (c *Control) Started() time.Time { return c.started }

// Bus returns the bus connection.
func (c *Control) Bus() *bus.Conn { return c.bus }

func (c *Control) exportDir(jobID string) string {
	return filepath.Join(c.cfg.DataDir, "exports", jobID)
}

// Restore brings back what the OMA had before a restart: NATS access for
// every registered VMA with its consumers, the exports of active jobs on
// their leased ports, and the release of leases whose jobs have ended. A
// job whose exports cannot be served again (a missing export or volume,
// a failing nbdkit) is failed with the reason in its last error; the
// others are restored.
func (c *Control) Restore(ctx context.Context) error {
	if err := c.syncAccess(ctx); err != nil {
		return err
	}
	if err := c.prune(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	var leases []store.Lease
	byID := map[string]store.Job{}
	err := c.store.View(func(tx *bbolt.Tx) error {
		var err error
		if leases, err = store.Leases(tx); err != nil {
			return err
		}
		for _, l := range leases {
			if j, err := store.GetJob(tx, l.JobID); err == nil {
				byID[l.JobID] = j
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	for _, l := range leases {
		j, ok := byID[l.JobID]
		if !ok || !jobs.Active(j.State) {
			c.release(l.JobID)
			continue
		}
		if err := c.serveAgain(ctx, l); err != nil {
			c.log.Error("job cannot get its exports back: failing it", "job", l.JobID, "port", l.Port, "err", err)
			if err := c.fail(l.JobID, err.Error()); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			c.release(l.JobID)
			continue
		}
		c.log.Info("restored exports", "job", l.JobID, "port", l.Port)
	}
	return c.flush(ctx)
}

// serveAgain serves a lease's exports again, after checking that each is
// still there.
func (c *Control) serveAgain(ctx context.Context, l store.Lease) error {
	for _, name := range l.Exports {
		if _, err := os.Stat(filepath.Join(l.Dir, name)); err != nil {
			return fmt.Errorf("restore export %s of job %s: %w", name, l.JobID, err)
		}
	}
	if err := c.exports.Serve(ctx, l.JobID, l.Port, l.Dir); err != nil {
		return fmt.Errorf("restore exports of job %s on port %d: %w", l.JobID, l.Port, err)
	}
	return nil
}

// fail moves an active job to failed, saying why.
func (c *Control) fail(jobID, why string) error {
	return c.store.Update(func(tx *bbolt.Tx) error {
		j, err := store.GetJob(tx, jobID)
		if err != nil {
			return err
		}
		if _, err := c.transition(tx, &j, events.JobFailed, why); err != nil {
			return err
		}
		return store.PutJob(tx, j)
	})
}

// Run consumes discover results, progress and status, and heartbeats,
// answers export requests, publishes the outbox and prunes the ids of old
// events, until ctx ends. It returns only after everything it started has
// stopped; nil when ctx ended.
func (c *Control) Run(ctx context.Context) error {
	type consumer struct {
		stream  string
		filters []string
		handle  bus.Handler
	}
	consumers := []consumer{
		{bus.StreamDiscovery, []string{"godwit.discover.result.>"}, c.applyDiscoverResult},
		{bus.StreamProgress, []string{"godwit.progress.>", "godwit.status.>"}, c.applyProgress},
		{bus.StreamPresence, []string{"godwit.vma.>"}, c.applyHeartbeat},
	}
	for _, cons := range consumers {
		if err := c.bus.EnsureConsumer(ctx, cons.stream, bus.OMADurable, cons.filters...); err != nil {
			return stopped(ctx, err)
		}
	}
	if err := c.bus.Serve(ctx, subject.AllExport, "oma", bus.ExportReplies, c.allocation); err != nil {
		return stopped(ctx, err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { c.flushLoop(ctx) })
	wg.Go(func() { c.pruneLoop(ctx) })
	errs := make(chan error, len(consumers))
	for _, cons := range consumers {
		wg.Go(func() { errs <- c.bus.Consume(ctx, cons.stream, bus.OMADurable, cons.handle) })
	}
	var first error
	for range consumers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return stopped(ctx, first)
}

// stopped returns err, or nil when it came from ctx ending.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// flushLoop publishes the outbox when kicked, and every 2 seconds for
// events whose publish failed (the bus was down).
func (c *Control) flushLoop(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.wake:
		}
		if err := c.flush(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("publish lifecycle events", "err", err)
		}
	}
}

// pruneLoop forgets, every PruneEvery by the Config's clock, the ids of
// applied events older than AppliedMaxAge, and the pages of discoveries
// that never completed. It reads that clock every second of real time (or
// every PruneEvery/60 when shorter), so an injected clock is followed.
func (c *Control) pruneLoop(ctx context.Context) {
	t := time.NewTicker(max(min(c.cfg.PruneEvery/60, time.Second), time.Millisecond))
	defer t.Stop()
	last := c.started // Restore pruned then
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := c.cfg.Now(); now.Sub(last) >= c.cfg.PruneEvery {
			last = now
			if err := c.prune(); err != nil {
				c.log.Warn("prune applied event ids", "err", err)
			}
		}
	}
}

// prune forgets what is older than AppliedMaxAge: the ids of applied
// events and the pages of incomplete discoveries.
func (c *Control) prune() error {
	before := c.cfg.Now().Add(-c.cfg.AppliedMaxAge)
	n, err := c.store.PruneApplied(before)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	p, err := c.store.PruneDiscoverPages(before)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	if n > 0 || p > 0 {
		c.log.Info("pruned", "event_ids", n, "discover_pages", p)
	}
	return nil
}

// kick asks flushLoop to publish the outbox soon, without waiting for it.
func (c *Control) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// flush publishes what waits in the outbox. Nats-Msg-Id makes a repeat of
// an event that was published but not removed harmless.
func (c *Control) flush(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	pending, err := c.store.Outbox()
	if err != nil {
		return err
	}
	for _, p := range pending {
		if _, err := c.bus.PublishEvent(ctx, p.Event); err != nil {
			return err
		}
		if err := c.store.Sent(p); err != nil {
			return err
		}
	}
	return nil
}

// newEvent wraps a lifecycle payload in an envelope from the OMA.
func (c *Control) newEvent(p events.Payload) (events.Event, error) {
	return events.New("/godwit/oma", p, c.cfg.Now())
}

// release stops a job's nbdkit and deletes its lease; the volumes stay.
func (c *Control) release(jobID string) {
	c.exports.Stop(jobID)
	err := c.store.Update(func(tx *bbolt.Tx) error { return store.DeleteLease(tx, jobID) })
	if err != nil {
		c.log.Error("release lease", "job", jobID, "err", err)
	}
}
