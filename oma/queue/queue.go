// Package queue is the OMA's one queue of replication jobs. Every started
// job waits here, stored in bbolt, until a slot is free under every limit
// that applies to it: its VMA's capacity (announced in its heartbeats), the
// source's vCenter, ESXi host and datastores, and its plan. Then the queue
// dispatches it: the replicate command goes to the VMA through the outbox,
// in the transaction that records the dispatch. A job holds its slots from
// its dispatch until it ends.
//
// The queue keeps the waiting and running entries in memory as well (the
// store is the truth after a restart) and decides in passes: one after
// every change that may free or need a slot, and one every second.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// Defaults of the limits.
const (
	// DefaultVMACapacity is a VMA's capacity when its heartbeats do not
	// announce one.
	DefaultVMACapacity = 4
	// DefaultPlanMax is how many jobs of a plan run at once when the plan
	// sets no limits.max_concurrent.
	DefaultPlanMax = 16
	// DefaultHeartbeatTimeout is how long after its last heartbeat a VMA
	// gets no more jobs.
	DefaultHeartbeatTimeout = 30 * time.Second
)

// DefaultSourceLimits bound the jobs reading from one vCenter, ESXi host
// and datastore at once, where the vCenter sets no limits of its own.
var DefaultSourceLimits = store.SourceLimits{VCenter: 16, ESXiHost: 4, Datastore: 4}

