package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/identity"
	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/store"
	"github.com/godwit/godwit/vma/vcenter"
)

// Defaults of Config.
const (
	DefaultMaxJobs          = 4
	DefaultDiskParallelism  = 2
	DefaultProgressInterval = time.Second
	// DefaultExportRetry is Config.ExportRetry's default.
	DefaultExportRetry = 10 * time.Minute
	// DefaultCheckpointInterval is Config.CheckpointInterval's default.
	DefaultCheckpointInterval = 5 * time.Second
	// SnapshotPrefix starts the name of every snapshot a job takes.
	SnapshotPrefix = "godwit-"
)

// Disk is one disk of a snapshot, open for reading.
type Disk interface {
	copier.Source
	Close() error
}

// Source opens the disks jobs copy: the datastore or the vddk transport.
type Source interface {
	// Name is the transport's name, such as datastore or vddk.
	Name() string
	// Check says whether the source can work on this VMA at all (a missing
	// plugin); a job fails at once when it cannot.
	Check(ctx context.Context) error
	// Open opens one disk of a snapshot for reading.
	Open(ctx context.Context, d DiskRef) (Disk, error)
}

// DiskRef is a disk of a VM's snapshot, with the session and the vCenter
// login it is read with.
type DiskRef struct {
	Session *vcenter.Session
	// VCenter holds the job's host, user and password, and the VMA's trust.
	VCenter  vcenter.Config
	VM       *vcenter.VM
	Snapshot *vcenter.Snapshot
	Disk     vcenter.SnapshotDisk
}

