#!/bin/bash
# grub-embed.sh IMAGE PREFIX: installs GRUB (i386-pc) into IMAGE's MBR and the
# gap before its first partition, as grub-bios-setup would on a device:
# boot.img into the MBR, core.img into sectors 1..n, their sector pointers
# patched. No loop device, no mount. From ../shared/GUESTS.md.
set -euo pipefail
img=$1 prefix=$2 d=/usr/lib/grub/i386-pc
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
grub-mkimage -O i386-pc -o "$tmp/core.img" -p "$prefix" biosdisk part_msdos ext2 search search_fs_uuid
nsec=$(( ($(stat -c %s "$tmp/core.img") + 511) / 512 ))
[ "$nsec" -lt 2047 ] || { echo "grub-embed: core.img too big for the MBR gap" >&2; exit 1; }
le() { local v=$1 n=$2 s=""; for ((i=0;i<n;i++)); do s+=$(printf '\\x%02x' $(( (v>>(8*i)) & 255 ))); done; printf "$s"; }
# core.img's sector 0 is diskboot.img; its blocklist {u64 start; u16 len; u16 seg} is at byte 500.
le 2 8 | dd of="$tmp/core.img" bs=1 seek=500 conv=notrunc status=none
le $((nsec-1)) 2 | dd of="$tmp/core.img" bs=1 seek=508 conv=notrunc status=none
dd if="$tmp/core.img" of="$img" bs=512 seek=1 conv=notrunc status=none
cp $d/boot.img "$tmp/boot.img"
le 1 8 | dd of="$tmp/boot.img" bs=1 seek=$((0x5c)) conv=notrunc status=none        # kernel_sector = 1
printf '\xff' | dd of="$tmp/boot.img" bs=1 seek=$((0x64)) conv=notrunc status=none    # boot drive from the BIOS
printf '\x90\x90' | dd of="$tmp/boot.img" bs=1 seek=$((0x66)) conv=notrunc status=none # no floppy check
dd if="$tmp/boot.img" of="$img" bs=1 count=440 conv=notrunc status=none               # keep the partition table