// Config configures a Queue.
type Config struct {
	// Source is the source of the events the queue writes, such as
	// /godwit/oma.
	Source string
	// HeartbeatTimeout is how long after its last heartbeat a VMA gets no
	// more jobs; 0 means DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// Interval is the longest time between two passes; 0 means 1s.
	Interval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// kicker publishes what the queue wrote to the outbox; *outbox.Outbox
// satisfies it.
type kicker interface{ Kick() }

// Queue is the OMA's queue of started jobs. It is safe for concurrent use.
type Queue struct {
	cfg    Config
	store  *store.Store
	outbox kicker
	log    *slog.Logger
	kick   chan struct{}
	passMu sync.Mutex // one pass at a time
	// passedIn is set while a transaction under Hold made its pass
	// (DispatchIn): what it frees needs no pass of its own.
	passedIn atomic.Bool

	mu      sync.Mutex
	waiting map[string]*store.QueueEntry // by job id, without their commands
	// order holds the waiting entries oldest first (and some gone since,
	// which are not in waiting any more); sorted again when dirty.
	order      []*store.QueueEntry
	orderDirty bool
	running    map[string]*store.QueueEntry
	decisions  map[string]Decision // of the waiting jobs, from the last pass
	announced  map[string]bool     // waiting jobs whose queued event is written
	sent       map[string]sentRate // running jobs' rates as last told their VMAs
}

// sentRate is a rate told a VMA, and when.
type sentRate struct {
	rate int64
	at   time.Time
}

// rateRepeat is how often a running job's limit is told its VMA again,
// for a VMA that restarted (it forgets the rates) and one that missed a
// change.
const rateRepeat = 30 * time.Second

// New returns the queue of the jobs in st; it publishes through out. Run
// loads what the store holds.
func New(cfg Config, st *store.Store, out kicker) *Queue {
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Queue{cfg: cfg, store: st, outbox: out, log: log, kick: make(chan struct{}, 1),
		waiting: map[string]*store.QueueEntry{}, running: map[string]*store.QueueEntry{},
		decisions: map[string]Decision{}, announced: map[string]bool{}, sent: map[string]sentRate{}}
}

// load reads the waiting and running entries from the store.
func (q *Queue) load() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	err := q.store.View(func(tx *bbolt.Tx) error {
		waiting, err := store.Queued(tx)
		if err != nil {
			return err
		}
		for _, e := range waiting {
			q.setWaiting(light(e))
			q.announced[e.JobID] = true // before the restart, or dispatched at the first pass
		}
		running, err := store.Running(tx)
		for _, e := range running {
			q.running[e.JobID] = light(e)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("load the queue: %w", err)
	}
	return nil
}

// setWaiting puts e among the waiting entries, under q.mu.
func (q *Queue) setWaiting(e *store.QueueEntry) {
	q.waiting[e.JobID] = e
	q.orderDirty = true
}

// waitingInOrder returns the waiting entries oldest first, under q.mu.
func (q *Queue) waitingInOrder() []*store.QueueEntry {
	if q.orderDirty {
		q.order = q.order[:0]
		for _, e := range q.waiting {
			q.order = append(q.order, e)
		}
		slices.SortFunc(q.order, byAge)
		q.orderDirty = false
	}
	waiting := make([]*store.QueueEntry, 0, len(q.waiting))
	for _, e := range q.order {
		if q.waiting[e.JobID] == e {
			waiting = append(waiting, e)
		}
	}
	if len(q.order) > 2*len(waiting)+64 { // drop the gone ones now and then
		q.order = append(q.order[:0], waiting...)
	}
	return waiting
}

// light returns e without its command, as the queue keeps it in memory.
func light(e store.QueueEntry) *store.QueueEntry {
	e.Command = events.ReplicateCommand{}
	return &e
}

// Enqueue puts e into the queue in tx, as waiting; the queue takes it up
// when tx commits.
func (q *Queue) Enqueue(tx *bbolt.Tx, e store.QueueEntry) error {
	if err := store.PutQueued(tx, e); err != nil {
		return fmt.Errorf("queue job %s: %w", e.JobID, err)
	}
	tx.OnCommit(func() {
		q.mu.Lock()
		q.setWaiting(light(e))
		q.mu.Unlock()
		q.Kick()
	})
	return nil
}

// Adopt counts e, a job its VMA started without the queue (the VMA's own
// /replicate), as running from when tx commits: it holds its slots like a
// dispatched job until it ends.
func (q *Queue) Adopt(tx *bbolt.Tx, e store.QueueEntry) error {
	if err := store.PutRunning(tx, e); err != nil {
		return fmt.Errorf("adopt job %s: %w", e.JobID, err)
	}
	tx.OnCommit(func() {
		q.mu.Lock()
		q.running[e.JobID] = light(e)
		q.mu.Unlock()
	})
	return nil
}

// Park moves job id out of the waiting or running ones in tx, as it
// pauses: it holds no slot until Unpark; its command is kept for then.
func (q *Queue) Park(tx *bbolt.Tx, id string) error {
	if _, err := store.Park(tx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("park job %s: %w", id, err)
	}
	q.forget(tx, id)
	return nil
}

// Unpark puts paused job id back in the queue in tx, waiting from now; an
// error wrapping store.ErrNotFound when the queue kept no command for it.
func (q *Queue) Unpark(tx *bbolt.Tx, id string) error {
	e, err := store.Unpark(tx, id, q.cfg.Now().UTC())
	if err != nil {
		return fmt.Errorf("resume job %s: %w", id, err)
	}
	tx.OnCommit(func() {
		q.mu.Lock()
		q.setWaiting(light(e))
		q.mu.Unlock()
		q.Kick()
	})
	return nil
}

// Requeue puts e, dispatched or waiting, back in the queue as waiting in
// tx: a job moved to another VMA, whose command e carries. Its slots on
// the old VMA are free, and a pass follows, when tx commits.
func (q *Queue) Requeue(tx *bbolt.Tx, e store.QueueEntry) error {
	if err := store.Requeue(tx, e); err != nil {
		return fmt.Errorf("queue job %s again: %w", e.JobID, err)
	}
	tx.OnCommit(func() {
		q.mu.Lock()
		delete(q.running, e.JobID)
		delete(q.decisions, e.JobID)
		delete(q.announced, e.JobID)
		delete(q.sent, e.JobID)
		q.setWaiting(light(e))
		q.mu.Unlock()
		q.Kick()
	})
	return nil
}

// forget drops job id from memory when tx commits, and asks for a pass.
func (q *Queue) forget(tx *bbolt.Tx, id string) {
	tx.OnCommit(func() {
		q.mu.Lock()
		delete(q.waiting, id)
		delete(q.running, id)
		delete(q.decisions, id)
		delete(q.announced, id)
		delete(q.sent, id)
		q.mu.Unlock()
		if !q.passedIn.Load() { // DispatchIn made the pass in this transaction
			q.Kick()
		}
	})
}

// SetRate sets job id's own bandwidth limit in its queue entry in tx, and
// in memory when tx commits; the next pass tells its VMA. It reports
// whether the job is in the queue.
func (q *Queue) SetRate(tx *bbolt.Tx, id string, rate int64) (bool, error) {
	ok, err := store.SetQueueRate(tx, id, rate)
	if err != nil || !ok {
		return ok, err
	}
	tx.OnCommit(func() {
		q.mu.Lock()
		for _, m := range []map[string]*store.QueueEntry{q.waiting, q.running} {
			if e, ok := m[id]; ok {
				c := *e
				c.RateLimit = rate
				m[id] = &c
			}
			q.orderDirty = true
		}
		q.mu.Unlock()
		q.Kick()
	})
	return true, nil
}

// Remove takes job id out of the queue in tx, waiting or running, as its
// job ends; its slots are free when tx commits.
func (q *Queue) Remove(tx *bbolt.Tx, id string) error {
	was, err := store.Dequeue(tx, id)
	if err != nil {
		return fmt.Errorf("dequeue job %s: %w", id, err)
	}
	if was {
		q.forget(tx, id)
	}
	return nil
}

// LimitsChanged writes p, a change to limits the queue applies, to the
// outbox in tx, the transaction that makes the change; when tx commits it
// is published and the queue makes a pass under the new limits.
func (q *Queue) LimitsChanged(tx *bbolt.Tx, p *events.QueueLimits) error {
	p.ChangedAt = q.cfg.Now().UTC()
	if err := q.event(tx, p, p.ChangedAt); err != nil {
		return fmt.Errorf("limits event: %w", err)
	}
	tx.OnCommit(func() {
		q.outbox.Kick()
		q.Kick()
	})
	return nil
}

// Kick asks for a pass soon, without waiting.
func (q *Queue) Kick() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Run loads the queue from the store, then makes passes until ctx ends:
// after every Kick, and a full one (every waiting job's position and
// reason brought up to date) every Config.Interval.
func (q *Queue) Run(ctx context.Context) error {
	if err := q.load(); err != nil {
		return err
	}
	t := time.NewTicker(q.cfg.Interval)
	defer t.Stop()
	full := true
	for {
		if err := q.Pass(ctx, full); err != nil && ctx.Err() == nil {
			q.log.Warn("queue pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-q.kick:
			full = false
		case <-t.C:
			full = true
		}
	}
}

// Waiting is a job waiting in the queue, as the API shows it.
type Waiting struct {
	JobID           string    `json:"job_id"`
	VMAID           string    `json:"vma_id"`
	ReplicationType string    `json:"replication_type"`
	Plan            string    `json:"plan,omitempty"`
	Priority        int       `json:"priority"`
	VCenter         string    `json:"vcenter"`
	ESXiHost        string    `json:"esxi_host,omitempty"`
	Datastores      []string  `json:"datastores,omitempty"`
	QueuedAt        time.Time `json:"queued_at"`
	// Position is the job's place in the queue's order, from 1; 0 until
	// the queue's first pass since it was queued.
	Position int `json:"position"`
	// WaitingFor names the limit that keeps it waiting.
	WaitingFor string `json:"waiting_for"`
}

// List returns the waiting jobs in the queue's order.
func (q *Queue) List() []Waiting {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Waiting, 0, len(q.waiting))
	for _, e := range q.waiting {
		out = append(out, q.waitingLocked(e))
	}
	slices.SortFunc(out, func(a, b Waiting) int {
		// The ones the last pass did not see (position 0) last, oldest first.
		if (a.Position == 0) != (b.Position == 0) {
			if a.Position == 0 {
				return 1
			}
			return -1
		}
		if a.Position != b.Position {
			return a.Position - b.Position
		}
		return a.QueuedAt.Compare(b.QueuedAt)
	})
	return out
}

// Status returns job id as it waits in the queue; false when it does not
// wait (not started, dispatched or ended).
func (q *Queue) Status(id string) (Waiting, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.waiting[id]
	if !ok {
		return Waiting{}, false
	}
	return q.waitingLocked(e), true
}

func (q *Queue) waitingLocked(e *store.QueueEntry) Waiting {
	d := q.decisions[e.JobID]
	return Waiting{JobID: e.JobID, VMAID: e.VMAID, ReplicationType: e.ReplicationType, Plan: e.Plan, Priority: e.Priority,
		VCenter: e.VCenter, ESXiHost: e.ESXiHost, Datastores: e.Datastores, QueuedAt: e.QueuedAt,
		Position: d.Position, WaitingFor: d.WaitingFor}
}

// PerVMA counts each VMA's jobs in the queue: waiting, or dispatched and
// not ended.
func (q *Queue) PerVMA() map[string]int {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := map[string]int{}
	for _, e := range q.waiting {
		out[e.VMAID]++
	}
	for _, e := range q.running {
		out[e.VMAID]++
	}
	return out
}

// Running returns how many dispatched jobs of each VMA have not ended.
func (q *Queue) Running() map[string]int {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := map[string]int{}
	for _, e := range q.running {
		out[e.VMAID]++
	}
	return out
}

// Pass decides once: it dispatches every waiting job a slot is free for,
// in the queue's order, and records why the others wait: all of them when
// full, else those it went through before the VMAs' slots ran out.
func (q *Queue) Pass(ctx context.Context, full bool) error {
	q.passMu.Lock()
	defer q.passMu.Unlock()
	now := q.cfg.Now().UTC()
	var r *rules
	err := q.store.View(func(tx *bbolt.Tx) error {
		var err error
		r, err = q.rules(tx, now)
		return err
	})
	if err != nil {
		return err
	}
	p := q.plan(r, full, nil, now)
	if p.empty() {
		q.setDecisions(p.decisions, nil, nil)
		return ctx.Err()
	}
	err = q.store.Update(func(tx *bbolt.Tx) error { return q.write(tx, p) })
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	q.done(p)
	return nil
}

// Hold runs update, the transaction of a change that frees slots (jobs
// that end), holding the queue's pass lock when no pass holds it, so that
// update can dispatch in its own transaction (DispatchIn): the next jobs'
// commands commit with the ends that freed their slots. held says whether
// it could; without, the ends' commit kicks a pass as ever.
func (q *Queue) Hold(update func(held bool) error) error {
	if !q.passMu.TryLock() {
		return update(false)
	}
	defer q.passMu.Unlock()
	defer q.passedIn.Store(false)
	return update(true)
}

// DispatchIn makes a fast pass within tx, the transaction of Hold's update
// that ended the jobs ended (Remove was called for them in tx): it
// dispatches what their slots and any other free ones allow, in tx, and
// takes it up when tx commits.
func (q *Queue) DispatchIn(tx *bbolt.Tx, ended []string) error {
	now := q.cfg.Now().UTC()
	r, err := q.rules(tx, now)
	if err != nil {
		return err
	}
	q.passedIn.Store(true)
	p := q.plan(r, false, ended, now)
	if p.empty() {
		return nil
	}
	if err := q.write(tx, p); err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	tx.OnCommit(func() { q.done(p) })
	return nil
}

// passPlan is what a pass decided: the dispatches, the decisions, the
// queued events to write and the rates to tell.
type passPlan struct {
	now       time.Time
	dispatch  []*store.QueueEntry
	decisions map[string]Decision
	rates     map[string]int64
	fresh     []string
	tell      []*store.QueueEntry
	sent      []*store.QueueEntry // filled by write
}

func (p *passPlan) empty() bool { return len(p.dispatch) == 0 && len(p.fresh) == 0 && len(p.tell) == 0 }

// plan decides a pass over the jobs in memory under r, leaving out the
// running jobs gone (ended in the transaction at hand).
func (q *Queue) plan(r *rules, full bool, gone []string, now time.Time) *passPlan {
	q.mu.Lock()
	waiting := q.waitingInOrder()
	running := make([]*store.QueueEntry, 0, len(q.running))
	for _, e := range q.running {
		if !slices.Contains(gone, e.JobID) {
			running = append(running, e)
		}
	}
	q.mu.Unlock()
	p := &passPlan{now: now}
	p.dispatch, p.decisions = decide(waiting, running, r, full)
	p.rates = r.rates(append(running, p.dispatch...))

	// What to write: the dispatches, a queued event for each job the queue
	// sees waiting for the first time, and the running jobs' new rates.
	q.mu.Lock()
	defer q.mu.Unlock()
	for id, d := range p.decisions {
		if d.WaitingFor != "" && !q.announced[id] {
			p.fresh = append(p.fresh, id)
		}
	}
	for _, e := range running {
		s, ok := q.sent[e.JobID]
		// The repeats go only to a VMA that is there: they would pile
		// up in a gone VMA's command queue, which keeps so many.
		repeat := full && s.rate > 0 && now.Sub(s.at) >= rateRepeat && r.vmas[e.VMAID].down == ""
		if !ok || s.rate != p.rates[e.JobID] || repeat {
			p.tell = append(p.tell, e)
		}
	}
	return p
}

// write writes plan p in tx: the rates, the dispatches, the queued events.
func (q *Queue) write(tx *bbolt.Tx, p *passPlan) error {
	p.sent = p.sent[:0]
	for _, e := range p.tell {
		if err := q.event(tx, &events.ReplicateRate{JobID: e.JobID, VMAID: e.VMAID, BytesPerSecond: p.rates[e.JobID]}, p.now); err != nil {
			return err
		}
	}
	// The commands first, then their dispatched events: the VMAs get
	// their work without waiting for the events' publish.
	var announce []events.Payload
	for _, e := range p.dispatch {
		ev, err := q.dispatch(tx, e.JobID, p.decisions[e.JobID].Position, p.rates[e.JobID], p.now)
		if err != nil {
			return err
		}
		if ev != nil {
			p.sent = append(p.sent, e)
			announce = append(announce, ev)
		}
	}
	for _, ev := range announce {
		if err := q.event(tx, ev, p.now); err != nil {
			return err
		}
	}
	for _, id := range p.fresh {
		e, err := store.GetQueued(tx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue // dispatched or ended meanwhile
		}
		if err != nil {
			return err
		}
		d := p.decisions[id]
		if err := q.event(tx, &events.QueueQueued{JobID: id, VMAID: e.VMAID, Plan: e.Plan, Priority: e.Priority,
			Position: d.Position, WaitingFor: d.WaitingFor, QueuedAt: e.QueuedAt}, p.now); err != nil {
			return err
		}
	}
	return nil
}

// done takes up plan p once written and committed.
func (q *Queue) done(p *passPlan) {
	q.setDecisions(p.decisions, p.sent, p.fresh)
	q.mu.Lock()
	for _, e := range append(p.tell, p.sent...) {
		if _, ok := q.running[e.JobID]; ok {
			q.sent[e.JobID] = sentRate{p.rates[e.JobID], p.now}
		}
	}
	q.mu.Unlock()
	q.outbox.Kick()
	for _, e := range p.sent {
		q.log.Info("job dispatched", "job", e.JobID, "vma", e.VMAID, "waited", p.now.Sub(e.QueuedAt).Round(time.Millisecond))
	}
}

// setDecisions records a pass's decisions and moves the jobs it sent to
// the running ones.
func (q *Queue) setDecisions(decisions map[string]Decision, sent []*store.QueueEntry, announced []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for id, d := range decisions {
		if _, ok := q.waiting[id]; ok {
			q.decisions[id] = d
		}
	}
	for _, id := range announced {
		if _, ok := q.waiting[id]; ok {
			q.announced[id] = true
		}
	}
	for _, e := range sent {
		if _, ok := q.waiting[e.JobID]; !ok {
			continue // ended meanwhile: Remove ran after the dispatch committed
		}
		delete(q.waiting, e.JobID)
		delete(q.decisions, e.JobID)
		delete(q.announced, e.JobID)
		q.running[e.JobID] = e
	}
}

// dispatch sends waiting job id to its VMA in tx: the job records the
// dispatch, the entry moves to the running ones, and the replicate command
// goes to the outbox. It returns the dispatched event to write after it,
// or nil when the job no longer waits.
func (q *Queue) dispatch(tx *bbolt.Tx, id string, position int, rate int64, now time.Time) (*events.QueueDispatched, error) {
	e, err := store.GetQueued(tx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	j, err := store.GetJob(tx, id)
	if err != nil {
		return nil, err
	}
	if j.State != events.JobQueued {
		_, err := store.Dequeue(tx, id) // moved on without being removed: not ours to send
		return nil, err
	}
	j.DispatchedAt, e.DispatchedAt = &now, &now
	cmd := e.Command // kept with the entry until the job ends: a resume sends it again
	cmd.RateBytesPerSecond = rate
	if err := store.PutJob(tx, j); err != nil {
		return nil, err
	}
	if err := store.PutRunning(tx, e); err != nil {
		return nil, err
	}
	ev, err := events.New(q.cfg.Source, &cmd, now)
	if err != nil {
		return nil, fmt.Errorf("command of job %s: %w", id, err)
	}
	if err := store.Enqueue(tx, ev); err != nil {
		return nil, err
	}
	return &events.QueueDispatched{JobID: id, VMAID: e.VMAID, Plan: e.Plan, Position: position,
		WaitedSeconds: now.Sub(e.QueuedAt).Seconds(), DispatchedAt: now}, nil
}

// event writes a queue event to the outbox in tx.
func (q *Queue) event(tx *bbolt.Tx, p events.Payload, now time.Time) error {
	ev, err := events.New(q.cfg.Source, p, now)
	if err != nil {
		return err
	}
	return store.Enqueue(tx, ev)
}

// Capacity returns how many jobs VMA v takes at once: its heartbeat's
// max_jobs, else DefaultVMACapacity.
func Capacity(v store.VMA) int {
	if v.Load != nil && v.Load.MaxJobs > 0 {
		return v.Load.MaxJobs
	}
	return DefaultVMACapacity
}

// VMASlots returns how many jobs VMA v takes at once (its heartbeat's
// max_jobs, else DefaultVMACapacity) and, when it takes none now, why: no
// heartbeat, or none for longer than timeout.
func VMASlots(v store.VMA, now time.Time, timeout time.Duration) (capacity int, down string) {
	capacity = Capacity(v)
	switch {
	case v.LastSeen == nil:
		down = "no heartbeat yet"
	case now.Sub(*v.LastSeen) > timeout:
		down = fmt.Sprintf("no heartbeat for %s", now.Sub(*v.LastSeen).Round(time.Second))
	}
	return capacity, down
}

// rules reads every limit that applies now from tx.
func (q *Queue) rules(tx *bbolt.Tx, now time.Time) (*rules, error) {
	r := &rules{vmas: map[string]vmaSlots{}, vcenters: map[string]store.SourceLimits{}, plans: map[string]planRules{},
		defaults: DefaultSourceLimits, planMax: DefaultPlanMax}
	vmas, err := store.VMAs(tx)
	if err != nil {
		return nil, err
	}
	settings, err := store.GetSettings(tx)
	if err != nil {
		return nil, err
	}
	r.globalRate, r.vmaRates, r.planRates = RateAt(settings.RateLimit, settings.RateWindows, now), map[string]int64{}, map[string]int64{}
	for _, v := range vmas {
		r.vmaRates[v.ID] = RateAt(v.RateLimit, v.RateWindows, now)
		capacity, down := VMASlots(v, now, q.cfg.HeartbeatTimeout)
		r.vmas[v.ID] = vmaSlots{capacity: capacity, down: down}
	}
	vcs, err := store.VCenters(tx)
	if err != nil {
		return nil, err
	}
	for _, vc := range vcs {
		r.vcenters[vc.Host] = Fill(vc.Limits, DefaultSourceLimits)
	}
	plans, err := store.Plans(tx)
	if err != nil {
		return nil, err
	}
	for _, p := range plans {
		r.plans[p.Name] = planRules{limits: p.Limits, priority: p.Priority}
		r.planRates[p.Name] = RateAt(p.RateLimit, p.RateWindows, now)
	}
	return r, nil
}

// Fill returns l with its zero fields set from d.
func Fill(l, d store.SourceLimits) store.SourceLimits {
	if l.VCenter <= 0 {
		l.VCenter = d.VCenter
	}
	if l.ESXiHost <= 0 {
		l.ESXiHost = d.ESXiHost
	}
	if l.Datastore <= 0 {
		l.Datastore = d.Datastore
	}
	return l
}
