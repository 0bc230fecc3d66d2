package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/export"
	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/store"
	"github.com/godwit/godwit/vma/vcenter"
)

// stepError is a job's failure: the step, the disk (0: none) and the cause.
type stepError struct {
	step string
	disk int32
	code string
	err  error
}

func (e *stepError) Error() string {
	if e.disk != 0 {
		return fmt.Sprintf("%s: disk %d: %v", e.step, e.disk, e.err)
	}
	return fmt.Sprintf("%s: %v", e.step, e.err)
}

func (e *stepError) Unwrap() error { return e.err }

// fail wraps err as the failure of step.
func fail(step string, disk int32, err error) error {
	return &stepError{step: step, disk: disk, code: failureCode(err), err: err}
}

// failureCode is the events.Failure code of err: a verification's
// mismatch, else what vCenter's errors map to.
func failureCode(err error) string {
	if errors.Is(err, copier.ErrMismatch) {
		return events.FailureMismatch
	}
	return vcenter.FailureCode(err)
}

// recordZero records the zero bytes the run that finished disk key found.
func (r *Runner) recordZero(id string, key int32, zero int64) {
	_, err := r.st.Update(id, false, func(j *store.Job) error {
		for i := range j.Disks {
			if j.Disks[i].Key == key {
				j.Disks[i].ZeroBytes = zero
			}
		}
		return nil
	})
	if err != nil {
		r.log.Warn("record a disk's zero bytes", "job", id, "disk", key, "err", err)
	}
}

// run runs the job t until it ends, and records and reports how it ended.
func (r *Runner) run(ctx context.Context, t *task) {
	log := r.log.With("job", t.id)
	log.Info("job starting", "vm_paths", t.cmd.VMPaths)
	changes, err := r.execute(ctx, t)
	var paused *Paused
	if err != nil && errors.As(context.Cause(ctx), &paused) {
		r.paused(ctx, t, fmt.Sprintf("%s (%s)", paused.Reason, stepOf(err)))
		return
	}
	if err != nil && errors.Is(context.Cause(ctx), errStopping) {
		log.Info("job interrupted: it resumes when the VMA starts again", "during", stepOf(err))
		return
	}
	if why, moved := movedError(err); moved || t.moved.Load() != nil {
		if w := t.moved.Load(); w != nil {
			why = *w
		}
		r.letGo(t.id, why)
		return
	}
	left := ""
	if j, gerr := r.st.Get(t.id); gerr == nil && j.Snapshot != "" {
		left = fmt.Sprintf("; snapshot %s%s is still on the VM: its removal is retried (POST /api/v1/cleanup/%s retries now)", SnapshotPrefix, t.id, t.id)
		defer r.wg.Go(func() { r.retryCleanup(r.runCtx, t.id) })
	}
	cause := context.Cause(ctx)
	var cancelled *Cancelled
	switch {
	case err == nil:
		r.finish(ctx, t, store.StateCompleted, "", "", changes...)
	case errors.As(cause, &cancelled):
		r.finish(ctx, t, store.StateCancelled, events.FailureCancelled, fmt.Sprintf("%s (%v)%s", cancelled.Reason, stepOf(err), left))
	default:
		code := events.FailureInternal
		var se *stepError
		if errors.As(err, &se) {
			code = se.code
		}
		r.finish(ctx, t, store.StateFailed, code, err.Error()+left)
	}
}

// stepOf names the step err failed in.
func stepOf(err error) string {
	var se *stepError
	if errors.As(err, &se) {
		if se.disk != 0 {
			return fmt.Sprintf("%s of disk %d", se.step, se.disk)
		}
		return se.step
	}
	return "the job"
}

