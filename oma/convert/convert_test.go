package convert_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/convert"
	"github.com/godwit/godwit/testkit"
)

// TestConvertRefusesWithItsReason: virt-v2v-in-place, given the domain of
// a guest it cannot convert (the busybox guest has no package database),
// fails with its own error line, keeps its output, and leaves the replica
// under the overlay as it was.
func TestConvertRefusesWithItsReason(t *testing.T) {
	testkit.Long(t)
	dir, replica, overlay := replicaWithOverlay(t)
	before := testkit.FileSum(t, replica)
	ctx := testkit.Context(t)
	vm := events.VM{ID: "vm-7", Name: "bbguest", NumCPU: 1, MemoryMB: 512, Firmware: "bios",
		Disks: []events.Disk{{Key: 2000, Label: "Hard disk 1", Controller: "SCSI controller 0"}}}
	domain, err := convert.SourceDomain(vm, []convert.DiskFile{{Key: 2000, Path: overlay, Format: "qcow2"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := convert.Convert(ctx, convert.Options{}, domain, filepath.Join(dir, "conversion"))
	t.Logf("virt-v2v-in-place ran %s: %v", res.Took.Round(100_000_000), err)
	if !convert.IsError(err) || !strings.Contains(err.Error(), "virt-v2v-in-place: error: inspection could not detect the source guest") {
		t.Fatalf("err %v, want virt-v2v's inspection refusal", err)
	}
	if log, rerr := os.ReadFile(res.Log); rerr != nil || !strings.Contains(string(log), "Inspecting the source") {
		t.Errorf("virt-v2v's output kept: %v\n%s", rerr, log)
	}
	if testkit.FileSum(t, replica) != before {
		t.Error("the replica changed under a conversion")
	}
}
