package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferryvm/ferry/vmm/qmp"
)

// QEMU beside Ferry in the 2016 table (issue 11): the same test guest
// (bin/guest.elf, its own virtio-balloon driver against QEMU's
// virtio-balloon on virtio-mmio) in a QEMU microvm, migrated between the
// same two namespaces over the same link, once with free-page-hint off
// and once on. max-bandwidth is raised from QEMU's 128 MiB/s default so
// the link, not the cap, bounds it, and downtime-limit is Ferry's
// max_downtime in the table's job.

// qemuDowntimeMS is the table's max_downtime, as QEMU's downtime-limit.
const qemuDowntimeMS = 50

// qemuUnlimited is max-bandwidth in bytes/s: far above a 10 Gbit/s link.
const qemuUnlimited = 100 << 30

// qemuBinary finds qemu-system-x86_64 and its version line.
func qemuBinary() (path, version string, err error) {
	path, err = exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", "", fmt.Errorf("-table-qemu needs qemu-system-x86_64 in PATH (Debian: apt-get install qemu-system-x86): %w", err)
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return "", "", fmt.Errorf("%s --version: %w", path, err)
	}
	version, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	return path, version, nil
}

// qemuCase boots the guest in a QEMU microvm in namespace a, a second
// one waiting for it in b, and migrates once with free-page-hint fph.
// The row's Bytes are query-migrate's ram transferred (page data and its
// headers; QEMU's device state is not counted there).
func qemuCase(qemu, bin, dir string, ns *netns, mem, workload string, fph bool) (row, error) {
	r := row{Workload: workload, Hints: qemuHints(fph)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	props := "free-page-hint=" + onOff(fph)
	args := func(sock string, extra ...string) []string {
		a := []string{"-accel", "kvm", "-machine", "microvm,acpi=off", "-m", mem,
			"-kernel", filepath.Join(bin, "guest.elf"), "-append", "workload=" + workload,
			"-nodefaults", "-no-reboot", "-serial", "stdio", "-display", "none"}
		a = append(append(a, qmp.TSCArgs()...), qmp.BalloonArgs(sock, props)...)
		return append(a, extra...)
	}
	srcSock, dstSock := filepath.Join(dir, "qsrc.sock"), filepath.Join(dir, "qdst.sock")
	src, srcOut, err := startQuiet(ctx, ns.exec(ns.a, qemu, args(srcSock)...))
	if err != nil {
		return r, err
	}
	defer stop(src)
	dst, dstOut, err := startQuiet(ctx, ns.exec(ns.b, qemu, args(dstSock, "-incoming", "defer")...))
	if err != nil {
		return r, err
	}
	defer stop(dst)
	if err := waitFor(srcOut, "tick 2 ", 5*time.Minute); err != nil {
		return r, fmt.Errorf("source guest under QEMU: %w", err)
	}
	sq, err := qmp.Dial(ctx, srcSock, nil)
	if err != nil {
		return r, err
	}
	defer sq.Close()
	dq, err := qmp.Dial(ctx, dstSock, nil)
	if err != nil {
		return r, err
	}
	defer dq.Close()
	uri := fmt.Sprintf("tcp:%s:7071", ns.addrB)
	if err := dq.Execute(ctx, "migrate-incoming", map[string]any{"uri": uri}, nil); err != nil {
		return r, err
	}
	if err := sq.Execute(ctx, "migrate-set-parameters", map[string]any{
		"max-bandwidth": qemuUnlimited, "downtime-limit": qemuDowntimeMS}, nil); err != nil {
		return r, err
	}
	if err := sq.Execute(ctx, "migrate", map[string]any{"uri": uri}, nil); err != nil {
		return r, err
	}
	info, err := qmp.WaitMigration(ctx, sq)
	if err != nil {
		return r, err
	}
	if err := waitFor(dstOut, "verify=ok", 2*time.Minute); err != nil {
		return r, fmt.Errorf("destination guest under QEMU after the migration: %w", err)
	}
	r.Status, r.TotalMS, r.Downtime, r.Bytes = "completed", info.TotalTime, info.Downtime, uint64(info.RAM.Transferred)
	return r, nil
}

func qemuHints(fph bool) string {
	return "qemu-fph-" + onOff(fph)
}

// onOff is how QEMU spells a boolean property.
func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
