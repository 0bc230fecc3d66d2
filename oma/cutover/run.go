package cutover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vmas"
)

// atRest says whether a cutover in state s waits for a person: nothing
// drives it.
func atRest(s string) bool {
	switch s {
	case events.CutoverCutOver, events.CutoverFailed, events.CutoverRolledBack, events.CutoverCommitted, events.CutoverBudgetUnmet:
		return true
	}
	return false
}

// errSuperseded: the cutover left the state a step worked on (a rollback
// came meanwhile); the step's outcome is dropped.
var errSuperseded = errors.New("the cutover moved on meanwhile")

// Run drives every cutover that is not at rest, and those started later,
// until ctx ends; it returns once their drivers have stopped.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	m.runCtx = ctx
	m.mu.Unlock()
	all, err := m.List()
	if err != nil {
		return err
	}
	for _, c := range all {
		if !atRest(c.State) {
			m.log.Info("cutover goes on", "cutover", c.ID, "state", c.State)
			m.drive(c.Key)
		}
	}
	<-ctx.Done()
	m.mu.Lock()
	m.stopped = true // no driver starts after this
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// drive runs the steps of cutover key until it is at rest, in a goroutine
// of its own; a driver that runs already is told to look again.
func (m *Manager) drive(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runCtx == nil || m.stopped {
		return // Run picks it up (when the OMA runs again)
	}
	if m.driving[key] {
		m.again[key] = true
		return
	}
	m.driving[key] = true
	ctx := m.runCtx
	m.wg.Go(func() { m.driver(ctx, key) })
}

// driver is drive's goroutine.
func (m *Manager) driver(ctx context.Context, key string) {
	for ctx.Err() == nil {
		var c store.Cutover
		err := m.store.View(func(tx *bbolt.Tx) error {
			var err error
			c, err = store.GetCutover(tx, key)
			return err
		})
		if err != nil {
			m.log.Error("cutover driver", "key", key, "err", err)
			break
		}
		if atRest(c.State) {
			m.mu.Lock()
			if m.again[key] {
				delete(m.again, key)
				m.mu.Unlock()
				continue
			}
			delete(m.driving, key)
			m.mu.Unlock()
			return
		}
		sctx, cancel := context.WithCancel(ctx)
		m.mu.Lock()
		m.cancels[key] = cancel
		m.mu.Unlock()
		err = m.step(sctx, c)
		cancel()
		m.mu.Lock()
		delete(m.cancels, key)
		m.mu.Unlock()
		switch {
		case err == nil, errors.Is(err, errSuperseded):
		case ctx.Err() != nil:
		default:
			m.log.Warn("cutover step failed", "cutover", c.ID, "step", c.State, "err", err)
			if ferr := m.advance(c, func(tx *bbolt.Tx, c *store.Cutover) error {
				return m.move(tx, c, events.CutoverFailed, c.State+": "+err.Error())
			}); ferr != nil && !errors.Is(ferr, errSuperseded) {
				m.log.Error("record a failed cutover step", "cutover", c.ID, "err", ferr)
				m.wait(ctx) // and look again
			}
		}
	}
	m.mu.Lock()
	delete(m.driving, key)
	delete(m.again, key)
	m.mu.Unlock()
}

// cancelStep stops the step cutover key runs, if any.
func (m *Manager) cancelStep(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cancel := m.cancels[key]; cancel != nil {
		cancel()
	}
}

// advance applies fn to the cutover c was read as, in one transaction,
// unless it left c's state meanwhile (errSuperseded).
func (m *Manager) advance(c store.Cutover, fn func(tx *bbolt.Tx, c *store.Cutover) error) error {
	err := m.store.Update(func(tx *bbolt.Tx) error {
		cur, err := store.GetCutover(tx, c.Key)
		if err != nil {
			return err
		}
		if cur.State != c.State || cur.ID != c.ID {
			return errSuperseded
		}
		return fn(tx, &cur)
	})
	m.outbox.Kick()
	return err
}

