package convert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Options are how Convert runs virt-v2v-in-place.
type Options struct {
	// Binary is virt-v2v-in-place; "" means the one on PATH.
	Binary string
	// KVM lets libguestfs's appliance run under KVM; without it (where
	// guests do not run under KVM: see bootcheck.ProbeKVM) it is forced
	// onto TCG, as libguestfs's own choice of KVM aborts there.
	KVM bool
}

// Result is a conversion's outcome.
type Result struct {
	// Log is the file holding virt-v2v-in-place's whole output.
	Log string
	// Took is how long it ran.
	Took time.Duration
}

// Convert converts the guest of domain (a libvirt domain, such as
// SourceDomain writes, whose disks are overlays) to run on KVM with
// virt-v2v-in-place -i libvirtxml, in place: into the overlays. It keeps
// the domain and virt-v2v's output in dir. A failure says virt-v2v's own
// error line, not just its exit status.
func Convert(ctx context.Context, opts Options, domain []byte, dir string) (Result, error) {
	bin := opts.Binary
	if bin == "" {
		bin = "virt-v2v-in-place"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Result{}, fmt.Errorf("convert: %w", err)
	}
	xmlPath := filepath.Join(dir, "source-domain.xml")
	if err := os.WriteFile(xmlPath, domain, 0o600); err != nil {
		return Result{}, fmt.Errorf("convert: %w", err)
	}
	res := Result{Log: filepath.Join(dir, "virt-v2v.log")}
	cmd := exec.CommandContext(ctx, bin, "-i", "libvirtxml", xmlPath)
	// virt-v2v must not outlive the OMA that waits for it; SIGTERM lets
	// it stop its own appliance.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Env = append(os.Environ(), "LIBGUESTFS_BACKEND=direct")
	if !opts.KVM {
		cmd.Env = append(cmd.Env, "LIBGUESTFS_BACKEND_SETTINGS=force_tcg")
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	runErr := cmd.Run()
	res.Took = time.Since(start)
	if err := os.WriteFile(res.Log, out.Bytes(), 0o600); err != nil {
		return res, fmt.Errorf("convert: keep virt-v2v's output: %w", err)
	}
	if runErr != nil {
		if line := errorLine(out.String()); line != "" {
			return res, &Error{Line: line, Err: runErr}
		}
		return res, &Error{Line: lastLine(out.String()), Err: runErr}
	}
	return res, nil
}

// Error is a failed conversion: virt-v2v's own error line.
type Error struct {
	Line string
	Err  error
}

func (e *Error) Error() string { return "conversion failed: " + e.Line }
func (e *Error) Unwrap() error { return e.Err }

// errorLine returns virt-v2v's first "error:" line in out.
func errorLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, ": error: ") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// lastLine returns the last non-empty line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return "no output"
}

// IsError reports whether err is a conversion's failure.
func IsError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