// execute runs the steps of t. It returns each disk's change id.
func (r *Runner) execute(ctx context.Context, t *task) ([]events.DiskChange, error) {
	now := r.cfg.Now().UTC()
	if _, err := r.st.Update(t.id, false, func(j *store.Job) error {
		j.State, j.StartedAt, j.UpdatedAt = store.StateRunning, &now, now
		return nil
	}); err != nil {
		return nil, fail("record", 0, err)
	}
	if err := r.publishStatus(ctx, t, events.StatusRunning, nil, nil); err != nil {
		return nil, fail("report", 0, err)
	}
	if !t.resume { // a resumed job's counters stay where they were until it copies
		t.tracker.setPhase(events.PhaseSnapshotting)
		r.publishProgress(ctx, t, true)
	}

	if err := r.cfg.Source.Check(ctx); err != nil {
		return nil, fail("source "+r.cfg.Source.Name(), 0, err)
	}
	if len(t.cmd.VMPaths) != 1 {
		return nil, fail("vm_paths", 0, fmt.Errorf("a job replicates exactly one VM, not %d", len(t.cmd.VMPaths)))
	}
	var alloc events.ExportAllocation
	actx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	subj, err := subject.ExportRequest(r.cfg.Identity.ID, t.id)
	if err == nil {
		err = r.conn.RequestServed(actx, subj, struct{}{}, &alloc)
	}
	if err == nil && alloc.JobID != t.id {
		err = fmt.Errorf("the reply to %s is not job %s's allocation", subj, t.id)
	}
	cancel()
	if err != nil {
		return nil, fail("export allocation", 0, err)
	}
	// The first disks' exports open while vCenter takes the snapshot.
	early := r.openEarly(ctx, alloc)
	defer early.close()

	vc := r.cfg.VCenter
	vc.Host, vc.Username, vc.CAPEM, vc.Thumbprint = t.cmd.VCenter, t.cmd.Username, t.cmd.CAPEM, t.cmd.Thumbprint
	s, err := vcenter.LoginSealed(ctx, vc, r.cfg.Identity.Key, t.cmd.Password)
	if err != nil {
		return nil, fail("login", 0, err)
	}
	defer s.Close()

	path := t.cmd.VMPaths[0]
	vm, err := s.FindVM(ctx, path)
	if err != nil {
		return nil, fail("find VM", 0, err)
	}
	if !sameVM(alloc.VM, vm) {
		return nil, fail("find VM", 0, fmt.Errorf("%w: %s now names VM %s (instance UUID %s), not the job's VM %s (instance UUID %s)",
			vcenter.ErrNotFound, path, vm.Ref.Value, vm.InstanceUUID, alloc.VM.ID, alloc.VM.InstanceUUID))
	}
	if _, err := r.st.Update(t.id, false, func(j *store.Job) error {
		j.VMRef, j.ReplicationType = vm.Ref.Value, alloc.ReplicationType
		return nil
	}); err != nil {
		return nil, fail("record", 0, err)
	}
	if enabled, err := s.EnableCBT(ctx, vm); err != nil {
		return nil, fail("enable CBT", 0, err)
	} else if enabled {
		r.log.Info("changed block tracking enabled", "job", t.id, "vm", path)
	}

	snap, resumed, err := r.snapshot(ctx, t, s, vm, alloc)
	removed := false
	if snap != nil {
		defer func() {
			if !removed {
				r.removeSnapshot(ctx, t, s, snap.Ref)
			}
		}()
	}
	if err != nil {
		return nil, fail("snapshot", 0, err)
	}
	t.tracker.setSnapshot(snap.Ref.Value)

	plans, err := r.plan(ctx, s, vm, snap, alloc, t.cmd.OnCBTReset, resumed)
	if err != nil {
		return nil, err
	}
	for i := range plans {
		plans[i].early = early
	}
	// The disks' figures first: the copying event carries them (a resumed
	// job's with what its checkpoints hold).
	t.tracker.setDisks(planned(plans))
	t.tracker.setPhase(events.PhaseCopying)
	r.publishProgress(ctx, t, true)
	pctx, stopProgress := context.WithCancel(ctx)
	var ticks sync.WaitGroup
	ticks.Go(func() { ticker(pctx, r.cfg.ProgressInterval, func() { r.publishProgress(pctx, t, false) }) })
	err = r.copyDisks(ctx, t, DiskRef{Session: s, VCenter: s.Config(), VM: vm, Snapshot: snap}, plans, alloc.ReplicationType)
	stopProgress()
	ticks.Wait()
	r.publishProgress(ctx, t, false)
	if err != nil {
		return nil, err
	}

	t.tracker.setPhase(events.PhaseFinalizing)
	r.publishProgress(ctx, t, true)
	removed = true
	if err := r.removeSnapshotNow(ctx, t, s, snap.Ref); err != nil {
		return nil, fail("remove snapshot", 0, err)
	}
	changes := make([]events.DiskChange, 0, len(plans))
	for _, p := range plans {
		changes = append(changes, events.DiskChange{Key: p.disk.Key, ChangeID: p.disk.ChangeID,
			FullCopy: p.full && alloc.ReplicationType == events.ReplicationIncremental, Verified: p.verified, Digest: p.digest})
	}
	return changes, nil
}

