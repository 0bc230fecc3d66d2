package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/vma/vcenter"
)

// powerPoll is how often a guest shutdown is checked on.
const powerPoll = time.Second

// defaultShutdownTimeout bounds a guest shutdown whose command sets no timeout.
const defaultShutdownTimeout = 300 * time.Second

// startPower runs a power command beside the jobs: a guest shutdown may
// take minutes, and the commands consumer goes on meanwhile. A command
// already under way is not started twice.
func (r *Runner) startPower(c *events.PowerCommand) {
	r.mu.Lock()
	if r.powering[c.RequestID] {
		r.mu.Unlock()
		return
	}
	r.powering[c.RequestID] = true
	r.mu.Unlock()
	r.wg.Go(func() {
		defer func() {
			r.mu.Lock()
			delete(r.powering, c.RequestID)
			r.mu.Unlock()
		}()
		r.power(r.runCtx, c)
	})
}

// power carries out c and publishes its report, which says the power
// state before (what a rollback restores), the method and the time it took.
func (r *Runner) power(ctx context.Context, c *events.PowerCommand) {
	start := r.cfg.Now()
	rep := &events.PowerReport{RequestID: c.RequestID, VMAID: r.cfg.Identity.ID, VMID: c.VM.ID, Action: c.Action}
	log := r.log.With("request", c.RequestID, "vm", c.VM.Path, "action", c.Action, "mode", c.Mode)
	var err error
	if now := r.cfg.Now(); now.After(c.NotAfter) {
		err = fmt.Errorf("%w: the command arrived at %s, after its deadline %s: the OMA no longer waits for it", errInvalid,
			now.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	} else {
		err = r.powerVM(ctx, c, rep)
	}
	rep.Seconds = r.cfg.Now().Sub(start).Seconds()
	rep.DoneAt = r.cfg.Now().UTC()
	if err != nil {
		code := vcenter.FailureCode(err)
		if errors.Is(err, errInvalid) {
			code = events.FailureInvalid
		}
		rep.Error = &events.Failure{Code: code, Message: err.Error()}
		log.Warn("power command failed", "err", err, "before", rep.StateBefore)
	} else {
		log.Info("power command done", "before", rep.StateBefore, "after", rep.StateAfter, "method", rep.Method, "seconds", rep.Seconds)
	}
	// The report must reach the OMA: the cutover waits for it.
	for {
		_, perr := r.conn.Publish(ctx, rep)
		if perr == nil || ctx.Err() != nil {
			return
		}
		log.Warn("publish the power report: retrying", "err", perr)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// powerVM logs in, finds c's VM, records its power state in rep and
// powers it as c says.
func (r *Runner) powerVM(ctx context.Context, c *events.PowerCommand, rep *events.PowerReport) error {
	vc := r.cfg.VCenter
	vc.Host, vc.Username, vc.CAPEM, vc.Thumbprint = c.VCenter, c.Username, c.CAPEM, c.Thumbprint
	s, err := vcenter.LoginSealed(ctx, vc, r.cfg.Identity.Key, c.Password)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	defer s.Close()
	vm, err := s.FindVM(ctx, c.VM.Path)
	if err != nil {
		return err
	}
	if !sameVM(c.VM, vm) {
		return fmt.Errorf("%w: %s now names VM %s (instance UUID %s), not VM %s (instance UUID %s)",
			vcenter.ErrNotFound, c.VM.Path, vm.Ref.Value, vm.InstanceUUID, c.VM.ID, c.VM.InstanceUUID)
	}
	if rep.StateBefore, err = s.PowerState(ctx, vm); err != nil {
		return err
	}
	rep.StateAfter = rep.StateBefore
	switch c.Action {
	case events.PowerOn:
		err = r.powerOn(ctx, s, vm, rep)
	case events.PowerOff:
		err = r.powerOff(ctx, s, vm, c, rep)
	default:
		return fmt.Errorf("%w: power action %q", errInvalid, c.Action)
	}
	if err != nil {
		return err
	}
	rep.StateAfter, err = s.PowerState(ctx, vm)
	return err
}

// errInvalid marks a command that cannot be carried out as asked.
var errInvalid = errors.New("refused")

// powerOn powers vm on unless it is on.
func (r *Runner) powerOn(ctx context.Context, s *vcenter.Session, vm *vcenter.VM, rep *events.PowerReport) error {
	rep.Method = events.PowerMethodNone
	if rep.StateBefore == events.PowerStateOn {
		return nil
	}
	rep.Method = events.PowerMethodOn
	return s.PowerOn(ctx, vm)
}

// powerOff powers vm off as c.Mode says: a guest shutdown waited for up
// to c.TimeoutSeconds, a hard power-off, or the first then the second.
// It checks that the VM is off in the end.
func (r *Runner) powerOff(ctx context.Context, s *vcenter.Session, vm *vcenter.VM, c *events.PowerCommand, rep *events.PowerReport) error {
	rep.Method = events.PowerMethodNone
	if rep.StateBefore == events.PowerStateOff {
		return nil
	}
	hardAllowed := c.Mode == events.PowerOffHard || c.Mode == events.PowerOffGuestThenHard
	timeout := time.Duration(c.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = defaultShutdownTimeout
	}
	switch {
	case c.Mode != events.PowerOffGuest && !hardAllowed:
		return fmt.Errorf("%w: power-off mode %q", errInvalid, c.Mode)
	case rep.StateBefore == events.PowerStateSuspended && !hardAllowed:
		return fmt.Errorf("%w: the VM is suspended, so its guest cannot shut down, and mode is guest: resume it, or cut over with power_off guest-then-hard or hard", errInvalid)
	case c.Mode != events.PowerOffHard && rep.StateBefore == events.PowerStateOn:
		err := s.ShutdownGuest(ctx, vm)
		switch {
		case errors.Is(err, vcenter.ErrNoTools) && hardAllowed:
			r.log.Warn("no VMware Tools in the guest: powering the VM off hard", "vm", vm.Path)
		case err != nil:
			return err
		default:
			off, err := s.WaitPoweredOff(ctx, vm, timeout, powerPoll)
			if err != nil {
				return err
			}
			if off {
				rep.Method = events.PowerMethodGuest
				return nil
			}
			rep.GuestTimedOut = true
			if !hardAllowed {
				return fmt.Errorf("%w: the guest did not shut down within %s and power_off is guest: shut it down by hand, or cut over with power_off guest-then-hard", errInvalid, timeout)
			}
			r.log.Warn("the guest did not shut down in time: powering the VM off hard", "vm", vm.Path, "timeout", timeout)
		}
	}
	rep.Method = events.PowerMethodHard
	if err := s.PowerOff(ctx, vm); err != nil {
		return err
	}
	off, err := s.WaitPoweredOff(ctx, vm, time.Minute, powerPoll)
	if err != nil {
		return err
	}
	if !off {
		return fmt.Errorf("VM %s is still on a minute after vCenter powered it off", vm.Path)
	}
	return nil
}
