package vddk

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// installHint says what to install when the vddk plugin is missing.
const installHint = "install nbdkit's vddk plugin (nbdkit-vddk-plugin on Fedora/RHEL; " +
	"Debian's nbdkit ships none, build nbdkit --with-vddk) and VMware's VDDK in -vddk-libdir"

// Check reports whether cfg can be served: the nbdkit binary runs, loads
// its vddk plugin (or cfg.Plugin) with --dump-plugin, and, for vddk,
// VMware's VDDK library is in cfg.LibDir (or the plugin's default
// directory) as lib64/libvixDiskLib.so.*. It returns nil or an error
// wrapping ErrNotInstalled that names what to install. Without a deadline
// on ctx it gives up after 10 seconds.
func Check(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	bin, err := exec.LookPath(cfg.Nbdkit)
	if err != nil {
		return fmt.Errorf("%w: nbdkit (%s) is not installed: %v; %s", ErrNotInstalled, cfg.Nbdkit, err, installHint)
	}
	plugin := cfg.plugin()
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, plugin, "--dump-plugin")
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("check nbdkit's %s plugin: %w", plugin, ctx.Err())
		}
		return fmt.Errorf("%w: nbdkit cannot load its %s plugin (%v: %s); %s",
			ErrNotInstalled, plugin, err, firstLine(stderr.String()), installHint)
	}
	if len(cfg.Plugin) > 0 {
		return nil
	}
	libdir := cfg.LibDir
	if libdir == "" {
		libdir = dumpValue(out.Bytes(), "vddk_default_libdir")
	}
	if libdir == "" {
		return fmt.Errorf("%w: no VDDK library directory: set -vddk-libdir", ErrNotInstalled)
	}
	libs, _ := filepath.Glob(filepath.Join(libdir, "lib64", "libvixDiskLib.so*"))
	if len(libs) == 0 {
		return fmt.Errorf("%w: VMware's VDDK is not in %s (no lib64/libvixDiskLib.so*): "+
			"install the VDDK there or point -vddk-libdir at it", ErrNotInstalled, libdir)
	}
	return nil
}

// Installed reports whether Check finds nothing missing, so that
// "-source auto" picks vddk when it can and the datastore source otherwise.
func Installed(ctx context.Context, cfg Config) bool {
	return Check(ctx, cfg) == nil
}

// dumpValue returns the value of key in nbdkit's --dump-plugin output.
func dumpValue(out []byte, key string) string {
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), "="); ok && k == key {
			return v
		}
	}
	return ""
}

// firstLine returns the first line of s, trimmed.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