// sameVM reports whether vm is the VM the job was created for: by instance
// UUID when the OMA knows it, else by managed object id.
func sameVM(want events.VMRef, vm *vcenter.VM) bool {
	if want.InstanceUUID != "" {
		return want.InstanceUUID == vm.InstanceUUID
	}
	return want.ID == vm.Ref.Value
}

// diskPlan is one disk to copy: where from, where to, which areas.
type diskPlan struct {
	disk   vcenter.SnapshotDisk
	export events.Export
	areas  []copier.Area
	total  int64
	// full says the areas are the whole disk's data, not what changed
	// since a base: an initial job, a disk new since the base, or a base
	// vCenter refused.
	full bool
	// resumeFrom is the checkpoint an interrupted run of the job left.
	resumeFrom int64
	// early holds the exports opened while the snapshot was taken: the
	// disk's first copy attempt takes its own, if there.
	early *earlyExports
	// verified and digest are the copy's outcome (see copyDisk).
	verified bool
	digest   string
}

// plan matches every allocated disk with the snapshot's disk of the same
// key, and asks vCenter which areas to copy: those that hold data for an
// initial job and for a disk without a base change id; those changed since
// the base for an incremental one. A base vCenter refuses (CBT was reset)
// fails the job, or, with onCBTReset full, makes that disk a full copy.
func (r *Runner) plan(ctx context.Context, s *vcenter.Session, vm *vcenter.VM, snap *vcenter.Snapshot, alloc events.ExportAllocation, onCBTReset string, resumed bool) ([]diskPlan, error) {
	var before []store.Disk // what an interrupted run of the job got done
	if resumed {
		j, err := r.st.Get(alloc.JobID)
		if err != nil {
			return nil, fail("record", 0, err)
		}
		before = j.Disks
		if len(before) == 0 { // another VMA's run: as the OMA recorded it
			for _, ad := range alloc.Disks {
				before = append(before, store.Disk{Key: ad.Key, BytesTotal: ad.PlannedBytes, Checkpoint: ad.Checkpoint})
			}
		}
	}
	var plans []diskPlan
	var disks []store.Disk
	for _, ad := range alloc.Disks {
		i := -1
		for k, d := range snap.Disks {
			if d.Key == ad.Key {
				i = k
			}
		}
		if i < 0 {
			return nil, fail("plan", ad.Key, fmt.Errorf("%w: the snapshot of %s has no disk with this key", vcenter.ErrNotFound, vm.Path))
		}
		d := snap.Disks[i]
		if d.CapacityBytes > ad.CapacityBytes {
			return nil, fail("plan", ad.Key, fmt.Errorf("the disk holds %d bytes, its export only %d: the VM changed since the job was created", d.CapacityBytes, ad.CapacityBytes))
		}
		p := diskPlan{disk: d, export: ad.Export, full: true}
		var areas []vcenter.Area
		var err error
		if alloc.ReplicationType == events.ReplicationIncremental && ad.BaseChangeID != "" {
			p.full = false
			areas, err = s.ChangedAreas(ctx, vm, snap, d, ad.BaseChangeID)
			if errors.Is(err, vcenter.ErrCBTReset) && onCBTReset == events.OnCBTResetFull {
				r.log.Warn("base change id refused: copying the disk whole", "job", alloc.JobID, "disk", d.Key, "base", ad.BaseChangeID, "err", err)
				p.full = true
				areas, err = s.AllocatedAreas(ctx, vm, snap, d)
			} else if errors.Is(err, vcenter.ErrCBTReset) {
				err = fmt.Errorf(`%w; start the job with "on_cbt_reset": "full" to copy this disk whole, or run an initial job`, err)
			}
		} else {
			areas, err = s.AllocatedAreas(ctx, vm, snap, d)
		}
		if err != nil {
			return nil, fail("changed areas", ad.Key, err)
		}
		for _, a := range areas {
			p.areas = append(p.areas, copier.Area{Offset: a.Offset, Length: a.Length})
			p.total += a.Length
		}
		for _, b := range before {
			if b.Key == d.Key && b.BytesTotal == p.total {
				p.resumeFrom = b.Checkpoint
			}
		}
		plans = append(plans, p)
		disks = append(disks, store.Disk{Key: d.Key, Label: d.Label, BytesTotal: p.total, ChangeID: d.ChangeID, Checkpoint: p.resumeFrom})
	}
	if _, err := r.st.Update(alloc.JobID, false, func(j *store.Job) error {
		j.Disks = disks
		return nil
	}); err != nil {
		return nil, fail("record", 0, err)
	}
	return plans, nil
}

