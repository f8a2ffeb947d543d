#!/bin/sh
# Builds initramfs.cpio.gz: busybox static, /init, and the modules for
# KVM (kvm, kvm-amd + deps), virtio-9p, and veth and tbf (network
# namespaces joined by a shaped veth pair), taken from the Debian kernel
# installed on this host (linux-image-amd64).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
KVER=${KVER:-$(ls /lib/modules | grep -- '-amd64$' | sort -V | tail -1)}
OUT=$HERE/initramfs.cpio.gz
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/bin" "$T/sbin" "$T/proc" "$T/sys" "$T/dev" "$T/newroot" "$T/ctl" "$T/modules"
cp /bin/busybox "$T/bin/busybox"
for a in sh stty mount umount insmod mkdir cat echo sleep poweroff chroot ip ls mknod dmesg grep sync; do
	ln -s busybox "$T/bin/$a"
done
# insmod in dependency order, each module once
: > "$T/modules/order"
for m in kvm-amd 9p 9pnet_virtio virtio_pci veth sch_tbf; do
	modprobe -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
	case "$ko" in
	*.xz) xz -dc "$ko" > "$T/modules/$(basename "$ko" .xz)" ;;
	*.zst) zstd -dc "$ko" > "$T/modules/$(basename "$ko" .zst)" ;;
	*) cp "$ko" "$T/modules/" ;;
	esac
	basename "${ko%.xz}" | sed 's/\.zst$//' >> "$T/modules/order"
done
cp "$HERE/init" "$T/init"
chmod +x "$T/init"
(cd "$T" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT"
echo "$OUT ($KVER): $(cat "$T/modules/order" | tr '\n' ' ')"
