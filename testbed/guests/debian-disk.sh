#!/bin/bash
# debian-disk.sh OUT.img [SIZE_MB]: a minimal Debian 12 guest made "VMware-like",
# as ../shared/GUESTS.md measured it: systemd, one ext4 root partition at 1 MiB
# found by UUID (fstab and the kernel's root=), GRUB in the MBR gap, a console on
# ttyS0 with a getty ("vmguest login:"), and an initramfs with only VMware's disk
# drivers (MODULES=list: ata_piix ahci mptspi mptsas vmw_pvscsi), so that the
# unconverted disk does not boot on virtio and virt-v2v has real work to do.
# root's password is root. Built with mmdebstrap from the Debian mirror, then
# assembled without a loop device or a mount (mke2fs -d into the partition,
# grub-embed.sh for the boot code). Needs root. About 1-3 min.
set -euo pipefail
out=$1 size=${2:-2048}
here=$(cd "$(dirname "$0")" && pwd)
uuid=$(cat /proc/sys/kernel/random/uuid)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
w=$(mktemp -d /var/tmp/debian-guest.XXXXXX); trap 'rm -rf "$w"' EXIT
mmdebstrap --quiet --variant=minbase --mode=root \
  --include=linux-image-amd64,systemd-sysv,udev,grub-pc,e2fsprogs \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --essential-hook='mkdir -p "$1"/etc/initramfs-tools/conf.d "$1"/usr/share/initramfs-tools/modules.d
     echo MODULES=list > "$1"/etc/initramfs-tools/conf.d/vmware-like.conf
     printf "%s\n" ata_piix ahci ata_generic mptspi mptsas vmw_pvscsi sd_mod ext4 crc32c_generic > "$1"/usr/share/initramfs-tools/modules.d/vmware-like' \
  --customize-hook='echo vmguest > "$1"/etc/hostname; printf "127.0.0.1 localhost\n127.0.1.1 vmguest\n" > "$1"/etc/hosts
     echo root:root | chroot "$1" chpasswd
     echo "UUID='"$uuid"' / ext4 errors=remount-ro 0 1" > "$1"/etc/fstab
     cat > "$1"/etc/default/grub <<G
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"
GRUB_TERMINAL="serial console"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
G' \
  bookworm "$w/rootfs.tar" "$mirror"
r=$w/root; mkdir -p "$r"
tar -xpf "$w/rootfs.tar" -C "$r" --numeric-owner
rm -f "$w/rootfs.tar"
kv=$(ls "$r"/lib/modules | sort -V | tail -1)
mkdir -p "$r/boot/grub/i386-pc"
cp "$r"/usr/lib/grub/i386-pc/*.mod "$r"/usr/lib/grub/i386-pc/*.lst "$r/boot/grub/i386-pc/"
cat > "$r/boot/grub/grub.cfg" <<G
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root $uuid
menuentry 'Debian GNU/Linux' {
  linux /boot/vmlinuz-$kv root=UUID=$uuid ro console=tty0 console=ttyS0,115200n8
  initrd /boot/initrd.img-$kv
}
G
rm -f "$out"; truncate -s "${size}M" "$out"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$out"
mke2fs -q -F -t ext4 -U "$uuid" -L root -d "$r" -E offset=1048576 "$out" $((size-1))M
"$here/grub-embed.sh" "$out" '(hd0,msdos1)/boot/grub'
