package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/schedule"
	"github.com/godwit/godwit/oma/store"
)

// Pause pauses job id: a job waiting in the queue pauses at once; one its
// VMA holds is told to stop at a checkpoint and keep its snapshot, and is
// paused when the VMA says so (pause_requested_at meanwhile). A paused job
// holds no slot of the queue. Pausing a paused job is a no-op; any job but
// a queued or running one is a Conflict.
func (m *Manager) Pause(ctx context.Context, id, reason string) (store.Job, error) {
	if reason == "" {
		reason = "paused through the OMA API"
	}
	j, err := m.updateJob(id, func(tx *bbolt.Tx, cur *store.Job) error {
		if cur.State == events.JobPaused {
			return errUnchanged
		}
		if !Pausable(cur.State) {
			return fault.Errorf(fault.Conflict, "id", "job %s is %s: only a queued or running job can be paused", id, cur.State)
		}
		_, qerr := store.GetQueued(tx, id)
		switch {
		case qerr == nil: // waiting in the queue: its VMA never got it
			_, err := m.transition(tx, cur, events.JobPaused, reason)
			return err
		case !errors.Is(qerr, store.ErrNotFound):
			return qerr
		}
		pause, err := m.newEvent(&events.ReplicatePause{JobID: id, VMAID: cur.VMAID, Reason: reason})
		if err != nil {
			return err
		}
		now := m.cfg.Now().UTC()
		cur.PauseRequestedAt = &now
		return store.Enqueue(tx, pause)
	})
	if err != nil {
		return j, err
	}
	m.outbox.PublishSoon(ctx)
	return j, nil
}

// Resume puts paused job id back in the queue: dispatched again, its VMA
// goes on from its snapshot and checkpoints. Only a paused job can be
// resumed (a Conflict otherwise).
func (m *Manager) Resume(ctx context.Context, id string) (store.Job, error) {
	j, err := m.updateJob(id, func(tx *bbolt.Tx, cur *store.Job) error {
		if cur.State != events.JobPaused {
			return fault.Errorf(fault.Conflict, "id", "job %s is %s: only a paused job can be resumed", id, cur.State)
		}
		if err := m.cfg.Queue.Unpark(tx, id); errors.Is(err, store.ErrNotFound) {
			return fault.Errorf(fault.Conflict, "id", "job %s kept no command to resume with: cancel it and start a new one", id)
		} else if err != nil {
			return err
		}
		if _, err := m.transition(tx, cur, events.JobQueued, ""); err != nil {
			return err
		}
		cur.PausedAt, cur.LastError = nil, "" // the pause's reason is no error of the job
		return nil
	})
	if err != nil {
		return j, err
	}
	m.outbox.Kick()
	return j, nil
}

// expirePaused ends every job paused since Config.PauseSnapshotMax before
// now paused-expired: its VMA, if it holds the job, is told to end it and
// remove its snapshot; its export is released. It returns when the next
// paused job can expire.
func (m *Manager) expirePaused(ctx context.Context, now time.Time) (time.Time, error) {
	limit := m.cfg.PauseSnapshotMax
	next := now.Add(limit)
	var due []string
	err := m.store.View(func(tx *bbolt.Tx) error {
		all, err := store.Jobs(tx)
		for _, j := range all {
			if j.State != events.JobPaused || j.PausedAt == nil {
				continue
			}
			if at := j.PausedAt.Add(limit); !at.After(now) {
				due = append(due, j.ID)
			} else if at.Before(next) {
				next = at
			}
		}
		return err
	})
	if err != nil {
		return now.Add(time.Second), err
	}
	why := fmt.Sprintf("paused longer than -pause-snapshot-max %s: its snapshot is removed; the VM's next copy starts from its last completed one", limit)
	for _, id := range due {
		expired := false
		err := m.store.Update(func(tx *bbolt.Tx) error {
			j, err := store.GetJob(tx, id)
			if err != nil {
				return err
			}
			if expired, err = m.transition(tx, &j, events.JobPausedExpired, why); err != nil || !expired {
				return err
			}
			if j.DispatchedAt != nil { // its VMA holds it, paused
				cancel, err := m.newEvent(&events.ReplicateCancel{JobID: j.ID, VMAID: j.VMAID, Reason: why})
				if err != nil {
					return err
				}
				if err := store.Enqueue(tx, cancel); err != nil {
					return err
				}
			}
			return store.PutJob(tx, j)
		})
		if err != nil {
			return now.Add(time.Second), err
		}
		if expired {
			m.log.Warn("paused job expired", "job", id, "paused_for", limit)
			m.release(id)
		}
	}
	if len(due) > 0 {
		m.outbox.PublishSoon(ctx)
	}
	return next, nil
}