// planned is the progress of each planned disk before it copies: what it
// copies, and what lies below its checkpoint as done.
func planned(plans []diskPlan) []DiskProgress {
	progress := make([]DiskProgress, len(plans))
	for i, p := range plans {
		var done int64
		for _, a := range p.areas {
			done += min(max(p.resumeFrom-a.Offset, 0), a.Length)
		}
		progress[i] = DiskProgress{Key: p.disk.Key, BytesTotal: p.total, BytesDone: done, Checkpoint: p.resumeFrom, Durable: p.resumeFrom,
			Percent: percent(done, p.total)}
	}
	return progress
}

// copyDisks copies every planned disk, DiskParallelism at once. The first
// failure stops the others.
func (r *Runner) copyDisks(ctx context.Context, t *task, ref DiskRef, plans []diskPlan, typ string) error { // fills each plan's outcome
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		slots = make(chan struct{}, r.cfg.DiskParallelism)
		mu    sync.Mutex
		first error
	)
	for i := range plans {
		p := &plans[i]
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			ref := ref
			ref.Disk = p.disk
			if err := r.copyDisk(ctx, t, ref, p, typ); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				cancel(err)
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return fail("copy", 0, context.Cause(ctx))
	}
	return first
}

// copyDisk copies one disk into its export and flushes it. When the export
// goes away (the OMA restarts, the tunnel drops), it opens it again and
// goes on from the last recorded checkpoint, for Config.ExportRetry at most.
func (r *Runner) copyDisk(ctx context.Context, t *task, ref DiskRef, p *diskPlan, typ string) error {
	key := p.disk.Key
	src, err := r.cfg.Source.Open(ctx, ref)
	if err != nil {
		return fail("open source", key, err)
	}
	defer src.Close()
	if p.resumeFrom > 0 {
		r.log.Info("resuming disk", "job", t.id, "disk", key, "from", p.resumeFrom)
	}
	saver := checkpointSaver{r: r, job: t.id, disk: key, tracker: t.tracker, saved: p.resumeFrom, at: time.Now(),
		// A progress event carries each new checkpoint, at once when the
		// last one went out a ProgressInterval ago, else with the next
		// tick (a checkpoint is a change): it is stored for the resume once
		// the bus acknowledges it. Progress keeps to one per interval.
		recorded: func() { r.publishProgress(ctx, t, false) }}
	whole := p.resumeFrom == 0 // copied in one go, so verified as a whole
	var lostSince time.Time    // when the export was lost, while retrying
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		res, step, err := r.copyOnce(ctx, t, src, p, typ, &saver)
		switch {
		case err == nil:
			p.verified = res.Verified && whole
			if res.Digest != nil && whole {
				p.digest = fmt.Sprintf("sha256:%x", res.Digest)
			}
			r.recordZero(t.id, key, res.Zero)
			return nil
		case ctx.Err() != nil || !exportLost(err):
			return fail(step, key, redact(err, p.export.Name))
		}
		if lostSince.IsZero() {
			lostSince = time.Now()
		}
		if why, moved := r.movedAway(ctx, t.id); moved { // its export was revoked: not a passing loss
			t.moved.Store(&why)
			return fail(step, key, fmt.Errorf("the OMA moved the job to another VMA: %s", why))
		}
		if time.Since(lostSince) >= r.cfg.ExportRetry {
			return fail(step, key, fmt.Errorf("the export is gone for %s (-export-retry): %w", r.cfg.ExportRetry.Round(time.Second), redact(err, p.export.Name)))
		}
		r.log.Warn("the export went away: trying again from the last checkpoint", "job", t.id, "disk", key,
			"checkpoint", saver.saved, "err", redact(err, p.export.Name), "retry_in", delay)
		select {
		case <-ctx.Done():
			return fail(step, key, context.Cause(ctx))
		case <-time.After(delay):
		}
		whole = whole && saver.saved == 0 // a disk copied in parts is verified in parts only
	}
}

