// Package bootcheck boots a guest's disks in an isolated qemu and watches
// its serial console for a login prompt: the proof that a converted guest
// boots before an operator finds out that it does not.
//
// The guest runs with -snapshot (its disks are never written), without a
// network, on one vCPU, its memory capped at MaxMemoryMiB. KVM is used only
// when a real boot under it works (see ProbeKVM): on some hosts /dev/kvm
// exists and qemu starts, yet guests hang or qemu aborts.
package bootcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Accelerators qemu runs a guest with.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// DefaultPrompt matches a getty's login prompt at the end of a line.
var DefaultPrompt = regexp.MustCompile(`(?m)\S login: ?$`)

// failures are console lines that end a boot: the guest will not get to a
// prompt.
var failures = regexp.MustCompile(`Kernel panic|Gave up waiting for root|ALERT!|\(initramfs\)|emergency mode|No bootable device|Boot failed`)

// MaxMemoryMiB caps the guest's memory: a boot check needs no more.
const MaxMemoryMiB = 2048

// maxConsole bounds the console kept in memory; the first bytes go first.
const maxConsole = 1 << 20

// Default timeouts for a boot to its prompt.
const (
	DefaultTimeoutTCG = 10 * time.Minute
	DefaultTimeoutKVM = 3 * time.Minute
)

// Disk is one disk of the guest, in controller order: the first boots.
type Disk struct {
	// Path is the disk image; Format is "raw" or "qcow2" ("" is raw).
	Path   string
	Format string
	// Bus is "virtio" (the default: what a converted guest uses), "ide"
	// or "sata".
	Bus string
}

// Config is how a guest is booted. The zero value boots on TCG with 512
// MiB, for DefaultTimeoutTCG, waiting for DefaultPrompt.
type Config struct {
	// Qemu is the qemu binary; "" means qemu-system-x86_64.
	Qemu string
	// Accel is AccelKVM or AccelTCG; "" means TCG.
	Accel string
	// MemoryMiB is the guest's memory, capped at MaxMemoryMiB; 0 means 512.
	MemoryMiB int
	// Timeout bounds the wait for the prompt; 0 means DefaultTimeoutTCG,
	// or DefaultTimeoutKVM with KVM.
	Timeout time.Duration
	// Prompt is what a booted guest prints; nil means DefaultPrompt.
	Prompt *regexp.Regexp
	// Firmware is bios ("") or efi: UEFI guests boot with OVMF (Debian's
	// ovmf package), from a copy of its variable store.
	Firmware string
	// Screendump, when set, is where a PNG of the guest's screen is
	// written when the check times out: what a guest without a serial
	// console showed. The guest then gets a VGA display.
	Screendump string
}

// Result is how a boot check ended.
type Result struct {
	// Passed says the prompt appeared.
	Passed bool `json:"passed"`
	// Accel is the accelerator the guest ran on.
	Accel string `json:"accel"`
	// Seconds is the time to the prompt, or until the check gave up.
	Seconds float64 `json:"seconds"`
	// Reason says why it did not pass: the console line that ended the
	// boot, a timeout, or qemu's exit, with the last console lines.
	Reason string `json:"reason,omitempty"`
	// Console is the guest's serial console (its last MiB).
	Console []byte `json:"-"`
	// Screendump is the PNG of the screen taken at the timeout, if any.
	Screendump string `json:"screendump,omitempty"`
}