// wait sleeps for Config.Poll, or until ctx ends.
func (m *Manager) wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(m.cfg.Poll):
	}
}

// step runs the step of c's state and moves c on.
func (m *Manager) step(ctx context.Context, c store.Cutover) error {
	switch c.State {
	case events.CutoverScheduled:
		return m.scheduled(ctx, c)
	case events.CutoverSyncing:
		return m.syncing(ctx, c)
	case events.CutoverPoweringOff:
		return m.poweringOff(ctx, c)
	case events.CutoverFinalSync:
		return m.finalSync(ctx, c)
	case events.CutoverConverting:
		return m.converting(ctx, c)
	case events.CutoverExporting:
		return m.exporting(ctx, c)
	case events.CutoverBootCheck:
		return m.bootCheck(ctx, c)
	case events.CutoverRollingBack:
		return m.rollingBack(ctx, c)
	}
	return fmt.Errorf("cutover %s: unknown state %q", c.ID, c.State)
}

// since is how long c has been in its state, in seconds.
func (m *Manager) since(c store.Cutover) float64 { return m.cfg.Now().Sub(c.StepAt).Seconds() }

// scheduled waits for the cutover's time.
func (m *Manager) scheduled(ctx context.Context, c store.Cutover) error {
	for m.cfg.Now().Before(*c.Options.At) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m.wait(ctx)
	}
	return m.advance(c, func(tx *bbolt.Tx, c *store.Cutover) error { return m.move(tx, c, events.CutoverPoweringOff, "") })
}

// credentials returns the credentials of the registered vCenter of c's
// host that c's VMA may use.
func (m *Manager) credentials(c store.Cutover) (vmas.VCenterCredentials, error) {
	list, err := m.vcenters.List()
	if err != nil {
		return vmas.VCenterCredentials{}, err
	}
	for _, v := range list {
		for _, id := range v.VMAs {
			if v.Host == c.VCenter && id == c.VMAID {
				pw, err := m.vcenters.Password(v.Name)
				if err != nil {
					return vmas.VCenterCredentials{}, err
				}
				return vmas.VCenterCredentials{VCenter: v.Host, Username: v.Username, Password: pw, CAPEM: v.CAPEM, Thumbprint: v.Thumbprint}, nil
			}
		}
	}
	return vmas.VCenterCredentials{}, fault.Errorf(fault.Conflict, "vcenter", "vCenter %s is not registered for VMA %s: register it (POST /api/v1/vcenters) so that the OMA can power the source off and sync it", c.VCenter, c.VMAID)
}

// sync creates and starts an incremental job of c's VM, first in the
// OMA's queue; a job of the VM still active (a plan's sync) is waited for.
func (m *Manager) sync(ctx context.Context, c store.Cutover) (string, error) {
	cred, err := m.credentials(c)
	if err != nil {
		return "", err
	}
	for {
		j, err := m.jobs.CreateJob(ctx, jobs.CreateRequest{VM: c.VM, ReplicationType: events.ReplicationIncremental, VMAID: c.VMAID,
			VCenter: c.VCenter, Token: "cutover:" + c.ID, StartNow: true})
		var fe *fault.Error
		if errors.As(err, &fe) && fe.Kind == fault.Conflict && fe.Field != "replication_type" && ctx.Err() == nil {
			m.log.Info("cutover waits for the VM's job", "cutover", c.ID, "why", err)
			m.wait(ctx)
			m.wait(ctx)
			continue
		}
		if err != nil {
			return "", err
		}
		verify := true
		if _, err := m.jobs.Start(ctx, j.ID, cred, jobs.StartOptions{Verify: &verify, Plan: c.Plan, Priority: FinalPriority}); err != nil {
			return "", err
		}
		return j.ID, nil
	}
}

