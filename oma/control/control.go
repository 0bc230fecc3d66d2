package control

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/exports"
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
	// CancelGrace is how long the export of a cancelled job that its VMA
	// had started stays up, so that the VMA stops on the cancel rather than
	// on a dropped connection; the VMA's final status ends it early. 0
	// means 30s.
	CancelGrace time.Duration
	// ProgressBatch is how many progress and status events are applied in
	// one transaction at most; 0 means bus.DefaultBatch.
	ProgressBatch int
	// StreamWatch is how Run watches the streams' limits and alerts.
	StreamWatch bus.StreamWatch
	// PendingJobTTL is how long a job may stay pending (created, never
	// started) before it expires: it is cancelled, saying so, and its NBD
	// port released. 0 means DefaultPendingJobTTL.
	PendingJobTTL time.Duration
	// MaxPendingJobs is how many pending jobs one API token may have at
	// once; one more is refused (Limit). 0 means DefaultMaxPendingJobs.
	MaxPendingJobs int
	// NBDPortsPerVMA is how many ports of the NBD port pool each VMA
	// registered gets as its share: its jobs' exports are served on them
	// only, and its authorized_keys line opens only them. 0 means
	// DefaultNBDPortsPerVMA; a pool smaller than that is one share.
	NBDPortsPerVMA int
	// OMAPorts are the OMA's own ports (API, NATS, sshd, NBD pool): no
	// VMA's API port may take one.
	OMAPorts []PortRange
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// DefaultPendingJobTTL is how long a job stays pending, unstarted, before
// it expires, when Config.PendingJobTTL is zero.
const DefaultPendingJobTTL = 24 * time.Hour

// DefaultMaxPendingJobs is how many pending jobs one token may have when
// Config.MaxPendingJobs is zero.
const DefaultMaxPendingJobs = 20

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

	releaseMu sync.Mutex             // guards releasing and runDone
	releasing map[string]*time.Timer // exports of cancelled jobs, by job id, released when the timer fires
	runDone   bool                   // Run has returned: no timer is started
	wake      chan struct{}
	started   time.Time
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
	if cfg.PendingJobTTL == 0 {
		cfg.PendingJobTTL = DefaultPendingJobTTL
	}
	if cfg.MaxPendingJobs == 0 {
		cfg.MaxPendingJobs = DefaultMaxPendingJobs
	}
	if cfg.CancelGrace == 0 {
		cfg.CancelGrace = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Control{cfg: cfg, store: st, bus: conn, exports: exp, access: access, log: log, started: cfg.Now(),
		wake: make(chan struct{}, 1), creating: map[string]reservation{}, releasing: map[string]*time.Timer{}}
}

// Started returns when the Control was made.
func (c *Control) Started() time.Time { return c.started }

// Bus returns the bus connection.
func (c *Control) Bus() *bus.Conn { return c.bus }

// ExportRestarts returns how many times an export's nbdkit died and was
// restarted since the OMA started.
func (c *Control) ExportRestarts() uint64 { return c.exports.Restarts() }

// Run consumes discover results, progress and status (in batches, one
// transaction each), heartbeats and tunnel outages, answers export requests, publishes the
// outbox and prunes the ids of old events, until ctx ends. It returns only after everything it started has
// stopped; nil when ctx ended.
func (c *Control) Run(ctx context.Context) error {
	type consumer struct {
		stream  string
		filters []string
		consume func(ctx context.Context, stream string) error
	}
	one := func(h bus.Handler) func(context.Context, string) error {
		return func(ctx context.Context, stream string) error { return c.bus.Consume(ctx, stream, bus.OMADurable, h) }
	}
	consumers := []consumer{
		{bus.StreamInventory, nil, one(c.applyDiscoverResult)},
		// The whole progress stream, unfiltered: it holds only progress and
		// status, and filters would make the server match each message
		// against them, a cost that grows with the jobs' subjects.
		{bus.StreamProgress, nil, func(ctx context.Context, stream string) error {
			return c.bus.ConsumeBatch(ctx, stream, bus.OMADurable, c.cfg.ProgressBatch, c.applyProgress)
		}},
		{bus.StreamPresence, []string{"godwit.vma.>"}, one(c.applyHeartbeat)},
		{bus.StreamTunnel, nil, one(c.applyTunnelOutage)},
	}
	c.warnShares()
	for _, cons := range consumers {
		if err := c.bus.EnsureConsumer(ctx, cons.stream, bus.OMADurable, cons.filters...); err != nil {
			return stopped(ctx, err)
		}
	}
	if err := c.bus.Serve(ctx, subject.AllExport, "oma", bus.ExportReplies, c.allocation); err != nil {
		return stopped(ctx, err)
	}
	if err := c.bus.Serve(ctx, subject.AllDiscoverSubmit, "oma", bus.SubmitReplies, c.submitDiscover); err != nil {
		return stopped(ctx, err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.stopReleases()
	wg.Go(func() { c.flushLoop(ctx) })
	wg.Go(func() { c.pruneLoop(ctx) })
	wg.Go(func() { _ = c.bus.WatchStreams(ctx, c.cfg.StreamWatch) })
	wg.Go(func() { c.expireLoop(ctx) })
	errs := make(chan error, len(consumers))
	for _, cons := range consumers {
		wg.Go(func() { errs <- cons.consume(ctx, cons.stream) })
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