// copyOnce opens the disk's export and copies its areas from the saver's
// checkpoint on. It returns the step that failed with the error.
func (r *Runner) copyOnce(ctx context.Context, t *task, src Disk, p *diskPlan, typ string, saver *checkpointSaver) (copier.Result, string, error) {
	key := p.disk.Key
	pp := r.pipe(int(r.copies.Add(1)))
	defer r.copies.Add(-1)
	dst := p.early.take(key).endpoint() // the first attempt's; a later one opens the export anew
	var err error
	if dst == nil {
		if dst, err = export.Open(ctx, exportURI(p.export), pp.connections, r.cfg.NBD); err != nil {
			return copier.Result{}, "open export", fmt.Errorf("%s:%d: %w", p.export.Host, p.export.Port, err)
		}
	}
	defer dst.Close()
	if dst.Size() < p.disk.CapacityBytes {
		return copier.Result{}, "open export", fmt.Errorf("the export holds %d bytes, the disk %d", dst.Size(), p.disk.CapacityBytes)
	}
	cfg := r.cfg.Copy
	cfg.JobLimiter = t.limiter
	cfg.Depth = pp.depth
	// An initial job writes a new, empty generation. An incremental one
	// writes over the last copy: a disk it copies whole first has every
	// stretch outside its data zeroed.
	cfg.TargetIsZero = typ != events.ReplicationIncremental
	if p.full && !cfg.TargetIsZero && saver.saved == 0 {
		if err := zeroGaps(ctx, dst, p.areas, p.disk.CapacityBytes); err != nil {
			return copier.Result{}, "copy", err
		}
	}
	cfg.ResumeFrom, cfg.Hash = saver.saved, false
	cfg.Verify = t.cmd.Verify == nil || *t.cmd.Verify
	if cfg.Verify && cfg.Hasher == nil { // the OMA hashes its volume: nothing read back
		if cfg.Hasher, err = r.hasher(t, key); err != nil {
			return copier.Result{}, "copy", err
		}
	}
	// The copier reports often enough for both the events (published at
	// most every ProgressInterval) and the checkpoints.
	cfg.ProgressInterval = min(r.cfg.ProgressInterval, r.cfg.CheckpointInterval)
	cfg.Progress = func(cp copier.Progress) {
		if t.tracker.update(key, cp) {
			r.publishProgress(ctx, t, true) // the job is verifying
		}
		saver.maybe(cp.Checkpoint)
	}
	start := time.Now()
	stop := saver.start(ctx, dst)
	res, err := copier.Copy(ctx, dst, src, p.areas, cfg)
	stop()
	if err != nil {
		if interrupted(ctx) {
			// Interrupted: what is below the checkpoint is written; make it
			// durable and record it for the resume.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			saver.save(fctx, dst, res.Checkpoint)
			// A progress event carries it: stored once acknowledged, before
			// the paused status, or as the VMA stops.
			r.publishProgress(fctx, t, true)
			cancel()
		}
		return res, "copy", err
	}
	saver.record(res.Checkpoint) // Copy flushed
	r.log.Info("disk copied", "job", t.id, "disk", key, "bytes", res.Total, "zero", res.Zero, "from", cfg.ResumeFrom,
		"verified", res.Verified, "verified_by_oma", res.Hashed, "connections", dst.Connections(), "depth", cfg.Depth, "took", time.Since(start))
	return res, "", nil
}

