package control

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/atrest"
	"github.com/godwit/godwit/oma/cutover"
	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/outbox"
	"github.com/godwit/godwit/oma/plans"
	"github.com/godwit/godwit/oma/queue"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vcenters"
	"github.com/godwit/godwit/oma/vmas"
)

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
	// port released. 0 means jobs.DefaultPendingJobTTL.
	PendingJobTTL time.Duration
	// MaxPendingJobs is how many pending jobs one API token may have at
	// once; one more is refused (fault.Limit). 0 means jobs.DefaultMaxPendingJobs.
	MaxPendingJobs int
	// VerifyParallel is how many verify requests are hashed at once; 0
	// means jobs.DefaultVerifyParallel.
	VerifyParallel int
	// VerifyLimiter, if not nil, bounds the bytes per second read from the
	// volumes to answer verify requests.
	VerifyLimiter jobs.Limiter
	// NBDPortsPerVMA is how many ports of the NBD port pool each VMA
	// registered gets as its share: its jobs' exports are served on them
	// only, and its authorized_keys line opens only them. 0 means
	// vmas.DefaultNBDPortsPerVMA; a pool smaller than that is one share.
	NBDPortsPerVMA int
	// OMAPorts are the OMA's own ports (API, NATS, sshd, NBD pool): no
	// VMA's API port may take one.
	OMAPorts []vmas.PortRange
	// AtRestKey seals the registered vCenters' passwords in the store;
	// nil: registering a vCenter fails.
	AtRestKey *atrest.Key
	// MinSyncInterval is the shortest interval of a plan's schedule; 0
	// means plans.DefaultMinSyncInterval.
	MinSyncInterval time.Duration
	// PlanPoll is how often the plans' schedules tick; 0 means a second.
	PlanPoll time.Duration
	// HeartbeatTimeout is how long after its last heartbeat a VMA gets no
	// more jobs from the queue; 0 means queue.DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// PauseSnapshotMax is how long a job may stay paused with its
	// snapshot; 0 means jobs.DefaultPauseSnapshotMax.
	PauseSnapshotMax time.Duration
	// TakeoverGrace is how long a running job's VMA may be gone, after
	// HeartbeatTimeout, before another VMA takes the job over; 0 means
	// jobs.DefaultTakeoverGrace.
	TakeoverGrace time.Duration
	// Cutover configures the cutovers; its DataDir is DataDir.
	Cutover cutover.Config
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Control is the OMA's logic assembled: the VMAs, the inventory and the
// jobs, whose methods it has, and the loops and consumers that keep them
// up to date, which Run runs. It is safe for concurrent use.
type Control struct {
	*vmas.Registry
	*inventory.Keeper
	*jobs.Manager

	vcenters *vcenters.Registry
	plans    *plans.Manager
	queue    *queue.Queue
	cutovers *cutover.Manager

	cfg     Config
	store   *store.Store
	bus     *bus.Conn
	exports *exports.Manager
	outbox  *outbox.Outbox
	log     *slog.Logger
	started time.Time
}

// New returns a Control over its parts.
func New(cfg Config, st *store.Store, conn *bus.Conn, exp *exports.Manager, access vmas.AccessSetter) *Control {
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
	vcfg := vmas.Config{NATSURL: cfg.NATSURL, APIURL: cfg.APIURL, ExportHost: cfg.ExportHost, OMAPorts: cfg.OMAPorts,
		NBDPortsPerVMA: cfg.NBDPortsPerVMA, HeartbeatTimeout: cfg.HeartbeatTimeout, Now: cfg.Now, Logger: log}
	if exp != nil {
		vcfg.FirstPort, vcfg.LastPort = exp.Pool()
	}
	reg := vmas.New(vcfg, st, conn, access)
	out := outbox.New(st, conn, log)
	q := queue.New(queue.Config{Source: "/godwit/oma", HeartbeatTimeout: cfg.HeartbeatTimeout, Now: cfg.Now,
		Logger: log.With("part", "queue")}, st, out)
	c := &Control{
		Registry: reg,
		Keeper:   inventory.New(inventory.Config{DiscoverTimeout: cfg.DiscoverTimeout, Now: cfg.Now, Logger: log}, st, conn, reg),
		Manager: jobs.New(jobs.Config{DataDir: cfg.DataDir, ExportHost: cfg.ExportHost, APIURL: cfg.APIURL, CancelGrace: cfg.CancelGrace,
			PendingJobTTL: cfg.PendingJobTTL, MaxPendingJobs: cfg.MaxPendingJobs, VerifyParallel: cfg.VerifyParallel,
			VerifyLimiter: cfg.VerifyLimiter, Queue: q, HeartbeatTimeout: cfg.HeartbeatTimeout, PauseSnapshotMax: cfg.PauseSnapshotMax,
			TakeoverGrace: cfg.TakeoverGrace, AtRest: atRest(cfg.AtRestKey), Now: cfg.Now, Logger: log}, st, exp, reg, out),
		queue: q, cfg: cfg, store: st, bus: conn, exports: exp, outbox: out, log: log, started: cfg.Now(),
	}
	c.vcenters = vcenters.New(st, cfg.AtRestKey, vcenters.DiscoveryProver{D: c, Timeout: cfg.DiscoverTimeout}, cfg.Now)
	c.plans = plans.New(plans.Config{MinSyncInterval: cfg.MinSyncInterval, Poll: cfg.PlanPoll, DataDir: cfg.DataDir, VirtioWin: cfg.Cutover.VirtioWin,
		Now: cfg.Now, Logger: log.With("part", "plans")}, st, c.Manager, c.vcenters, c, out)
	ccfg := cfg.Cutover
	ccfg.DataDir, ccfg.Now, ccfg.Logger = cfg.DataDir, cfg.Now, log.With("part", "cutover")
	c.cutovers = cutover.New(ccfg, st, c.Manager, c.vcenters, reg, out)
	return c
}