// awaitJob waits until job id ends; it returns the job, and an error
// saying why when it did not complete.
func (m *Manager) awaitJob(ctx context.Context, id string) (store.Job, error) {
	for {
		var j store.Job
		err := m.store.View(func(tx *bbolt.Tx) error {
			var err error
			j, err = store.GetJob(tx, id)
			return err
		})
		if err != nil {
			return j, err
		}
		if jobs.Final(j.State) {
			if j.State != events.JobCompleted {
				why := j.LastError
				if why == "" {
					why = "it was " + j.State
				}
				return j, fmt.Errorf("job %s: %s", id, why)
			}
			return j, nil
		}
		if ctx.Err() != nil {
			return j, ctx.Err()
		}
		m.wait(ctx)
	}
}

// poweringOff predicts the downtime, then powers the source off as the
// options say and records its power state before.
func (m *Manager) poweringOff(ctx context.Context, c store.Cutover) error {
	if c.PowerRequest == "" {
		p, err := m.Predict(c)
		if err != nil {
			return err
		}
		cmd, err := m.powerCommand(c, events.PowerOff)
		if err != nil {
			return err
		}
		err = m.advance(c, func(tx *bbolt.Tx, cur *store.Cutover) error {
			if err := m.sendPower(tx, *cur, cmd); err != nil {
				return err
			}
			now := m.cfg.Now().UTC()
			cur.PowerRequest, cur.Predicted, cur.DownSince = cmd.RequestID, &p.Downtime, &now
			c = *cur
			return store.PutCutover(tx, *cur)
		})
		if err != nil {
			return err
		}
	}
	rep, err := m.awaitPower(ctx, c, time.Duration(c.Options.ShutdownTimeout)*time.Second)
	if err != nil {
		return err
	}
	return m.advance(c, func(tx *bbolt.Tx, c *store.Cutover) error {
		c.PowerBefore, c.PowerMethod, c.PowerRequest = rep.StateBefore, rep.Method, ""
		if rep.Error != nil {
			return m.move(tx, c, events.CutoverFailed, "power off: "+rep.Error.Message)
		}
		at := rep.DoneAt
		c.PoweredOffAt = &at
		c.Measured.PowerOff = m.since(*c)
		return m.move(tx, c, events.CutoverFinalSync, "")
	})
}

// powerCommand is the command that powers c's source off or on (action),
// the vCenter password sealed to c's VMA; it is named after c and action.
// A VMA refuses it after Config.PowerSlack.
func (m *Manager) powerCommand(c store.Cutover, action string) (*events.PowerCommand, error) {
	cred, err := m.credentials(c)
	if err != nil {
		return nil, err
	}
	sealed, err := m.sealer.Seal(c.VMAID, cred.Password)
	if err != nil {
		return nil, err
	}
	cmd := &events.PowerCommand{RequestID: c.ID + "-" + action, VMAID: c.VMAID, VCenter: cred.VCenter, Username: cred.Username, Password: sealed,
		VM: c.VM, Action: action, CAPEM: cred.CAPEM, Thumbprint: cred.Thumbprint, NotAfter: m.cfg.Now().Add(m.cfg.PowerSlack).UTC()}
	if action == events.PowerOff {
		cmd.Mode, cmd.TimeoutSeconds = c.Options.PowerOff, c.Options.ShutdownTimeout
	}
	return cmd, nil
}

// sendPower records the power command cmd as awaited and writes it to
// the outbox, inside tx.
func (m *Manager) sendPower(tx *bbolt.Tx, c store.Cutover, cmd *events.PowerCommand) error {
	now := m.cfg.Now().UTC()
	ev, err := events.New("/godwit/oma", cmd, now)
	if err != nil {
		return err
	}
	if err := store.PutPowerRequest(tx, store.PowerRequest{ID: cmd.RequestID, VMAID: cmd.VMAID, Cutover: c.Key, SentAt: now}); err != nil {
		return err
	}
	return store.Enqueue(tx, ev)
}