// exportLost reports whether err says the connection to the export went
// away (the OMA stopped it or restarted, the network or tunnel dropped),
// rather than that the export or the source refused something. Through the
// tunnel, an export nothing listens on is the OMA's sshd failing to connect
// for the VMA, which the tunnel reports with the errno it met.
func exportLost(err error) bool {
	var ce *copier.Error
	if errors.As(err, &ce) && (ce.Op == "read" || ce.Op == "extents") {
		return false // the source's
	}
	var ne *nbd.Error
	if errors.As(err, &ne) {
		return ne.Errno == uint32(nbd.ESHUTDOWN)
	}
	var oe *net.OpError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ETIMEDOUT) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) || errors.As(err, &oe)
}

// checkpointBytes is how many bytes a disk copies at most between two
// recorded checkpoints (Config.CheckpointInterval bounds the time).
const checkpointBytes = 64 << 20

// checkpointSaver records a disk's checkpoint in bbolt as the copy goes,
// after flushing the export, so that every byte below a recorded
// checkpoint is durable on the OMA. The flush and the record happen on
// their own goroutine (start), never on the copier's: on a long link a
// flush costs at least a round trip, and the copy goes on meanwhile.
type checkpointSaver struct {
	r       *Runner
	job     string
	disk    int32
	tracker *tracker   // told each checkpoint recorded: the progress events carry it
	saved   int64      // the last checkpoint recorded; read it only after stop
	posted  int64      // the last checkpoint handed to the flusher
	at      time.Time  // when posted
	next    chan int64 // the flusher's mailbox: the newest checkpoint only
	// recorded, when set, is called after each checkpoint recorded.
	recorded func()
}

// start starts flushing dst and recording the checkpoints maybe posts,
// until the returned stop is called; stop returns once the flusher is done.
// Call it once per copy attempt, with no other flusher running.
func (c *checkpointSaver) start(ctx context.Context, dst copier.Destination) (stop func()) {
	c.next = make(chan int64, 1)
	c.posted = c.saved
	done := make(chan struct{})
	go func() {
		defer close(done)
		for cp := range c.next {
			c.save(ctx, dst, cp)
		}
	}()
	return func() {
		close(c.next)
		<-done
	}
}

// maybe posts checkpoint to the flusher when it is checkpointBytes past
// the last one posted or Config.CheckpointInterval later. A checkpoint the
// flusher has not taken yet is replaced by the newer one.
func (c *checkpointSaver) maybe(checkpoint int64) {
	if checkpoint <= c.posted || (checkpoint-c.posted < checkpointBytes && time.Since(c.at) < c.r.cfg.CheckpointInterval) {
		return
	}
	c.posted, c.at = checkpoint, time.Now()
	for {
		select {
		case c.next <- checkpoint:
			return
		default:
		}
		select {
		case <-c.next: // older, not taken yet: replaced
		default:
		}
	}
}

// save flushes dst, then records checkpoint.
func (c *checkpointSaver) save(ctx context.Context, dst copier.Destination, checkpoint int64) {
	if checkpoint <= c.saved {
		return
	}
	if err := dst.Flush(ctx); err != nil {
		if ctx.Err() == nil {
			c.r.log.Warn("flush for a checkpoint", "job", c.job, "disk", c.disk, "err", err)
		}
		return
	}
	c.record(checkpoint)
}

// record records checkpoint, already durable: the copy goes on from it,
// and the progress events carry it; the job's stored record, which a
// resume starts from, takes it once the bus acknowledged one of them
// (Runner.checkpointsAcked). A checkpoint that goes back (a verification
// found a difference below the last one) is stored at once, as is every
// one without a publisher (no Run): going back is always safe.
func (c *checkpointSaver) record(checkpoint int64) {
	if c.r.pub == nil || checkpoint < c.saved {
		_, err := c.r.st.Update(c.job, false, func(j *store.Job) error {
			for i := range j.Disks {
				if j.Disks[i].Key == c.disk {
					j.Disks[i].Checkpoint = checkpoint
				}
			}
			return nil
		})
		if err != nil {
			c.r.log.Warn("record a checkpoint", "job", c.job, "disk", c.disk, "err", err)
			return
		}
	}
	c.saved = checkpoint
	if c.tracker != nil {
		c.tracker.durable(c.disk, checkpoint)
	}
	if c.recorded != nil {
		c.recorded()
	}
}