// Cutovers returns the cutovers.
func (c *Control) Cutovers() *cutover.Manager { return c.cutovers }

// VCenters returns the registered vCenters.
func (c *Control) VCenters() *vcenters.Registry { return c.vcenters }

// Queue returns the OMA's queue of started jobs.
func (c *Control) Queue() *queue.Queue { return c.queue }

// Plans returns the migration plans.
func (c *Control) Plans() *plans.Manager { return c.plans }

// Started returns when the Control was made.
func (c *Control) Started() time.Time { return c.started }

// Bus returns the bus connection.
func (c *Control) Bus() *bus.Conn { return c.bus }

// ExportRestarts returns how many times an export's nbdkit died and was
// restarted since the OMA started.
func (c *Control) ExportRestarts() uint64 { return c.exports.Restarts() }

// Run consumes discover results, progress and status (in batches, one
// transaction each), heartbeats and tunnel outages, answers export and verify requests, publishes the
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
		{bus.StreamInventory, nil, one(c.ApplyDiscoverResult)},
		// The whole progress stream, unfiltered: it holds only progress and
		// status, and filters would make the server match each message
		// against them, a cost that grows with the jobs' subjects.
		{bus.StreamProgress, nil, func(ctx context.Context, stream string) error {
			return c.bus.ConsumeBatch(ctx, stream, bus.OMADurable, c.cfg.ProgressBatch, c.ApplyProgress)
		}},
		{bus.StreamPresence, []string{"godwit.vma.>"}, one(c.ApplyHeartbeat)},
		{bus.StreamTunnel, nil, one(c.ApplyTunnelOutage)},
	}
	c.WarnShares()
	for _, cons := range consumers {
		if err := c.bus.EnsureConsumer(ctx, cons.stream, bus.OMADurable, cons.filters...); err != nil {
			return stopped(ctx, err)
		}
	}
	if err := c.bus.Serve(ctx, subject.AllExport, "oma", bus.ExportReplies, c.Allocation); err != nil {
		return stopped(ctx, err)
	}
	if err := c.bus.Serve(ctx, subject.AllStart, "oma", bus.StartReplies, c.StartFromVMA); err != nil {
		return stopped(ctx, err)
	}
	// Verify requests are answered several at once: a long hash waits only
	// for the hashing slots (Config.VerifyParallel), and a refusal is
	// answered at once.
	if err := c.bus.Serve(ctx, subject.AllVerify, "oma", bus.VerifyReplies, c.Verify, bus.Workers(verifyWorkers)); err != nil {
		return stopped(ctx, err)
	}
	if err := c.bus.Serve(ctx, subject.AllDiscoverSubmit, "oma", bus.SubmitReplies, c.SubmitDiscover); err != nil {
		return stopped(ctx, err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.StopReleases()
	wg.Go(func() { c.outbox.Run(ctx) })
	wg.Go(func() { c.pruneLoop(ctx) })
	wg.Go(func() { _ = c.bus.WatchStreams(ctx, c.cfg.StreamWatch) })
	wg.Go(func() { c.RunExpiry(ctx) })
	wg.Go(func() { c.RunFailover(ctx) })
	wg.Go(func() { _ = c.plans.Run(ctx) })
	wg.Go(func() {
		if err := c.cutovers.Run(ctx); err != nil {
			c.log.Error("the cutovers stopped", "err", err)
		}
	})
	wg.Go(func() {
		if err := c.queue.Run(ctx); err != nil {
			c.log.Error("the queue stopped", "err", err)
		}
	})
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

// verifyWorkers is how many verify requests Run answers at once.
const verifyWorkers = 16

// stopped returns err, or nil when it came from ctx ending.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// atRest is k as the jobs' at-rest sealer: none when k is nil.
func atRest(k *atrest.Key) jobs.AtRest {
	if k == nil {
		return nil
	}
	return k
}