// Run boots disks under cfg until the prompt appears, a failure shows on
// the console, qemu exits, the timeout passes or ctx ends. Its error is
// for a check that could not run (qemu missing, no disk); a guest that
// does not boot is a Result that did not pass.
func Run(ctx context.Context, cfg Config, disks []Disk) (Result, error) {
	if len(disks) == 0 {
		return Result{}, errors.New("boot check: no disk")
	}
	cfg = withDefaults(cfg)
	args := []string{"-accel", cfg.Accel, "-m", fmt.Sprint(cfg.MemoryMiB), "-smp", "1",
		"-nodefaults", "-display", "none", "-no-reboot", "-nic", "none", "-snapshot",
		"-serial", "stdio", "-monitor", "none"}
	if cfg.Accel == AccelTCG {
		args = append(args, "-cpu", "max")
	}
	for _, d := range disks {
		if d.Bus == "sata" { // the controller before the disks on it
			args = append(args, "-machine", "q35", "-device", "ahci,id=ahci")
			break
		}
	}
	for i, d := range disks {
		da, err := driveArgs(i, d)
		if err != nil {
			return Result{}, err
		}
		args = append(args, da...)
	}
	switch cfg.Firmware {
	case "", "bios":
	case "efi":
		fw, err := ovmfArgs()
		if err != nil {
			return Result{}, err
		}
		defer os.Remove(fw.vars)
		args = append(args, fw.args...)
	default:
		return Result{}, fmt.Errorf("boot check: firmware %q is not bios or efi", cfg.Firmware)
	}
	var qmp string
	if cfg.Screendump != "" {
		dir, err := os.MkdirTemp("", "bootcheck-qmp-")
		if err != nil {
			return Result{}, fmt.Errorf("boot check: %w", err)
		}
		defer os.RemoveAll(dir)
		qmp = filepath.Join(dir, "qmp.sock")
		args = append(args, "-device", "VGA", "-qmp", "unix:"+qmp+",server=on,wait=off")
	}
	res, err := boot(ctx, cfg.Qemu, args, cfg.Timeout, cfg.Prompt, qmp, cfg.Screendump)
	res.Accel = cfg.Accel
	return res, err
}

// OVMF's firmware and the template of its variable store, as Debian's
// ovmf package installs them (the 4 MiB builds first).
var ovmfFiles = [][2]string{
	{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
}

// ovmf is qemu's arguments for a UEFI boot, and the copy of the variable
// store they use, to remove after the boot.
type ovmf struct {
	args []string
	vars string
}

// ovmfArgs makes the arguments that boot a guest with OVMF, its variables
// in a fresh copy of the template.
func ovmfArgs() (ovmf, error) {
	for _, f := range ovmfFiles {
		if _, err := os.Stat(f[0]); err != nil {
			continue
		}
		tmpl, err := os.ReadFile(f[1])
		if err != nil {
			return ovmf{}, fmt.Errorf("boot check: OVMF variables: %w", err)
		}
		vars, err := os.CreateTemp("", "bootcheck-vars-*.fd")
		if err != nil {
			return ovmf{}, fmt.Errorf("boot check: %w", err)
		}
		_, err = vars.Write(tmpl)
		if cerr := vars.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(vars.Name())
			return ovmf{}, fmt.Errorf("boot check: OVMF variables: %w", err)
		}
		return ovmf{vars: vars.Name(), args: []string{
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + f[0],
			"-drive", "if=pflash,format=raw,unit=1,file=" + vars.Name()}}, nil
	}
	return ovmf{}, fmt.Errorf("boot check: a UEFI guest needs OVMF (Debian's ovmf package: %s)", ovmfFiles[0][0])
}

// withDefaults fills cfg's zero fields.
func withDefaults(cfg Config) Config {
	if cfg.Qemu == "" {
		cfg.Qemu = "qemu-system-x86_64"
	}
	if cfg.Accel == "" {
		cfg.Accel = AccelTCG
	}
	if cfg.MemoryMiB <= 0 {
		cfg.MemoryMiB = 512
	}
	cfg.MemoryMiB = min(cfg.MemoryMiB, MaxMemoryMiB)
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeoutTCG
		if cfg.Accel == AccelKVM {
			cfg.Timeout = DefaultTimeoutKVM
		}
	}
	if cfg.Prompt == nil {
		cfg.Prompt = DefaultPrompt
	}
	return cfg
}