// Config configures a Runner. Identity and Source are required.
type Config struct {
	Identity identity.Identity
	// Source opens the disks that jobs copy.
	Source Source
	// MaxJobs is how many jobs run at once; 0 means DefaultMaxJobs.
	MaxJobs int
	// DiskParallelism is how many disks of a job copy at once; 0 means
	// DefaultDiskParallelism.
	DiskParallelism int
	// VCenter is how jobs reach vCenter: trust, timeout, allow list. Host,
	// Username and Password come from each command.
	VCenter vcenter.Config
	// Copy tunes each disk's copy: Depth and RequestSize (0: the copier's
	// defaults). Its Progress, ProgressInterval and TargetIsZero are the
	// Runner's.
	Copy copier.Config
	// Connections is how many NBD connections each disk's export gets
	// when the server allows several (each is an SSH channel through the
	// tunnel). 0 chooses them per disk from the Link's RTT and LinkRate,
	// with the requests in flight (Copy.Depth raised to cover the
	// bandwidth-delay product); without a Link, 0 means 1.
	Connections int
	// Link measures the path to the exports (the tunnel); nil when none.
	Link Link
	// LinkRate is the rate in bytes per second the path to the exports is
	// expected to carry; 0 means DefaultLinkRate.
	LinkRate int64
	// NBD configures the connections to the OMA's exports (the tunnel
	// gives the dialer).
	NBD nbd.Config
	// ProgressInterval is the least time between progress events of a
	// job; 0 means DefaultProgressInterval.
	ProgressInterval time.Duration
	// PublishWindow is how many progress events may wait for their
	// acknowledgement at once, over all jobs; 0 means
	// bus.DefaultPublishWindow. Each is sent again until stored.
	PublishWindow int
	// RequestTimeout bounds the export request to the OMA; 0 means 30s.
	RequestTimeout time.Duration
	// CleanupTimeout bounds removing a snapshot after a job; 0 means 5m.
	CleanupTimeout time.Duration
	// CleanupRetry is the first delay before a failed snapshot removal is
	// tried again (it doubles up to 5m); 0 means 10s.
	CleanupRetry time.Duration
	// ExportRetry is how long a disk's copy keeps trying to reach its
	// export again when it went away (the OMA restarts); 0 means
	// DefaultExportRetry.
	ExportRetry time.Duration
	// CheckpointInterval is the most time between two recorded checkpoints
	// of a disk that copies (also recorded every 64 MiB); 0 means
	// DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	Now                func() time.Time
	Logger             *slog.Logger
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Identity.ID == "" {
		return cfg, errors.New("jobs: no identity")
	}
	if cfg.Source == nil {
		return cfg, errors.New("jobs: no disk source")
	}
	if cfg.MaxJobs < 0 || cfg.DiskParallelism < 0 || cfg.Connections < 0 || cfg.LinkRate < 0 {
		return cfg, fmt.Errorf("jobs: negative max jobs (%d), disk parallelism (%d), connections (%d) or link rate (%d)", cfg.MaxJobs, cfg.DiskParallelism, cfg.Connections, cfg.LinkRate)
	}
	if cfg.MaxJobs == 0 {
		cfg.MaxJobs = DefaultMaxJobs
	}
	if cfg.DiskParallelism == 0 {
		cfg.DiskParallelism = DefaultDiskParallelism
	}
	if cfg.Connections == 0 && cfg.Link == nil {
		cfg.Connections = 1
	}
	if cfg.LinkRate == 0 {
		cfg.LinkRate = DefaultLinkRate
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = DefaultProgressInterval
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.CleanupTimeout == 0 {
		cfg.CleanupTimeout = 5 * time.Minute
	}
	if cfg.CleanupRetry == 0 {
		cfg.CleanupRetry = 10 * time.Second
	}
	if cfg.ExportRetry == 0 {
		cfg.ExportRetry = DefaultExportRetry
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// Runner runs the jobs the VMA is given.
type Runner struct {
	cfg  Config
	conn *bus.Conn
	st   *store.Store
	log  *slog.Logger

	runCtx context.Context // Run's: it ends when the VMA stops
	// pub publishes the progress events without waiting for each ack
	// (set by Run; nil before).
	pub *bus.Publisher

	mu      sync.Mutex
	queue   []*task          // waiting, in arrival order
	running map[string]*task // by job id
	wake    chan struct{}    // a slot or a task may be free
	wg      sync.WaitGroup   // running tasks
	// powering holds the power commands under way, by request id: a
	// redelivered one is not run twice at once.
	powering map[string]bool

	copies atomic.Int32 // disk copies under way, over all jobs: they share the link (pipe)
}

// task is one job the runner holds, queued or running.
type task struct {
	id  string
	cmd *events.ReplicateCommand
	// resume says a previous run of the VMA left the job unfinished: it
	// goes on from its snapshot and checkpoints when the snapshot is there.
	resume  bool
	tracker *tracker
	// limiter is the job's own bandwidth limit, which the OMA sets and
	// changes; under the VMA's own (-rate).
	limiter *copier.Limiter
	cancel  context.CancelCauseFunc // set when it runs
	done    chan struct{}           // closed when it has ended
	pubMu   sync.Mutex              // orders the job's events
	// lastProgress is when the last progress event went out (under pubMu).
	lastProgress time.Time
	// moved, when set, says why the OMA moved the job to another VMA:
	// the run learnt it as it ended.
	moved atomic.Pointer[string]
}

// New returns a Runner that consumes through conn and keeps its jobs in st.
func New(conn *bus.Conn, st *store.Store, cfg Config) (*Runner, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, conn: conn, st: st, log: cfg.Logger, running: map[string]*task{}, powering: map[string]bool{}, wake: make(chan struct{}, 1)}, nil
}

// Cancelled is the cause of a job's context when it was cancelled.
type Cancelled struct{ Reason string }

// Error implements error.
func (c *Cancelled) Error() string { return "cancelled: " + c.Reason }

// errStopping is the cause of a job's context when the VMA stops.
var errStopping = errors.New("the VMA stopped")

// Paused is the cause of a job's context when it was paused.
type Paused struct{ Reason string }

// Error implements error.
func (p *Paused) Error() string { return "paused: " + p.Reason }

// interrupted reports whether the job whose context is ctx was stopped to
// go on later: the VMA stops, or the job was paused. Its snapshot and
// checkpoints are kept.
func interrupted(ctx context.Context) bool {
	cause := context.Cause(ctx)
	var p *Paused
	return errors.Is(cause, errStopping) || errors.As(cause, &p)
}

// Run queues again the jobs a previous run left unfinished (they resume),
// then consumes replicate and cancel commands and runs jobs until ctx
// ends. Then it interrupts every running job (each flushes its exports and
// records its checkpoints, and keeps its snapshot for the resume) and
// returns once they have stopped; queued jobs stay queued.
func (r *Runner) Run(ctx context.Context) error {
	r.runCtx = ctx
	r.pub = r.conn.NewPublisher(bus.PublisherConfig{Window: r.cfg.PublishWindow})
	defer func() {
		// What the jobs published on their way out goes before the VMA stops.
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.pub.Flush(fctx); err != nil {
			r.log.Warn("progress events not acknowledged before the VMA stopped", "events", r.pub.Pending(), "err", err)
		}
		r.pub.Close()
	}()
	if err := r.recoverJobs(ctx); err != nil {
		return err
	}
	jobsCtx, stopJobs := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopJobs(errStopping)
	var dispatch sync.WaitGroup
	dispatch.Go(func() { r.dispatch(ctx, jobsCtx) })
	err := r.conn.Consume(ctx, bus.StreamCommands, bus.VMADurable(r.cfg.Identity.ID), r.handle)
	dispatch.Wait()
	r.mu.Lock()
	for _, t := range r.running {
		t.cancel(errStopping)
	}
	queued := r.queue
	r.queue = nil
	r.mu.Unlock()
	for _, t := range queued {
		close(t.done) // still queued in bbolt: the next start runs it
	}
	r.wg.Wait()
	return err
}

// handle takes one command from the consumer.
func (r *Runner) handle(ctx context.Context, _ events.Event, p events.Payload) error {
	switch c := p.(type) {
	case *events.ReplicateCommand:
		return r.accept(ctx, c)
	case *events.ReplicateCancel:
		r.Cancel(ctx, c.JobID, c.Reason)
		return nil
	case *events.ReplicatePause:
		r.Pause(ctx, c.JobID, c.Reason)
		return nil
	case *events.ReplicateRate:
		r.SetRate(c.JobID, c.BytesPerSecond)
		return nil
	case *events.PowerCommand:
		r.startPower(c)
		return nil
	}
	return fmt.Errorf("%w: %s on the commands consumer", bus.ErrPoison, p.EventType())
}

// accept records a replicate command and queues its job. A command for a
// job the VMA holds or has finished is a redelivery: nothing happens.
func (r *Runner) accept(ctx context.Context, c *events.ReplicateCommand) error {
	r.mu.Lock()
	held := r.running[c.JobID] != nil || slices.ContainsFunc(r.queue, func(t *task) bool { return t.id == c.JobID })
	r.mu.Unlock()
	if held {
		return nil
	}
	now := r.cfg.Now().UTC()
	dup, resume := false, false
	j, err := r.st.Update(c.JobID, true, func(j *store.Job) error {
		if store.Final(j.State) || j.State == store.StateRunning {
			dup = true
			return nil
		}
		resume = j.State == store.StatePaused // it goes on from its snapshot and checkpoints
		sealed := c.Password
		j.State, j.VCenter, j.Username, j.Password, j.VMPaths = store.StateQueued, c.VCenter, c.Username, &sealed, c.VMPaths
		j.OnCBTReset, j.Verify, j.CAPEM, j.Thumbprint = c.OnCBTReset, c.Verify, c.CAPEM, c.Thumbprint
		if j.AcceptedAt.IsZero() {
			j.AcceptedAt = now
		}
		j.UpdatedAt = now
		return nil
	})
	if err != nil {
		return err
	}
	if dup {
		r.log.Info("replicate command for a job this VMA already ran: ignored", "job", c.JobID, "state", j.State)
		return nil
	}
	t := &task{id: c.JobID, cmd: c, resume: resume, tracker: newTracker(r.cfg.Now), limiter: copier.NewLimiter(c.RateBytesPerSecond, nil), done: make(chan struct{})}
	if err := r.publishStatus(ctx, t, events.StatusAccepted, nil, nil); err != nil {
		return err
	}
	r.mu.Lock()
	r.queue = append(r.queue, t)
	waiting := len(r.queue) + len(r.running) - r.cfg.MaxJobs
	r.mu.Unlock()
	r.log.Info("job queued", "job", c.JobID, "vm_paths", c.VMPaths, "ahead", max(waiting-1, 0))
	r.poke()
	return nil
}

// Load says what the runner is doing: its capacity, the jobs it runs and
// queues, and the bytes per second their copies write now.
func (r *Runner) Load() events.VMALoad {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := events.VMALoad{MaxJobs: r.cfg.MaxJobs, Running: len(r.running), Queued: len(r.queue)}
	for _, t := range r.running {
		l.BytesPerSecond += t.tracker.rate()
	}
	return l
}

func (r *Runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// dispatch starts queued jobs, in order, while fewer than MaxJobs run,
// until ctx ends.
func (r *Runner) dispatch(ctx, jobsCtx context.Context) {
	for {
		r.mu.Lock()
		for len(r.queue) > 0 && len(r.running) < r.cfg.MaxJobs {
			t := r.queue[0]
			r.queue = r.queue[1:]
			tctx, cancel := context.WithCancelCause(jobsCtx)
			t.cancel = cancel
			r.running[t.id] = t
			r.wg.Go(func() {
				defer cancel(nil)
				r.run(tctx, t)
				r.mu.Lock()
				delete(r.running, t.id)
				r.mu.Unlock()
				close(t.done)
				r.poke()
			})
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
	}
}

// held finds the job with id among those the runner holds: a running
// one (running true), or a queued one, which take removes from the queue;
// nil when it holds none.
func (r *Runner) held(id string, take bool) (t *task, running bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.running[id]; t != nil {
		return t, true
	}
	i := slices.IndexFunc(r.queue, func(t *task) bool { return t.id == id })
	if i < 0 {
		return nil, false
	}
	t = r.queue[i]
	if take {
		r.queue = slices.Delete(r.queue, i, i+1)
	}
	return t, false
}

// Cancel stops the job with id: a queued job ends cancelled at once, a
// running one is told to stop and ends cancelled once its snapshot is
// removed, a paused one ends cancelled and its snapshot is removed in the
// background. It reports whether the job was queued, running or paused.
func (r *Runner) Cancel(ctx context.Context, id, reason string) bool {
	if reason == "" {
		reason = "cancelled"
	}
	t, running := r.held(id, true)
	switch {
	case running:
		t.cancel(&Cancelled{Reason: reason})
		r.log.Info("cancelling job", "job", id, "reason", reason)
	case t != nil:
		r.finish(ctx, t, store.StateCancelled, events.FailureCancelled, "queued: "+reason)
		close(t.done)
	default:
		j, err := r.st.Get(id)
		if err != nil || j.State != store.StatePaused {
			return false
		}
		r.finish(ctx, &task{id: id}, store.StateCancelled, events.FailureCancelled, "paused: "+reason)
		r.wg.Go(func() { r.retryCleanup(r.runCtx, id) })
	}
	return true
}

// SetRate changes the bandwidth limit of the job with id, queued or
// running, at once (0: none of its own). It reports whether the runner
// holds the job.
func (r *Runner) SetRate(id string, bytesPerSecond int64) bool {
	t, _ := r.held(id, false)
	if t == nil {
		return false
	}
	t.limiter.SetRate(bytesPerSecond)
	r.log.Info("job rate", "job", id, "bytes_per_second", bytesPerSecond)
	return true
}

// Pause stops the job with id at a checkpoint and keeps its snapshot and
// credentials: a running job once its disks' checkpoints are durable, a
// queued one at once. It ends paused (a paused status) until a replicate
// command for it resumes it. It reports whether the job was queued or
// running.
func (r *Runner) Pause(ctx context.Context, id, reason string) bool {
	if reason == "" {
		reason = "paused"
	}
	t, running := r.held(id, true)
	switch {
	case running:
		t.cancel(&Paused{Reason: reason})
		r.log.Info("pausing job", "job", id, "reason", reason)
	case t != nil:
		r.paused(ctx, t, reason)
		close(t.done)
	default:
		return false
	}
	return true
}

// paused records that job t stopped to go on later and says so to the
// OMA.
func (r *Runner) paused(ctx context.Context, t *task, reason string) {
	now := r.cfg.Now().UTC()
	if _, err := r.st.Update(t.id, false, func(j *store.Job) error {
		j.State, j.UpdatedAt = store.StatePaused, now
		return nil
	}); err != nil {
		r.log.Error("record a job paused", "job", t.id, "err", err)
	}
	r.log.Info("job paused", "job", t.id, "reason", reason)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.publishStatus(pctx, t, events.StatusPaused, nil, &events.Failure{Code: events.FailureCancelled, Message: "paused: " + reason}); err != nil {
		r.log.Error("publish a job paused", "job", t.id, "err", err)
	}
}

// Wait waits until the job with id, if the runner holds it, has ended.
func (r *Runner) Wait(ctx context.Context, id string) error {
	r.mu.Lock()
	t := r.running[id]
	r.mu.Unlock()
	if t == nil {
		return nil
	}
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Progress returns the job's progress: live while the runner holds it,
// else as last stored. The error wraps store.ErrNotFound for a job the VMA
// does not know.
func (r *Runner) Progress(id string) (Progress, error) {
	j, err := r.st.Get(id)
	if err != nil {
		return Progress{}, err
	}
	r.mu.Lock()
	t := r.running[id]
	r.mu.Unlock()
	if t != nil {
		p, _ := t.tracker.snapshot()
		p.JobID, p.State = id, j.State
		if j.State == store.StateQueued {
			p.State = store.StateRunning
		}
		return p, nil
	}
	return storedProgress(j), nil
}

// storedProgress is the progress a stored job shows; a job that ended
// shows its average rate over the whole run, from start to end.
func storedProgress(j store.Job) Progress {
	state := j.State
	if state == "" {
		state = store.StateAccepted
	}
	p := Progress{JobID: j.JobID, State: state, Phase: j.Phase, Disks: []DiskProgress{}, Figures: events.Figures{
		BytesTotal: j.BytesTotal, BytesDone: j.BytesDone, Percent: percent(j.BytesDone, j.BytesTotal),
		VerifyBytesTotal: j.VerifyBytesTotal, VerifyBytesDone: j.VerifyBytesDone}}
	if j.VerifyBytesTotal > 0 {
		p.VerifyPercent = percent(j.VerifyBytesDone, j.VerifyBytesTotal)
	}
	if j.BytesTotal == 0 && !store.Final(state) {
		p.Percent = 0
	}
	for _, d := range j.Disks {
		p.Disks = append(p.Disks, DiskProgress{Key: d.Key, BytesTotal: d.BytesTotal, BytesDone: d.BytesDone,
			Percent: percent(d.BytesDone, d.BytesTotal), Checkpoint: d.Checkpoint,
			VerifyBytesTotal: d.VerifyBytesTotal, VerifyBytesDone: d.VerifyBytesDone})
	}
	if state != store.StateRunning {
		p.Phase = ""
	}
	if state == store.StateCompleted {
		var zero int64
		p.ETASeconds = &zero
	}
	if j.StartedAt != nil && j.EndedAt != nil {
		if secs := j.EndedAt.Sub(*j.StartedAt).Seconds(); secs > 0 {
			p.AverageRateBytesPerSecond = int64(float64(j.BytesDone) / secs)
		}
	}
	return p
}

// Job returns the stored job with id; the error wraps store.ErrNotFound
// when the VMA does not know it.
func (r *Runner) Job(id string) (store.Job, error) { return r.st.Get(id) }

// publishStatus publishes a replication status of t, with the next seq.
func (r *Runner) publishStatus(ctx context.Context, t *task, state string, disks []events.DiskChange, failure *events.Failure) error {
	ev, err := r.statusEvent(t, state, disks, failure)
	if err != nil {
		return err
	}
	return r.sendStatus(ctx, t, state, ev)
}

// statusEvent makes a replication status event of t with the next seq.
func (r *Runner) statusEvent(t *task, state string, disks []events.DiskChange, failure *events.Failure) (events.Event, error) {
	t.pubMu.Lock()
	defer t.pubMu.Unlock()
	j, err := r.st.Update(t.id, false, func(j *store.Job) error {
		j.Seq++
		return nil
	})
	if err != nil {
		return events.Event{}, err
	}
	var done, zero int64
	for _, d := range j.Disks {
		done, zero = done+d.BytesDone, zero+d.ZeroBytes
	}
	st := &events.ReplicationStatus{JobID: t.id, VMAID: r.cfg.Identity.ID, Seq: j.Seq, State: state, BytesTransferred: done, ZeroBytes: min(zero, done),
		Disks: disks, Error: failure}
	ev, err := r.conn.NewEvent(st)
	if err != nil {
		return events.Event{}, fmt.Errorf("%s status of job %s: %w", state, t.id, err)
	}
	return ev, nil
}

// sendStatus publishes ev, a status of t, through the publisher's window
// after the progress before it, and waits until the bus acknowledges it
// or ctx ends. Sending it again stores it once.
func (r *Runner) sendStatus(ctx context.Context, t *task, state string, ev events.Event) error {
	t.pubMu.Lock()
	defer t.pubMu.Unlock()
	if r.pub == nil {
		if _, err := r.conn.PublishEvent(ctx, ev); err != nil {
			return fmt.Errorf("publish %s status of job %s: %w", state, t.id, err)
		}
		return nil
	}
	acked := make(chan struct{})
	if err := r.pub.PublishEvent(ctx, ev, func() { close(acked) }); err != nil {
		return fmt.Errorf("publish %s status of job %s: %w", state, t.id, err)
	}
	select {
	case <-acked:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publish %s status of job %s: not acknowledged: %w", state, t.id, ctx.Err())
	}
}

// publishProgress publishes t's progress when it changed (or always, when
// force), with the next seq, and stores it.
func (r *Runner) publishProgress(ctx context.Context, t *task, force bool) {
	t.pubMu.Lock()
	defer t.pubMu.Unlock()
	now := time.Now()
	if !force && now.Sub(t.lastProgress) < r.cfg.ProgressInterval {
		return // at most one per interval, however late the last one went
	}
	p, changed := t.tracker.snapshot()
	if (!changed && !force) || p.Phase == "" {
		return
	}
	j, err := r.st.Update(t.id, false, func(j *store.Job) error {
		j.Seq++
		// The figures never go back: a total once known stays until another
		// is known, and bytes done only grow.
		j.Phase, j.UpdatedAt = p.Phase, r.cfg.Now().UTC()
		if p.BytesTotal > 0 {
			j.BytesTotal = p.BytesTotal
		}
		j.BytesDone = max(j.BytesDone, p.BytesDone)
		j.VerifyBytesTotal, j.VerifyBytesDone = p.VerifyBytesTotal, p.VerifyBytesDone
		for _, d := range p.Disks {
			for i := range j.Disks {
				if j.Disks[i].Key == d.Key {
					j.Disks[i].BytesTotal = d.BytesTotal
					j.Disks[i].BytesDone = max(j.Disks[i].BytesDone, d.BytesDone)
					j.Disks[i].VerifyBytesTotal, j.Disks[i].VerifyBytesDone = d.VerifyBytesTotal, d.VerifyBytesDone
				}
			}
		}
		return nil
	})
	if err != nil {
		r.log.Warn("store progress", "job", t.id, "err", err)
		return
	}
	t.lastProgress = time.Now()
	ev := p.event(t.id, r.cfg.Identity.ID, j.Seq)
	if r.pub != nil { // sent again until stored; the window bounds what waits
		_, err = r.pub.Publish(ctx, ev, func() { r.checkpointsAcked(t.id, ev) })
	} else {
		_, err = r.conn.Publish(ctx, ev)
	}
	if err != nil && ctx.Err() == nil {
		r.log.Warn("publish progress", "job", t.id, "err", err)
	}
}

// checkpointsAcked records the checkpoints of ev, a progress event of job
// id the bus acknowledged: the checkpoints a resume starts from move only
// once the OMA can know them. Each is durable on the OMA's volume already
// (its export was flushed). An event of a snapshot the job no longer
// copies from moves nothing.
func (r *Runner) checkpointsAcked(id string, ev *events.Progress) {
	_, err := r.st.Update(id, false, func(j *store.Job) error {
		if j.Snapshot == "" || j.Snapshot != ev.Snapshot {
			return nil
		}
		for _, d := range ev.Disks {
			for i := range j.Disks {
				if j.Disks[i].Key == d.Key && d.Checkpoint > j.Disks[i].Checkpoint {
					j.Disks[i].Checkpoint = d.Checkpoint
				}
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		r.log.Warn("record the acknowledged checkpoints", "job", id, "err", err)
	}
}

// finish records t's end in state with why (empty when completed), wipes
// its sealed password unless a snapshot may be left to remove, and
// publishes the terminal status.
func (r *Runner) finish(ctx context.Context, t *task, state, code, why string, disks ...events.DiskChange) {
	now := r.cfg.Now().UTC()
	_, err := r.st.Update(t.id, false, func(j *store.Job) error {
		j.State, j.Error, j.ErrorCode, j.EndedAt, j.UpdatedAt = state, why, code, &now, now
		// A job this run held removed its snapshot on its way out; one
		// ended after a restart may have one that was never recorded.
		if j.Snapshot == "" && (t.cmd != nil || j.VMRef == "") {
			j.Password = nil
		}
		return nil
	})
	if err != nil {
		r.log.Error("record the end of a job", "job", t.id, "state", state, "err", err)
	}
	var failure *events.Failure
	if state != store.StateCompleted {
		failure = &events.Failure{Code: code, Message: why}
	}
	status := map[string]string{store.StateCompleted: events.StatusCompleted, store.StateFailed: events.StatusFailed,
		store.StateCancelled: events.StatusCancelled}[state]
	r.log.Info("job ended", "job", t.id, "state", state, "why", why)
	// The OMA must learn it: try again while the bus is away (the OMA
	// restarts), for ExportRetry at most.
	deadline := time.Now().Add(r.cfg.ExportRetry)
	ev, err := r.statusEvent(t, status, disks, failure)
	if err != nil {
		r.log.Error("publish the end of a job", "job", t.id, "state", state, "err", err)
		return
	}
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := r.sendStatus(pctx, t, status, ev) // the same event: stored once
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.log.Error("publish the end of a job: giving up", "job", t.id, "state", state, "err", err)
			return
		}
		r.log.Warn("publish the end of a job: trying again", "job", t.id, "state", state, "err", err, "retry_in", delay)
		time.Sleep(delay)
	}
}
