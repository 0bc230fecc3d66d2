package vcenter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// ErrNoTools: the guest cannot be asked to shut down, because VMware
// Tools do not run in it.
var ErrNoTools = errors.New("VMware Tools do not run in the guest")

// PowerState returns vm's power state as vSphere names it: poweredOn,
// poweredOff or suspended.
func (s *Session) PowerState(ctx context.Context, vm *VM) (string, error) {
	var m mo.VirtualMachine
	if err := vm.obj.Properties(ctx, vm.Ref, []string{"runtime.powerState"}, &m); err != nil {
		return "", fmt.Errorf("VM %s: power state: %w", vm.Path, err)
	}
	return string(m.Runtime.PowerState), nil
}

// ShutdownGuest asks the guest of vm to shut down through VMware Tools.
// It returns once the guest was asked, not when it has stopped: see
// WaitPoweredOff. A guest without Tools wraps ErrNoTools.
func (s *Session) ShutdownGuest(ctx context.Context, vm *VM) error {
	err := vm.obj.ShutdownGuest(ctx)
	if fault.Is(err, &types.ToolsUnavailable{}) {
		return fmt.Errorf("shut down the guest of VM %s: %w", vm.Path, ErrNoTools)
	}
	if err != nil {
		return fmt.Errorf("shut down the guest of VM %s: %w", vm.Path, err)
	}
	return nil
}

// WaitPoweredOff polls vm's power state every poll until it is powered
// off or timeout passes; it reports whether it is off.
func (s *Session) WaitPoweredOff(ctx context.Context, vm *VM, timeout, poll time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := s.PowerState(ctx, vm)
		if err != nil {
			return false, err
		}
		if st == string(types.VirtualMachinePowerStatePoweredOff) {
			return true, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(min(poll, left)):
		}
	}
}

// PowerOff powers vm off at once, as pulling its plug would.
func (s *Session) PowerOff(ctx context.Context, vm *VM) error {
	task, err := vm.obj.PowerOff(ctx)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil && !fault.Is(err, &types.InvalidPowerState{}) {
		return fmt.Errorf("power off VM %s: %w", vm.Path, err)
	}
	return nil
}

// PowerOn powers vm on.
func (s *Session) PowerOn(ctx context.Context, vm *VM) error {
	task, err := vm.obj.PowerOn(ctx)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil && !fault.Is(err, &types.InvalidPowerState{}) {
		return fmt.Errorf("power on VM %s: %w", vm.Path, err)
	}
	return nil
}