// Bounds of a bandwidth limit, bytes per second: 0 is none.
const (
	MinRate int64 = 64 << 10
	MaxRate int64 = 100_000_000_000
)

// CheckRate checks a bandwidth limit named field: 0 (none) or MinRate to
// MaxRate bytes per second.
func CheckRate(field string, rate int64) error {
	if rate != 0 && (rate < MinRate || rate > MaxRate) {
		return fault.Errorf(fault.Invalid, field, "%s %d: want 0 (no limit) or %d to %d bytes per second", field, rate, MinRate, MaxRate)
	}
	return nil
}

// CheckRateWindows checks bandwidth limits for times of day, naming the
// wrong field under prefix (such as "windows": "windows[1].start").
func CheckRateWindows(prefix string, ws []store.RateWindow) error {
	for i, w := range ws {
		at := fmt.Sprintf("%s[%d]", prefix, i)
		if _, err := schedule.Within(schedule.Window{Start: w.Start, End: w.End, TZ: w.TZ}, time.Now(), at); err != nil {
			var fe *schedule.FieldError
			if errors.As(err, &fe) {
				return fault.Errorf(fault.Invalid, fe.Field, "%s", fe.Msg)
			}
			return fault.Errorf(fault.Invalid, at, "%v", err)
		}
		if err := CheckRate(at+".rate", w.Rate); err != nil {
			return err
		}
	}
	return nil
}

// SetRate sets job id's own bandwidth limit (bytes per second, 0: none): a
// running job's copies obey it within a second, through the queue's next
// pass and a rate command to its VMA. The job must not have ended.
func (m *Manager) SetRate(ctx context.Context, id string, rate int64) (store.Job, error) {
	if err := CheckRate("rate", rate); err != nil {
		return store.Job{}, err
	}
	return m.updateJob(id, func(tx *bbolt.Tx, cur *store.Job) error {
		if Final(cur.State) {
			return fault.Errorf(fault.Conflict, "id", "job %s is %s: its rate cannot change", id, cur.State)
		}
		if _, err := m.cfg.Queue.SetRate(tx, id, rate); err != nil {
			return err
		}
		cur.RateLimit, cur.UpdatedAt = rate, m.cfg.Now().UTC()
		return m.cfg.Queue.LimitsChanged(tx, &events.QueueLimits{Object: events.LimitsJob, Name: id, Rate: &rate})
	})
}

// errUnchanged tells updateJob that change left the job as it was.
var errUnchanged = errors.New("unchanged")

// updateJob changes job id with change in one transaction and stores it;
// it returns the job as stored at the end (as it was when change failed
// or returned errUnchanged). A job that does not exist is a NotFound.
func (m *Manager) updateJob(id string, change func(tx *bbolt.Tx, j *store.Job) error) (store.Job, error) {
	var j store.Job
	err := m.store.Update(func(tx *bbolt.Tx) error {
		cur, err := store.GetJob(tx, id)
		if errors.Is(err, store.ErrNotFound) {
			return fault.Errorf(fault.NotFound, "id", "no job %s", id)
		}
		if err != nil {
			return err
		}
		j = cur
		if err := change(tx, &cur); err != nil {
			return err
		}
		j = cur
		return store.PutJob(tx, cur)
	})
	if errors.Is(err, errUnchanged) {
		err = nil
	}
	return j, err
}
