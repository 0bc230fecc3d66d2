package convert

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Overlay creates at path a qcow2 overlay backed by the raw volume base:
// conversion and boot checks write into the overlay, never into the
// replica, so the replica's change ids stay valid and a failed conversion
// is retried on a new overlay without a new full copy. base is named by
// its absolute path; an existing path is an error. qemuImg is the
// qemu-img binary ("" for the one on PATH).
func Overlay(ctx context.Context, qemuImg, base, path string) error {
	if qemuImg == "" {
		qemuImg = "qemu-img"
	}
	abs, err := filepath.Abs(base)
	if err != nil {
		return fmt.Errorf("overlay of %s: %w", base, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("overlay of %s: %w", base, err)
	}
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("overlay %s: already exists", path)
	}
	out, err := exec.CommandContext(ctx, qemuImg, "create", "-q", "-f", "qcow2", "-b", abs, "-F", "raw", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("overlay of %s: qemu-img create: %v: %s", base, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Backing returns the file an overlay is backed by and its format, as
// qemu-img reads the overlay.
func Backing(ctx context.Context, qemuImg, path string) (file, format string, err error) {
	if qemuImg == "" {
		qemuImg = "qemu-img"
	}
	out, err := exec.CommandContext(ctx, qemuImg, "info", "--output=json", path).Output()
	if err != nil {
		return "", "", fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	var info struct {
		Format  string `json:"format"`
		Backing string `json:"full-backing-filename"`
		BFormat string `json:"backing-filename-format"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", "", fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	if info.Format != "qcow2" {
		return "", "", fmt.Errorf("%s is %s, not a qcow2 overlay", path, info.Format)
	}
	return info.Backing, info.BFormat, nil
}