// snapshot returns the job's snapshot: the one an interrupted run of the
// job took, when it resumes and the snapshot is still there (resumed
// true), else a new one, recorded.
func (r *Runner) snapshot(ctx context.Context, t *task, s *vcenter.Session, vm *vcenter.VM, alloc events.ExportAllocation) (*vcenter.Snapshot, bool, error) {
	name := SnapshotPrefix + t.id
	j, err := r.st.Get(t.id)
	if err != nil {
		return nil, false, err
	}
	if !t.resume && j.Snapshot == "" && alloc.Snapshot != "" {
		// A job another VMA ran: its snapshot, if the VM still has it,
		// and the checkpoints the OMA recorded (plan reads them).
		j.Snapshot, t.resume = alloc.Snapshot, true
		if _, err := r.st.Update(t.id, false, func(sj *store.Job) error { sj.Snapshot, sj.Disks = alloc.Snapshot, nil; return nil }); err != nil {
			return nil, false, err
		}
		r.log.Info("taking over a job another VMA ran", "job", t.id, "attempt", alloc.Attempt, "snapshot", alloc.Snapshot)
	}
	if t.resume {
		if j.Snapshot != "" {
			found, err := s.Snapshots(ctx, vm, name)
			if err != nil {
				return nil, false, err
			}
			for _, f := range found {
				if f.Name == name && f.Ref.Value == j.Snapshot {
					snap, err := s.OpenSnapshot(ctx, f)
					return snap, err == nil, err
				}
			}
			r.log.Warn("the interrupted job's snapshot is gone: starting its disks again from zero", "job", t.id, "snapshot", j.Snapshot)
		}
	}
	snap, err := s.CreateSnapshot(ctx, vm, name, "godwit replication job "+t.id)
	if err != nil {
		return nil, false, err
	}
	if _, err := r.st.Update(t.id, false, func(j *store.Job) error { j.Snapshot = snap.Ref.Value; return nil }); err != nil {
		return snap, false, err
	}
	return snap, false, nil
}

// redact keeps an export's name, its only secret, out of an error message.
func redact(err error, name string) error {
	if name == "" || err == nil {
		return err
	}
	return &redacted{err: err, name: name}
}

type redacted struct {
	err  error
	name string
}

func (e *redacted) Error() string { return strings.ReplaceAll(e.err.Error(), e.name, "<export>") }
func (e *redacted) Unwrap() error { return e.err }

// removeSnapshot removes the job's snapshot when the job ends on any path,
// unless removeSnapshotNow did; it runs even when ctx was cancelled.
func (r *Runner) removeSnapshot(ctx context.Context, t *task, s *vcenter.Session, ref types.ManagedObjectReference) {
	if interrupted(ctx) {
		return // kept for the resume
	}
	if why, moved := r.movedAway(ctx, t.id); moved {
		t.moved.Store(&why)
		return // another VMA goes on from it
	}
	if err := r.removeSnapshotNow(ctx, t, s, ref); err != nil {
		r.log.Error("remove snapshot", "job", t.id, "snapshot", ref.Value, "err", err)
	}
}

// removeSnapshotNow removes the job's snapshot and records it gone.
func (r *Runner) removeSnapshotNow(ctx context.Context, t *task, s *vcenter.Session, ref types.ManagedObjectReference) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.CleanupTimeout)
	defer cancel()
	if err := s.RemoveSnapshot(ctx, ref); err != nil {
		return err
	}
	_, err := r.st.Update(t.id, false, func(j *store.Job) error { j.Snapshot = ""; return nil })
	return err
}

// zeroGaps makes every byte of [0, size) outside areas read as zeros.
func zeroGaps(ctx context.Context, dst copier.Destination, areas []copier.Area, size int64) error {
	zero := func(off, end int64) error {
		for off < end {
			n := min(end-off, copier.MaxZeroRequest)
			if err := dst.WriteZeroes(ctx, off, n); err != nil {
				return fmt.Errorf("zero [%d, %d): %w", off, off+n, err)
			}
			off += n
		}
		return nil
	}
	off := int64(0)
	for _, a := range areas {
		if err := zero(off, a.Offset); err != nil {
			return err
		}
		off = a.End()
	}
	return zero(off, size)
}

// exportURI is the NBD URI of an allocated export.
func exportURI(e events.Export) string {
	return fmt.Sprintf("nbd://%s:%d/%s", e.Host, e.Port, e.Name)
}

