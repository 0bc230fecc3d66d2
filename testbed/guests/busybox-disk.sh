#!/bin/bash
# busybox-disk.sh OUT.img [SIZE_MB]: a small disk that really boots through
# its own MBR and GRUB: the host's Debian kernel, a busybox initramfs that
# loads the disk drivers (IDE, SATA, virtio) and finds its root by UUID, and
# a busybox root with a getty on ttyS0 ("bbguest login:"). virt-v2v cannot
# convert it (no package database): it is for the copy and boot paths.
# BUSYBOX names a static busybox. GUEST_PANIC=1 makes a disk whose
# initramfs exits: the kernel panics ("Attempted to kill init"). GUEST_EFI=1
# makes a UEFI disk: GPT, an EFI system partition with GRUB's EFI image, for
# OVMF. From ../shared/GUESTS.md.
set -euo pipefail
out=$1 size=${2:-64}
here=$(cd "$(dirname "$0")" && pwd)
kv=$(ls /lib/modules | sort -V | tail -1)
uuid=$(cat /proc/sys/kernel/random/uuid)
bb=${BUSYBOX:?BUSYBOX must name a static busybox}
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
ir=$w/initramfs; mkdir -p "$ir"/{bin,dev,proc,sys,mnt,lib/modules}
cp "$bb" "$ir/bin/busybox"
for a in sh mount umount insmod switch_root findfs sleep echo cat seq; do ln -s busybox "$ir/bin/$a"; done
: > "$w/mods"
for m in ata_piix ahci sd_mod virtio_pci virtio_blk virtio_scsi ext4 crc32c_generic; do
  modprobe -S "$kv" --show-depends "$m" | awk '$1=="insmod"{print $2}' >> "$w/mods"
done
awk '!seen[$0]++' "$w/mods" > "$w/mods.u"
while read -r ko; do cp "$ko" "$ir/lib/modules/"; echo "insmod /lib/modules/$(basename "$ko") 2>/dev/null"; done < "$w/mods.u" > "$w/insmods"
if [ "${GUEST_PANIC:-}" = 1 ]; then
  printf '#!/bin/sh\necho "bbguest: init exits on purpose"\nexit 1\n' > "$ir/init"
else
  cat > "$ir/init" <<INIT
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
$(cat "$w/insmods")
for i in \$(seq 1 50); do dev=\$(findfs UUID=$uuid 2>/dev/null) && break; sleep 0.2; done
[ -n "\$dev" ] && mount -t ext4 -o ro "\$dev" /mnt || { echo "ALERT! UUID=$uuid does not exist"; exec sh; }
umount /proc /sys; mount --move /dev /mnt/dev 2>/dev/null || umount /dev
exec switch_root /mnt /sbin/init
INIT
fi
chmod +x "$ir/init"
r=$w/root; mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,tmp,root,boot/grub/i386-pc,usr/bin,usr/sbin}
cp "$bb" "$r/bin/busybox"; chroot "$r" /bin/busybox --install -s
ln -sf ../bin/busybox "$r/sbin/init"
cat > "$r/etc/inittab" <<'T'
::sysinit:/bin/mount -t proc proc /proc
::sysinit:/bin/mount -o remount,rw /
::sysinit:/bin/hostname -F /etc/hostname
ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100
::ctrlaltdel:/sbin/reboot
T
echo bbguest > "$r/etc/hostname"
echo 'root::0:0:root:/root:/bin/sh' > "$r/etc/passwd"; echo 'root:x:0:' > "$r/etc/group"
echo "UUID=$uuid / ext4 defaults 0 1" > "$r/etc/fstab"
printf 'NAME="busybox-guest"\nID=busybox\n' > "$r/etc/os-release"
(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) > "$r/boot/initrd.img"
cp "/boot/vmlinuz-$kv" "$r/boot/vmlinuz"
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$r/boot/grub/i386-pc/"
cat > "$r/boot/grub/grub.cfg" <<G
serial --unit=0 --speed=115200
terminal_input serial console; terminal_output serial console
set timeout=0
search --no-floppy --fs-uuid --set=root $uuid
linux /boot/vmlinuz root=UUID=$uuid ro console=ttyS0,115200n8 quiet panic=-1
initrd /boot/initrd.img
boot
G
rm -f "$out"; truncate -s "${size}M" "$out"
if [ "${GUEST_EFI:-}" = 1 ]; then
  # UEFI: GPT, a 16 MiB EFI system partition holding GRUB as EFI/BOOT/BOOTX64.EFI
  # (the removable-media path firmware boots without a boot entry), the root after it.
  mkdir -p "$r/boot/grub/x86_64-efi"
  cp /usr/lib/grub/x86_64-efi/*.mod /usr/lib/grub/x86_64-efi/*.lst "$r/boot/grub/x86_64-efi/"
  printf 'label: gpt\nstart=2048, size=32768, type=U\nstart=34816, size=%d, type=L\n' $(( (size-18)*2048 )) | sfdisk -q "$out"
  mke2fs -q -F -t ext4 -U "$uuid" -L root -d "$r" -E offset=$((34816*512)) "$out" $((size-18))M
  grub-mkimage -O x86_64-efi -o "$w/BOOTX64.EFI" -p '(hd0,gpt2)/boot/grub' part_gpt ext2 search search_fs_uuid serial
  mkfs.vfat -C "$w/esp.img" 16384 >/dev/null
  mmd -i "$w/esp.img" ::/EFI ::/EFI/BOOT
  mcopy -i "$w/esp.img" "$w/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
  dd if="$w/esp.img" of="$out" bs=512 seek=2048 conv=notrunc status=none
  exit 0
fi
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$out"
mke2fs -q -F -t ext4 -U "$uuid" -L root -d "$r" -E offset=1048576 "$out" $((size-1))M
"$here/grub-embed.sh" "$out" '(hd0,msdos1)/boot/grub'
