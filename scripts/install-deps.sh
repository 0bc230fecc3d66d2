#!/usr/bin/env bash
# Installs the Debian packages godwit's tests and dev stack need, if missing:
# nbdkit (NBD exports), libnbd-bin (nbdcopy, nbdinfo), openssh-server (the tunnel),
# time (/usr/bin/time: peak RSS in scripts/bench-copy.sh), curl and jq (make run's and
# make demo's walkthrough; make test's and make check's per-package lines, scripts/go-test.sh),
# iproute2 (ip: the network namespaces of e2e's TestTwoMachines) and openssl (the OMA's
# certificate in the README's two-machine steps, which it runs); for the boot checks of
# cutover (oma/bootcheck), its overlays (qemu-utils: qemu-img), its conversion (virt-v2v,
# libguestfs-tools) and the test guests
# (testbed/guests): qemu-system-x86, a kernel
# (linux-image-amd64), grub-pc-bin, fdisk (sfdisk), cpio, kmod (modprobe), mmdebstrap (the
# Debian guest of make test-guest), for UEFI guests ovmf (their boot checks) and
# grub-efi-amd64-bin, dosfstools and mtools (the UEFI test guest), chromium (the web
# console's browser tests, oma/console, driven headless through chromedp), and Debian's
# static busybox unpacked (not installed: it would replace the system's busybox) into
# /var/cache/godwit/busybox-static.
set -euo pipefail

pkgs=(nbdkit libnbd-bin openssh-server time curl jq iproute2 openssl
  qemu-system-x86 qemu-utils linux-image-amd64 grub-pc-bin fdisk cpio kmod virt-v2v libguestfs-tools mmdebstrap
  ovmf grub-efi-amd64-bin dosfstools mtools chromium)
busybox_dir=/var/cache/godwit/busybox-static

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
fi

# fetch_busybox unpacks busybox-static's .deb into $busybox_dir, once.
fetch_busybox() {
  [ -x "$busybox_dir/bin/busybox" ] && return 0
  echo "unpacking Debian's busybox-static into $busybox_dir (for the test guests)"
  local tmp; tmp=$(mktemp -d); chmod a+rwx "$tmp" # apt-get download writes as _apt
  (cd "$tmp" && apt-get download busybox-static >/dev/null) || { $sudo apt-get update >/dev/null && (cd "$tmp" && apt-get download busybox-static >/dev/null); }
  $sudo mkdir -p "$busybox_dir"
  $sudo dpkg-deb -x "$tmp"/busybox-static_*.deb "$busybox_dir"
  rm -rf "$tmp"
}
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "Debian packages: all present"
  fetch_busybox
  exit 0
fi

echo "installing Debian packages (apt-get update, then install: a minute or two): ${missing[*]}"
$sudo apt-get update
if [ "${CI:-}" = true ] && ! dpkg-divert --list /usr/sbin/update-initramfs | grep -q local; then
  # A CI machine boots no kernel of its own: skip building initramfs images
  # for the kernel the test guests borrow (minutes, for nothing).
  $sudo dpkg-divert --local --rename --add /usr/sbin/update-initramfs
  $sudo ln -sf /bin/true /usr/sbin/update-initramfs
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fetch_busybox
