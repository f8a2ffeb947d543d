#!/bin/bash
# run-in-tcg.sh REPO_DIR TEST_BINARY [test args...]
#
# Boots a QEMU TCG (software) VM with nested SVM, so /dev/kvm exists inside,
# and runs TEST_BINARY with the args in REPO_DIR/vmm/e2e (cwd), as root.
# The VM's root is this host's / (read-only, virtio-9p) with tmpfs on /tmp;
# REPO_DIR is shared read-write at the same path. The test's output goes to
# stdout; the script exits with the test's status (125: VM setup failed,
# 124: VM died or timed out without reporting a status).
#
# Environment: VM_MEM (default 6G), VM_SMP (default 2), VM_CPU (default
# "max"), VM_TIMEOUT seconds for the whole VM (default 7200), VM_KVM_AMD
# extra kvm_amd... (unused), KEEP=1 to keep the run directory (console log).
# FERRY_E2E_* variables are passed to the test (e.g. FERRY_E2E_UNPROVEN=1).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 REPO_DIR TEST_BINARY [test args...]" >&2; exit 2; }
REPO=$(cd "$1" && pwd -P)
BIN=$(readlink -f "$2")
shift 2
[ -f "$REPO/go.mod" ] || { echo "$REPO: no go.mod" >&2; exit 2; }
[ -x "$BIN" ] || { echo "$BIN: not executable" >&2; exit 2; }
case "$REPO" in *[[:space:]]*) echo "REPO_DIR must not contain spaces" >&2; exit 2;; esac
[ -x "$REPO/bin/ferry-vmm" ] || echo "warning: $REPO/bin/ferry-vmm missing (run make all)" >&2

KVER=${KVER:-$(ls /lib/modules | grep -- '-amd64$' | sort -V | tail -1)}
KERNEL=/boot/vmlinuz-$KVER
[ -r "$KERNEL" ] || { echo "$KERNEL missing: apt-get install linux-image-amd64" >&2; exit 2; }
if [ ! -f "$HERE/initramfs.cpio.gz" ] || [ "$HERE/init" -nt "$HERE/initramfs.cpio.gz" ] || [ "$HERE/build-initramfs.sh" -nt "$HERE/initramfs.cpio.gz" ]; then
	KVER=$KVER "$HERE/build-initramfs.sh" >&2
fi

RUN=$(mktemp -d "${TMPDIR:-/tmp}/ferry-tcg.XXXXXX")
cleanup() {
	[ -n "${QPID:-}" ] && kill "$QPID" 2>/dev/null || true
	if [ "${KEEP:-0}" = 1 ]; then echo "run directory kept: $RUN" >&2; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
cp "$BIN" "$RUN/test.bin"
{
	echo "cd '$REPO/vmm/e2e' || exit 125"
	# The tests' own switches (FERRY_E2E_UNPROVEN=1, ...) reach the VM.
	env | grep '^FERRY_E2E_[A-Z_]*=[A-Za-z0-9_.-]*$' | sed 's/^/export /' || true
	printf 'exec /mnt/ctl/test.bin'
	for a in "$@"; do printf " '%s'" "${a//\'/\'\\\'\'}"; done
	echo
} > "$RUN/cmd.sh"
: > "$RUN/out.log"

qemu-system-x86_64 \
	-accel tcg,thread=multi -machine q35 -cpu "${VM_CPU:-max}" \
	-smp "${VM_SMP:-2}" -m "${VM_MEM:-6G}" \
	-display none -no-reboot -nodefaults \
	-kernel "$KERNEL" -initrd "$HERE/initramfs.cpio.gz" \
	-append "console=ttyS0 panic=-1 mitigations=off ferry.repo=$REPO ${VM_APPEND:-}" \
	-serial "file:$RUN/console.log" \
	-virtfs "local,path=/usr,mount_tag=usr,security_model=passthrough,readonly=on,id=usr" \
	-virtfs "local,path=/etc,mount_tag=etc,security_model=passthrough,readonly=on,id=etc" \
	-virtfs "local,path=$REPO,mount_tag=repo,security_model=passthrough,id=repo" \
	-virtfs "local,path=$RUN,mount_tag=ctl,security_model=passthrough,id=ctl" \
	< /dev/null > "$RUN/qemu.log" 2>&1 &
QPID=$!
START=$(date +%s)
tail -n +1 -f --pid="$QPID" "$RUN/out.log" &
TPID=$!
while kill -0 "$QPID" 2>/dev/null; do
	if [ $(( $(date +%s) - START )) -gt "${VM_TIMEOUT:-7200}" ]; then
		echo "run-in-tcg: VM timed out after ${VM_TIMEOUT:-7200}s; killing it" >&2
		kill "$QPID"
		break
	fi
	sleep 1
done
wait "$QPID" 2>/dev/null || true
QPID=
wait "$TPID" 2>/dev/null || true
echo "run-in-tcg: VM ran $(( $(date +%s) - START ))s" >&2
if [ -s "$RUN/rc" ]; then
	rc=$(cat "$RUN/rc")
else
	echo "run-in-tcg: the VM reported no exit status; console log:" >&2
	tail -n 40 "$RUN/console.log" >&2 || true
	cat "$RUN/qemu.log" >&2 || true
	rc=124
fi
if [ "$rc" = 125 ] || [ "${SHOW_CONSOLE:-0}" = 1 ]; then
	echo "--- VM console ---" >&2; cat "$RUN/console.log" >&2
fi
exit "$rc"
