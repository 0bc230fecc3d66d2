package bootcheck

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"
)

// kernelRan matches what a kernel booted without a root prints as it
// gives up: proof that it ran to the end of its start.
var kernelRan = regexp.MustCompile(`VFS: Unable to mount root|Kernel panic`)

// ProbeKVM reports whether guests run under KVM here: whether a real boot
// of kernel (the host's own, booted directly, without a root) gets as far
// as its panic for want of a root within timeout under -accel kvm. Where
// /dev/kvm is missing it says no at once. A host whose KVM starts qemu but
// hangs its guests (as some nested or PVM hosts do) or aborts qemu says no
// too, after at most timeout. why says what was seen.
func ProbeKVM(ctx context.Context, qemu, kernel string, timeout time.Duration) (ok bool, why string) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false, "no /dev/kvm"
	}
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	args := []string{"-accel", AccelKVM, "-m", "256", "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot",
		"-nic", "none", "-serial", "stdio", "-monitor", "none", "-kernel", kernel, "-append", "console=ttyS0 panic=-1"}
	res, err := boot(ctx, qemu, args, timeout, kernelRan, "", "")
	switch {
	case err != nil:
		return false, err.Error()
	case res.Passed:
		return true, "a kernel booted under KVM"
	}
	return false, "a kernel did not boot under KVM: " + res.Reason
}

// HostKernel returns the newest kernel in /boot, for ProbeKVM; "" when
// there is none.
func HostKernel() string {
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(ks) == 0 {
		return ""
	}
	slices.Sort(ks)
	return ks[len(ks)-1]
}
