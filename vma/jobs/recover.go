package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/store"
	"github.com/godwit/godwit/vma/vcenter"
)

// recoverJobs queues again, to resume, the jobs that a previous run of the
// VMA left queued or running (it stopped, crashed or was killed): running
// ones first, then the queued ones in the order they came. A job it cannot
// resume (no credentials kept) is recorded failed and reported so. In the
// background, the snapshot that an ended job still holds is removed.
func (r *Runner) recoverJobs(ctx context.Context) error {
	jobs, err := r.st.Jobs()
	if err != nil {
		return err
	}
	var resume []store.Job
	for _, j := range jobs {
		switch {
		case (j.State == store.StateQueued || j.State == store.StateRunning) && j.Password != nil:
			resume = append(resume, j)
		case j.State == store.StateQueued || j.State == store.StateRunning:
			r.finish(ctx, &task{id: j.JobID}, store.StateFailed, events.FailureInternal,
				fmt.Sprintf("the VMA restarted while the job was %s and kept no credentials to resume it; start the job again", j.State))
		case store.Final(j.State) && (j.Snapshot != "" || (j.VMRef != "" && j.Password != nil)):
			r.wg.Go(func() { r.retryCleanup(ctx, j.JobID) })
		}
	}
	slices.SortStableFunc(resume, func(a, b store.Job) int {
		if (a.State == store.StateRunning) != (b.State == store.StateRunning) {
			if a.State == store.StateRunning {
				return -1
			}
			return 1
		}
		return a.AcceptedAt.Compare(b.AcceptedAt)
	})
	for _, j := range resume {
		cmd := &events.ReplicateCommand{JobID: j.JobID, VMAID: r.cfg.Identity.ID, VCenter: j.VCenter, Username: j.Username,
			Password: *j.Password, VMPaths: j.VMPaths, OnCBTReset: j.OnCBTReset, Verify: j.Verify, CAPEM: j.CAPEM, Thumbprint: j.Thumbprint}
		r.mu.Lock() // the queue is the runner's, under its lock
		// Unlimited until the OMA says its rate again: it does so for the
		// running jobs of a VMA that comes back.
		r.queue = append(r.queue, &task{id: j.JobID, cmd: cmd, resume: true, tracker: newTracker(r.cfg.Now), limiter: copier.NewLimiter(0, nil), done: make(chan struct{})})
		r.mu.Unlock()
		r.log.Info("resuming a job the VMA did not finish", "job", j.JobID, "state", j.State, "phase", j.Phase)
	}
	return nil
}

// Cleaned is what Cleanup did.
type Cleaned struct {
	JobID string `json:"job_id"`
	// Cancelled says the job was queued or running and was stopped.
	Cancelled bool `json:"cancelled"`
	// SnapshotsRemoved names the snapshots removed from the VM.
	SnapshotsRemoved []string `json:"snapshots_removed"`
	// State is the job's state afterwards.
	State string `json:"state"`
}

// Cleanup cancels the job with id if it runs (waiting, within ctx, for it
// to end) and removes any snapshot of it left on its VM. The error wraps
// store.ErrNotFound for a job the VMA does not know.
func (r *Runner) Cleanup(ctx context.Context, id string) (Cleaned, error) {
	if _, err := r.st.Get(id); err != nil {
		return Cleaned{}, err
	}
	c := Cleaned{JobID: id, SnapshotsRemoved: []string{}}
	c.Cancelled = r.Cancel(ctx, id, "cleanup requested through the VMA API")
	if err := r.Wait(ctx, id); err != nil {
		return c, fmt.Errorf("wait for job %s to stop: %w", id, err)
	}
	removed, err := r.cleanSnapshots(ctx, id)
	c.SnapshotsRemoved = append(c.SnapshotsRemoved, removed...)
	j, gerr := r.st.Get(id)
	if gerr == nil {
		c.State = j.State
		if c.State == "" {
			c.State = store.StateAccepted
		}
	}
	return c, errors.Join(err, gerr)
}

// cleanSnapshots removes every snapshot named for the job from its VM,
// logging in with the job's sealed password, and then wipes the password.
// A job that never found its VM has nothing to clean.
func (r *Runner) cleanSnapshots(ctx context.Context, id string) ([]string, error) {
	j, err := r.st.Get(id)
	if err != nil {
		return nil, err
	}
	removed := []string{}
	if j.VMRef == "" || j.Password == nil {
		return removed, nil
	}
	if !store.Final(j.State) {
		return removed, fmt.Errorf("job %s is %s: cancel it first", id, j.State)
	}
	if why, moved := r.movedAway(ctx, id); moved {
		r.letGo(id, why) // its snapshot is the other VMA's now
		return removed, nil
	}
	vc := r.cfg.VCenter
	vc.Host, vc.Username, vc.CAPEM, vc.Thumbprint = j.VCenter, j.Username, j.CAPEM, j.Thumbprint
	s, err := vcenter.LoginSealed(ctx, vc, r.cfg.Identity.Key, *j.Password)
	if err != nil {
		return removed, fmt.Errorf("clean up job %s: %w", id, err)
	}
	defer s.Close()
	vm, err := s.VMByRef(ctx, j.VMRef)
	if errors.Is(err, vcenter.ErrNotFound) {
		return removed, r.forget(id) // the VM is gone, and its snapshots with it
	}
	if err != nil {
		return removed, fmt.Errorf("clean up job %s: %w", id, err)
	}
	snaps, err := s.Snapshots(ctx, vm, SnapshotPrefix+id)
	if err != nil {
		return removed, fmt.Errorf("clean up job %s: %w", id, err)
	}
	for _, sn := range snaps {
		if sn.Name != SnapshotPrefix+id {
			continue
		}
		if err := s.RemoveSnapshot(ctx, sn.Ref); err != nil {
			return removed, fmt.Errorf("clean up job %s: %w", id, err)
		}
		removed = append(removed, sn.Name)
	}
	return removed, r.forget(id)
}

// forget records that the job holds no snapshot and wipes its password.
func (r *Runner) forget(id string) error {
	_, err := r.st.Update(id, false, func(j *store.Job) error {
		j.Snapshot, j.Password = "", nil
		return nil
	})
	return err
}

// retryCleanup removes the snapshot of a job that ended without removing
// it, trying again after a growing delay (Config.CleanupRetry, doubling up
// to 5 minutes) until it is gone or ctx ends.
func (r *Runner) retryCleanup(ctx context.Context, id string) {
	delay := r.cfg.CleanupRetry
	for {
		removed, err := r.cleanSnapshots(ctx, id)
		if err == nil {
			r.log.Info("removed the snapshot of an ended job", "job", id, "snapshots", removed)
			return
		}
		r.log.Warn("remove the snapshot of an ended job", "job", id, "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Minute)
	}
}
