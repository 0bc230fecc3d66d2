package convert_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/oma/bootcheck"
	"github.com/godwit/godwit/oma/convert"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
)

// replicaWithOverlay copies the busybox guest into a replica's volume in a
// new directory and puts an overlay over it; it returns the three.
func replicaWithOverlay(t *testing.T) (dir, replica, overlay string) {
	t.Helper()
	dir = t.TempDir()
	replica = filepath.Join(dir, "disk-2000.g1.raw")
	if out, err := exec.Command("cp", "--sparse=always", testbed.BusyboxGuest(t, testbed.GuestBoots), replica).CombinedOutput(); err != nil {
		t.Fatalf("copy the guest: %v %s", err, out)
	}
	overlay = filepath.Join(dir, "disk-2000.overlay.qcow2")
	if err := convert.Overlay(testkit.Context(t), "", replica, overlay); err != nil {
		t.Fatal(err)
	}
	return dir, replica, overlay
}

// TestOverlayLeavesTheReplica: writes through an overlay land in the
// overlay; the replica (a guest disk that boots) keeps every byte, and the
// guest boots from the overlay.
func TestOverlayLeavesTheReplica(t *testing.T) {
	testkit.Long(t)
	dir, replica, overlay := replicaWithOverlay(t)
	before := testkit.FileSum(t, replica)
	ctx := testkit.Context(t)
	if file, format, err := convert.Backing(ctx, "", overlay); err != nil || file != replica || format != "raw" {
		t.Errorf("the overlay is backed by %q (%s, %v), want %s (raw)", file, format, err, replica)
	}
	if err := convert.Overlay(ctx, "", replica, overlay); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("a second overlay on the same path: %v", err)
	}
	// Write through the overlay, as a conversion does: into free space at
	// the end of the guest's filesystem, so that it still boots.
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0xab 62M 64k", overlay).CombinedOutput(); err != nil {
		t.Fatalf("write through the overlay: %v %s", err, out)
	}
	res, err := bootcheck.Run(ctx, bootcheck.Config{Timeout: 3 * time.Minute}, []bootcheck.Disk{{Path: overlay, Format: "qcow2"}})
	if err != nil || !res.Passed {
		t.Errorf("the overlay does not boot: %v %s", err, res.Reason)
	}
	if testkit.FileSum(t, replica) != before {
		t.Error("the replica changed under its overlay")
	}
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0xab 62M 64k", overlay).CombinedOutput(); err != nil || strings.Contains(string(out), "Pattern verification failed") {
		t.Errorf("the overlay lost what was written through it: %v %s", err, out)
	}
	if err := convert.Overlay(ctx, "", filepath.Join(dir, "missing.raw"), filepath.Join(dir, "o2.qcow2")); err == nil {
		t.Error("an overlay of a missing replica was made")
	}
}
