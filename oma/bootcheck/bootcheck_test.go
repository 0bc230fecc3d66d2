package bootcheck_test

import (
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/oma/bootcheck"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
)

// TestBootChecks boots real disks under TCG, through their own MBR, GRUB,
// kernel and initramfs: a guest that gets to its login prompt passes, on
// every bus, and under UEFI (OVMF) for a UEFI disk, which BIOS cannot
// boot; one whose kernel panics fails with the panic and the last
// console lines; one that never shows the prompt asked for fails at the
// timeout.
func TestBootChecks(t *testing.T) {
	testkit.Long(t)
	boots := testbed.BusyboxGuest(t, testbed.GuestBoots)
	panics := testbed.BusyboxGuest(t, testbed.GuestPanics)
	efi := testbed.BusyboxGuest(t, testbed.GuestEFI)
	tests := []struct {
		name   string
		cfg    bootcheck.Config
		disk   bootcheck.Disk
		passed bool
		reason string
	}{
		{"login prompt on virtio", bootcheck.Config{}, bootcheck.Disk{Path: boots}, true, ""},
		{"login prompt on sata", bootcheck.Config{}, bootcheck.Disk{Path: boots, Bus: "sata"}, true, ""},
		{"kernel panic", bootcheck.Config{}, bootcheck.Disk{Path: panics}, false, `the console showed "Kernel panic"`},
		{"UEFI guest under OVMF", bootcheck.Config{Firmware: "efi"}, bootcheck.Disk{Path: efi}, true, ""},
		{"UEFI guest without UEFI firmware", bootcheck.Config{Timeout: 20 * time.Second}, bootcheck.Disk{Path: efi}, false, "no prompt within 20s"},
		{"another prompt never shows", bootcheck.Config{Prompt: regexp.MustCompile(`never-printed`), Timeout: 3 * time.Second},
			bootcheck.Disk{Path: boots}, false, "no prompt within 3s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := bootcheck.Run(testkit.Context(t), tt.cfg, []bootcheck.Disk{tt.disk})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("passed %v after %.1fs on %s: %s", res.Passed, res.Seconds, res.Accel, res.Reason)
			if res.Passed != tt.passed || !strings.Contains(res.Reason, tt.reason) || res.Accel != bootcheck.AccelTCG {
				t.Errorf("passed %v, reason %q on %s; want %v, %q on tcg\nconsole:\n%s", res.Passed, res.Reason, res.Accel, tt.passed, tt.reason, res.Console)
			}
			if tt.passed && !strings.Contains(string(res.Console), "bbguest login:") {
				t.Errorf("passed without the prompt on the console:\n%s", res.Console)
			}
			if !tt.passed && !strings.Contains(res.Reason, "; the console") {
				t.Errorf("a failure without the console's last lines: %q", res.Reason)
			}
		})
	}
}

// TestBadDisks: what cannot be booted is an error, and no qemu runs.
func TestBadDisks(t *testing.T) {
	for _, tt := range []struct {
		name  string
		disks []bootcheck.Disk
		want  string
	}{
		{"none", nil, "no disk"},
		{"format", []bootcheck.Disk{{Path: "/x.vmdk", Format: "vmdk"}}, `format "vmdk"`},
		{"bus", []bootcheck.Disk{{Path: "/x.img", Bus: "scsi"}}, `bus "scsi"`},
		{"comma", []bootcheck.Disk{{Path: "/a,b.img"}}, "comma"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bootcheck.Run(t.Context(), bootcheck.Config{Qemu: "/nonexistent/qemu"}, tt.disks)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want one saying %q", err, tt.want)
			}
		})
	}
}

// TestProbeKVM: the probe's answer holds for a real boot. Where it says
// KVM works, a guest boots to its prompt under KVM; where not, it says
// why (on these machines /dev/kvm is there, but guests hang under it).
func TestProbeKVM(t *testing.T) {
	testkit.Long(t)
	kernel := bootcheck.HostKernel()
	if kernel == "" {
		t.Fatal("no kernel in /boot (make deps installs linux-image-amd64)")
	}
	start := time.Now()
	ok, why := bootcheck.ProbeKVM(testkit.Context(t), "", kernel, 20*time.Second)
	t.Logf("KVM usable: %v (%s), decided in %s", ok, why, time.Since(start).Round(time.Millisecond))
	if time.Since(start) > time.Minute {
		t.Errorf("the probe took %s, past its 20s timeout", time.Since(start))
	}
	if !ok {
		if why == "" {
			t.Error("KVM unusable, and no reason")
		}
		return
	}
	res, err := bootcheck.Run(testkit.Context(t), bootcheck.Config{Accel: bootcheck.AccelKVM},
		[]bootcheck.Disk{{Path: testbed.BusyboxGuest(t, testbed.GuestBoots)}})
	if err != nil || !res.Passed {
		t.Errorf("the probe said KVM works, but a guest did not boot under it: %v %s", err, res.Reason)
	}
}

// TestScreendumpAtTimeout: a boot check that times out keeps a PNG of the
// guest's screen, taken through QMP, for a guest whose serial console says
// nothing useful; a check that passes takes none.
func TestScreendumpAtTimeout(t *testing.T) {
	testkit.Long(t)
	boots := testbed.BusyboxGuest(t, testbed.GuestBoots)
	shot := filepath.Join(t.TempDir(), "screen.png")
	res, err := bootcheck.Run(testkit.Context(t), bootcheck.Config{Prompt: regexp.MustCompile(`never-printed`), Timeout: 4 * time.Second, Screendump: shot},
		[]bootcheck.Disk{{Path: boots}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Passed || res.Screendump != shot || !strings.Contains(res.Reason, "no prompt within 4s") {
		t.Fatalf("result %+v: want a timeout with a screendump at %s", res, shot)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the screendump is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 320 || b.Dy() < 200 {
		t.Errorf("screendump of %v, want a screen", b)
	}
	other := filepath.Join(t.TempDir(), "none.png")
	res, err = bootcheck.Run(testkit.Context(t), bootcheck.Config{Screendump: other}, []bootcheck.Disk{{Path: boots}})
	if err != nil || !res.Passed || res.Screendump != "" {
		t.Fatalf("a passing check: %+v, %v; want passed without a screendump", res, err)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("a passing check wrote a screendump: %v", err)
	}
}