// awaitPower waits for the report of c's power request, at most timeout
// plus Config.PowerSlack after it was sent: a VMA refuses the command
// after PowerSlack (its NotAfter), and acts within timeout.
func (m *Manager) awaitPower(ctx context.Context, c store.Cutover, timeout time.Duration) (*events.PowerReport, error) {
	for {
		var req store.PowerRequest
		err := m.store.View(func(tx *bbolt.Tx) error {
			var err error
			req, err = store.GetPowerRequest(tx, c.PowerRequest)
			return err
		})
		if err != nil {
			return nil, err
		}
		if req.Report != nil {
			return req.Report, nil
		}
		if m.cfg.Now().Sub(req.SentAt) > timeout+m.cfg.PowerSlack {
			return nil, &staleError{fmt.Sprintf("VMA %s did not report power command %s within %s: is it connected? (roll back, or cut over again once it is; the VMA refuses the command from now on)", c.VMAID, c.PowerRequest, timeout+m.cfg.PowerSlack)}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		m.wait(ctx)
	}
}

// staleError says a power command was never reported in time.
type staleError struct{ msg string }

// Error implements error.
func (e *staleError) Error() string { return e.msg }

// finalSync runs the last incremental sync, verified, with the source
// off; its job removes its snapshot as it ends.
func (m *Manager) finalSync(ctx context.Context, c store.Cutover) error {
	if c.FinalJob == "" {
		id, err := m.sync(ctx, c)
		if err != nil {
			return err
		}
		if err := m.advance(c, func(tx *bbolt.Tx, cur *store.Cutover) error {
			cur.FinalJob = id
			c = *cur
			return store.PutCutover(tx, *cur)
		}); err != nil {
			return err
		}
	}
	j, err := m.awaitJob(ctx, c.FinalJob)
	if err != nil {
		return err
	}
	return m.advance(c, func(tx *bbolt.Tx, c *store.Cutover) error {
		c.FinalSyncBytes, c.Measured.FinalSync = j.BytesWritten, m.since(*c)
		return m.move(tx, c, events.CutoverConverting, "")
	})
}

// rollingBack powers the source back on when it was on, and discards the
// converted copy.
func (m *Manager) rollingBack(ctx context.Context, c store.Cutover) error {
	if c.PowerRequest == c.ID+"-"+events.PowerOff {
		// Rolled back while the power-off was under way: its report says
		// what to restore. One that never came (the VMA was gone past the
		// command's deadline, after which it refuses it) did nothing.
		rep, err := m.awaitPower(ctx, c, time.Duration(c.Options.ShutdownTimeout)*time.Second)
		var stale *staleError
		switch {
		case errors.As(err, &stale):
			m.log.Warn("rollback: the power-off was never reported; the VMA refuses it from now on", "cutover", c.ID, "err", err)
			rep = &events.PowerReport{}
		case err != nil:
			return err
		}
		if err := m.advance(c, func(tx *bbolt.Tx, cur *store.Cutover) error {
			cur.PowerBefore, cur.PowerMethod, cur.PowerRequest = rep.StateBefore, rep.Method, ""
			c = *cur
			return store.PutCutover(tx, *cur)
		}); err != nil {
			return err
		}
	}
	if c.PowerBefore == events.PowerStateOn || c.PowerBefore == events.PowerStateSuspended {
		if c.PowerRequest != c.ID+"-"+events.PowerOn {
			cmd, err := m.powerCommand(c, events.PowerOn)
			if err != nil {
				return err
			}
			if err := m.advance(c, func(tx *bbolt.Tx, cur *store.Cutover) error {
				if _, err := store.GetPowerRequest(tx, cmd.RequestID); err == nil {
					return fault.Errorf(fault.Conflict, "", "power command %s was sent already", cmd.RequestID)
				}
				if err := m.sendPower(tx, *cur, cmd); err != nil {
					return err
				}
				cur.PowerRequest = cmd.RequestID
				c = *cur
				return store.PutCutover(tx, *cur)
			}); err != nil && fault.KindOf(err) != fault.Conflict {
				return err
			}
			c.PowerRequest = cmd.RequestID
		}
		rep, err := m.awaitPower(ctx, c, time.Minute)
		if err != nil {
			return err
		}
		if rep.Error != nil {
			return fmt.Errorf("power the source on: %s", rep.Error.Message)
		}
	}
	m.discard(c)
	return m.advance(c, func(tx *bbolt.Tx, c *store.Cutover) error {
		c.PowerRequest = ""
		now := m.cfg.Now().UTC()
		c.DoneAt = &now
		return m.move(tx, c, events.CutoverRolledBack, "")
	})
}

// discard removes c's overlays and the disks it wrote to the target.
func (m *Manager) discard(c store.Cutover) {
	if c.Dir != "" {
		if err := os.RemoveAll(filepath.Dir(c.Dir)); err != nil {
			m.log.Warn("remove a cutover's overlays", "cutover", c.ID, "err", err)
		}
	}
	if c.Target != nil {
		for _, d := range c.Target.Disks {
			_ = os.Remove(d.Path)
		}
		_ = os.Remove(c.Target.DomainXML)
		_ = os.Remove(filepath.Join(c.Target.Dir, "cloudstack.txt"))
		_ = os.Remove(c.Target.Dir) // only when empty
	}
}

// syncing is one pass of a budget cutover: it waits for the pass under
// way, then powers the source off when the prediction fits the budget,
// gives up after the last pass (budget_unmet, saying why), or starts the
// next sync.
func (m *Manager) syncing(ctx context.Context, c store.Cutover) error {
	if n := len(c.Passes); n > 0 && c.Passes[n-1].Seconds == 0 {
		j, err := m.awaitJob(ctx, c.Passes[n-1].Job)
		if err != nil {
			return err
		}
		p, err := m.Predict(c)
		if err != nil {
			return err
		}
		secs := 0.0
		if j.FinishedAt != nil {
			secs = max(j.FinishedAt.Sub(j.CreatedAt).Seconds(), 0.001)
		}
		return m.advance(c, func(tx *bbolt.Tx, c *store.Cutover) error {
			c.Passes[n-1] = store.CutoverPass{Job: j.ID, BytesChanged: j.BytesWritten, Seconds: secs, PredictedSeconds: p.Downtime.Total}
			return store.PutCutover(tx, *c)
		})
	}
	if n := len(c.Passes); n > 0 {
		last := c.Passes[n-1]
		switch {
		case last.PredictedSeconds <= c.Options.BudgetSeconds:
			return m.advance(c, func(tx *bbolt.Tx, c *store.Cutover) error { return m.move(tx, c, events.CutoverPoweringOff, "") })
		case n >= c.Options.MaxPasses:
			why := fmt.Sprintf("after %d syncs the predicted downtime is still %.1f s, over the budget of %.1f s: the last sync copied %d bytes in %.1f s",
				n, last.PredictedSeconds, c.Options.BudgetSeconds, last.BytesChanged, last.Seconds)
			if n > 1 && last.BytesChanged >= c.Passes[n-2].BytesChanged {
				why += fmt.Sprintf(", no less than the sync before (%d bytes): the guest writes as fast as the copy goes", c.Passes[n-2].BytesChanged)
			}
			why += "; cut over anyway with when now, raise the budget, or roll back"
			return m.advance(c, func(tx *bbolt.Tx, c *store.Cutover) error { return m.move(tx, c, events.CutoverBudgetUnmet, why) })
		}
	}
	id, err := m.sync(ctx, c)
	if err != nil {
		return err
	}
	return m.advance(c, func(tx *bbolt.Tx, c *store.Cutover) error {
		c.Passes = append(c.Passes, store.CutoverPass{Job: id})
		return store.PutCutover(tx, *c)
	})
}