// earlyExport is an export being opened ahead of its disk's copy.
type earlyExport struct {
	done chan struct{} // closed once opened or failed
	ep   *export.Endpoint
}

// endpoint waits for the export (the job's context bounds its opening)
// and returns it, or nil when it could not be opened (the copy opens it
// itself, and reports that error) or e is nil.
func (e *earlyExport) endpoint() *export.Endpoint {
	if e == nil {
		return nil
	}
	<-e.done
	return e.ep
}

// earlyExports are the exports a job opens while it takes its snapshot.
type earlyExports struct {
	mu    sync.Mutex
	byKey map[int32]*earlyExport // not taken yet
}

// openEarly starts opening the exports of the disks of alloc that copy
// first (Config.DiskParallelism of them, in the allocation's order, which
// is the copy's): over a long link each NBD connection's handshake takes
// round trips, which then pass while vCenter takes the snapshot. Each is
// sized as copyOnce would size it with the disks copying then.
func (r *Runner) openEarly(ctx context.Context, alloc events.ExportAllocation) *earlyExports {
	es := &earlyExports{byKey: make(map[int32]*earlyExport)}
	for k, d := range alloc.Disks {
		if k == r.cfg.DiskParallelism {
			break
		}
		e := &earlyExport{done: make(chan struct{})}
		es.byKey[d.Key] = e
		conns := r.pipe(int(r.copies.Load()) + k + 1).connections
		go func() {
			defer close(e.done)
			ep, err := export.Open(ctx, exportURI(d.Export), conns, r.cfg.NBD)
			if err != nil && ctx.Err() == nil {
				r.log.Info("opening the export ahead of the copy failed: the copy opens it", "job", alloc.JobID, "disk", d.Key, "err", redact(err, d.Export.Name))
			}
			e.ep = ep
		}()
	}
	return es
}

// take hands the early export of disk key to its copy, which closes it:
// nil when there is none (left, or es is nil).
func (es *earlyExports) take(key int32) *earlyExport {
	if es == nil {
		return nil
	}
	es.mu.Lock()
	defer es.mu.Unlock()
	e := es.byKey[key]
	delete(es.byKey, key)
	return e
}

// close closes the exports no copy took, once opened.
func (es *earlyExports) close() {
	es.mu.Lock()
	left := es.byKey
	es.byKey = nil
	es.mu.Unlock()
	for _, e := range left {
		<-e.done
		if e.ep != nil {
			e.ep.Close()
		}
	}
}

// movedError reports whether err is the OMA's refusal of a job it moved to
// another VMA, and its message.
func movedError(err error) (string, bool) {
	var re *bus.RemoteError
	if errors.As(err, &re) && re.Code == bus.CodeMoved {
		return re.Message, true
	}
	return "", false
}

// movedAway asks the OMA whether it moved job id to another VMA (whose
// attempt goes on from the job's snapshot): the job's export request is
// refused so. An OMA that does not answer soon says no.
func (r *Runner) movedAway(ctx context.Context, id string) (string, bool) {
	subj, err := subject.ExportRequest(r.cfg.Identity.ID, id)
	if err != nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(r.cfg.RequestTimeout, 5*time.Second))
	defer cancel()
	var alloc events.ExportAllocation
	return movedError(r.conn.Request(ctx, subj, struct{}{}, &alloc))
}

// letGo ends this VMA's attempt at job id, which the OMA moved to another
// VMA: recorded cancelled, with neither its snapshot (the other VMA copies
// from it) nor its credentials kept, and nothing reported (the job is not
// this VMA's to report on).
func (r *Runner) letGo(id, why string) {
	now := r.cfg.Now().UTC()
	_, err := r.st.Update(id, false, func(j *store.Job) error {
		if !store.Final(j.State) {
			j.State, j.EndedAt = store.StateCancelled, &now
		}
		j.Error, j.UpdatedAt = "moved to another VMA by the OMA: "+why, now
		j.Snapshot, j.Password = "", nil
		return nil
	})
	if err != nil {
		r.log.Error("record a job the OMA moved away", "job", id, "err", err)
	}
	r.log.Warn("the OMA moved the job to another VMA: this attempt ends, its snapshot is left to the other", "job", id, "why", why)
}
