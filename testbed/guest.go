package testbed

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// DefaultBusybox is where scripts/install-deps.sh unpacks Debian's static
// busybox (busybox-static, downloaded, not installed: installing it would
// replace the system's busybox).
const DefaultBusybox = "/var/cache/godwit/busybox-static/bin/busybox"

// Guest kinds BusyboxGuest builds.
const (
	// GuestBoots boots through its own MBR and GRUB to "bbguest login:".
	GuestBoots = "boots"
	// GuestPanics gets as far as its kernel, whose init exits: a panic.
	GuestPanics = "panics"
	// GuestEFI boots as GuestBoots does, under UEFI firmware (OVMF): GPT,
	// GRUB's EFI image in an EFI system partition.
	GuestEFI = "efi"
)

// BusyboxGuest returns a small disk image (raw, 64 MiB, about 19 MB
// allocated) of a guest that really boots, built by
// testbed/guests/busybox-disk.sh from the host's kernel and the static
// busybox at $GODWIT_BUSYBOX (else DefaultBusybox). Images are cached
// outside the checkout, in $GODWIT_GUEST_CACHE (else
// /var/tmp/godwit-guests), keyed by the recipe, the kernel and the kind;
// a test must not write to one (boot it with -snapshot, or copy it).
func BusyboxGuest(tb testing.TB, kind string) string {
	tb.Helper()
	bb := os.Getenv("GODWIT_BUSYBOX")
	if bb == "" {
		bb = DefaultBusybox
	}
	if _, err := os.Stat(bb); err != nil {
		tb.Fatalf("no static busybox for the test guest: %v (make deps unpacks Debian's busybox-static there)", err)
	}
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(kernels) == 0 {
		tb.Fatal("no kernel in /boot for the test guest (make deps installs linux-image-amd64)")
	}
	return cachedGuest(tb, "busybox-"+kind, []string{"busybox-disk.sh", "grub-embed.sh"}, fmt.Sprint(kernels, kind), func(here, out string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(here, "busybox-disk.sh"), out)
		cmd.Env = append(os.Environ(), "BUSYBOX="+bb)
		switch kind {
		case GuestPanics:
			cmd.Env = append(cmd.Env, "GUEST_PANIC=1")
		case GuestEFI:
			cmd.Env = append(cmd.Env, "GUEST_EFI=1")
		}
		return cmd
	})
}

// DebianGuest returns a disk image (raw, 2 GiB, about 650 MB allocated)
// of a minimal Debian 12 guest made as a VMware guest is (see
// testbed/guests/debian-disk.sh): virt-v2v can convert it, and it boots
// to "vmguest login:" only once converted, on virtio. It is built with
// mmdebstrap from the Debian mirror ($DEBIAN_MIRROR) in 1-3 min, as root,
// and cached like BusyboxGuest's images.
func DebianGuest(tb testing.TB) string {
	tb.Helper()
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		tb.Fatalf("no mmdebstrap for the Debian test guest: %v (make deps installs it)", err)
	}
	return cachedGuest(tb, "debian12", []string{"debian-disk.sh", "grub-embed.sh"}, "", func(here, out string) *exec.Cmd {
		return exec.Command(filepath.Join(here, "debian-disk.sh"), out)
	})
}

// cachedGuest returns the image name-<hash>.img in the guest cache, built
// first by the command build returns (given testbed/guests and the file
// to write) when it is not there. The hash covers the scripts (in
// testbed/guests) and key.
func cachedGuest(tb testing.TB, name string, scripts []string, key string, build func(here, out string) *exec.Cmd) string {
	tb.Helper()
	here, err := guestsDir()
	if err != nil {
		tb.Fatal(err)
	}
	h := sha256.New()
	for _, f := range scripts {
		b, err := os.ReadFile(filepath.Join(here, f))
		if err != nil {
			tb.Fatal(err)
		}
		h.Write(b)
	}
	fmt.Fprint(h, key)
	cache := os.Getenv("GODWIT_GUEST_CACHE")
	if cache == "" {
		cache = "/var/tmp/godwit-guests"
	}
	img := filepath.Join(cache, fmt.Sprintf("%s-%s.img", name, hex.EncodeToString(h.Sum(nil))[:16]))
	if _, err := os.Stat(img); err == nil {
		return img
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		tb.Fatal(err)
	}
	tmp, err := os.CreateTemp(cache, ".build-*.img")
	if err != nil {
		tb.Fatal(err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if out, err := build(here, tmp.Name()).CombinedOutput(); err != nil {
		tb.Fatalf("build the %s test guest: %v\n%s", name, err, out)
	}
	if err := os.Rename(tmp.Name(), img); err != nil { // whole, or not at all
		tb.Fatal(err)
	}
	return img
}

// guestsDir returns testbed/guests in the module's source tree, next to
// this file.
func guestsDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("find testbed's directory: no caller information")
	}
	return filepath.Join(filepath.Dir(file), "guests"), nil
}