// driveArgs are qemu's arguments for disk i.
func driveArgs(i int, d Disk) ([]string, error) {
	format := d.Format
	if format == "" {
		format = "raw"
	}
	if format != "raw" && format != "qcow2" {
		return nil, fmt.Errorf("boot check: disk %s: format %q is not raw or qcow2", d.Path, format)
	}
	if strings.ContainsRune(d.Path, ',') {
		return nil, fmt.Errorf("boot check: disk path %q has a comma, which qemu's options cannot carry", d.Path)
	}
	file := fmt.Sprintf("file=%s,format=%s", d.Path, format)
	switch d.Bus {
	case "", "virtio":
		return []string{"-drive", file + ",if=virtio"}, nil
	case "ide":
		return []string{"-drive", file + ",if=ide"}, nil
	case "sata":
		return []string{"-drive", fmt.Sprintf("%s,if=none,id=d%d", file, i), "-device", fmt.Sprintf("ide-hd,drive=d%d,bus=ahci.%d", i, i)}, nil
	}
	return nil, fmt.Errorf("boot check: disk %s: bus %q is not virtio, ide or sata", d.Path, d.Bus)
}

// boot runs qemu with args and watches its serial console (its stdout).
func boot(ctx context.Context, qemu string, args []string, timeout time.Duration, prompt *regexp.Regexp, qmp, shot string) (Result, error) {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	cmd := exec.CommandContext(ctx, qemu, args...)
	// A guest must not outlive the OMA that watches it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, fmt.Errorf("boot check: %w", err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("boot check: start %s: %w", qemu, err)
	}
	con := &console{prompt: prompt, seen: make(chan string, 1)}
	var reading sync.WaitGroup
	reading.Go(func() { _, _ = io.Copy(con, out) })
	exited := make(chan error, 1)
	go func() { reading.Wait(); exited <- cmd.Wait() }()

	res := Result{}
	select {
	case what := <-con.seen:
		res.Seconds = time.Since(start).Seconds()
		if what == "" {
			res.Passed = true
		} else {
			res.Reason = fmt.Sprintf("the console showed %q", what)
		}
		cancel()
		<-exited
	case <-timer.C:
		res.Seconds = time.Since(start).Seconds()
		res.Reason = fmt.Sprintf("no prompt within %s", timeout)
		if qmp != "" {
			if err := screendump(parent, qmp, shot); err != nil {
				res.Reason += " (" + err.Error() + ")"
			} else {
				res.Screendump = shot
			}
		}
		cancel()
		<-exited
	case err := <-exited:
		res.Seconds = time.Since(start).Seconds()
		switch {
		case parent.Err() != nil:
			return res, fmt.Errorf("boot check: %w", parent.Err())
		default:
			res.Reason = fmt.Sprintf("qemu exited (%v) before the prompt", err)
			if msg := strings.TrimSpace(stderr.String()); msg != "" {
				res.Reason += ": " + lastLines(msg, 3)
			}
		}
	}
	res.Console = con.bytes()
	if !res.Passed {
		if tail := lastLines(string(res.Console), 5); tail != "" {
			res.Reason += "; the console's last lines: " + tail
		} else {
			res.Reason += "; the console stayed empty"
		}
	}
	return res, nil
}

// console keeps a guest's serial output and says when it shows the prompt
// ("") or a failure (its text) on seen, once.
type console struct {
	prompt *regexp.Regexp
	seen   chan string

	mu   sync.Mutex
	buf  []byte
	told bool
}

// Write implements io.Writer.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	if len(c.buf) > maxConsole {
		c.buf = append(c.buf[:0], c.buf[len(c.buf)-maxConsole:]...)
	}
	if c.told {
		return len(p), nil
	}
	// A match may span writes: look again at the last 4 KiB.
	tail := c.buf[max(0, len(c.buf)-len(p)-4096):]
	clean := strings.ReplaceAll(string(tail), "\r", "")
	switch {
	case c.prompt.MatchString(clean):
		c.told = true
		c.seen <- ""
	case failures.MatchString(clean):
		c.told = true
		c.seen <- failures.FindString(clean)
	}
	return len(p), nil
}

func (c *console) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf)
}

// lastLines returns the last n non-empty lines of s, joined by " | ", with
// terminal escapes dropped.
func lastLines(s string, n int) string {
	s = escapes.ReplaceAllString(s, "")
	var out []string
	lines := strings.Split(strings.ReplaceAll(s, "\r", ""), "\n")
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			out = append([]string{l}, out...)
		}
	}
	return strings.Join(out, " | ")
}

// escapes are terminal control sequences.
var escapes = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)
