package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/vmm"
	"github.com/ferryvm/ferry/vmm/control"
	"github.com/ferryvm/ferry/vmm/memory"
)

// openGuestRAM opens, through /proc, the guest RAM memfd of a ferry-vmm
// process: a test-only way to copy RAM between processes (the migration
// transports map the memfd they are handed instead).
func openGuestRAM(t *testing.T, pid int, flag int) *os.File {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil && strings.HasPrefix(link, "/memfd:ferry-guest-ram") {
			f, err := os.OpenFile(filepath.Join(dir, e.Name()), flag, 0)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no guest RAM memfd among %s", dir)
	return nil
}

// copyRAMFiles copies the populated, non-zero pages of src into dst.
func copyRAMFiles(t *testing.T, src, dst *os.File) (copied int64) {
	t.Helper()
	st, err := src.Stat()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	fd := int(src.Fd())
	for off := int64(0); off < st.Size(); {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		for p := data; p < hole; {
			n := min(int64(len(buf)), hole-p)
			if _, err := src.ReadAt(buf[:n], p); err != nil {
				t.Fatal(err)
			}
			for i := int64(0); i < n; i += memory.PageSize {
				page := buf[i : i+memory.PageSize]
				if !allZero(page) {
					if _, err := dst.WriteAt(page, p+i); err != nil {
						t.Fatal(err)
					}
					copied += memory.PageSize
				}
			}
			p += n
		}
		off = hole
	}
	return copied
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// waitSocket waits until a control socket answers status.
func waitSocket(t *testing.T, ctx context.Context, sock string) vmm.Status {
	t.Helper()
	var st vmm.Status
	for {
		err := control.Call(ctx, sock, "status", nil, &st)
		if err == nil {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("control socket %s: %v", sock, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// lastTick waits for n ticks and returns the last one's number.
func (r *guestRun) lastTick(n int, d time.Duration) uint64 {
	r.t.Helper()
	var last uint64
	for i := 0; i < n; i++ {
		m := r.waitLine(tickRE, d)
		if m[4] != "ok" {
			r.t.Fatalf("guest verification failed: %s", strings.Join(m, " "))
		}
		last, _ = strconv.ParseUint(m[1], 10, 64)
	}
	return last
}

// TestStateColdMigration moves a guest between two ferry-vmm processes
// through the control socket: pause and state-save on the source, guest
// RAM copied memfd to memfd, state-load and resume on a target started
// with -incoming. The guest ticks on from its count with its memory
// verified; the source resumes afterwards; bad requests fail clearly.
func TestStateColdMigration(t *testing.T) {
	needKVM(t, "TestStateColdMigration (ferry-vmm -incoming, state-save and state-load over the control socket)")
	_, guest := binaries(t)
	dir := t.TempDir()
	srcSock, dstSock, file := filepath.Join(dir, "src.sock"), filepath.Join(dir, "dst.sock"), filepath.Join(dir, "vm.state")
	ctx, cancel := context.WithTimeout(context.Background(), slow(3*time.Minute))
	defer cancel()

	src := startVMM(t, "-kernel", guest, "-mem", "1G", "-control", srcSock, "-cmdline", stateWorkload)
	last := src.lastTick(3, 90*time.Second)
	var res map[string]any
	err := control.Call(ctx, srcSock, "state-save", map[string]string{"path": file}, &res)
	if err == nil || !strings.Contains(err.Error(), "pause it first") {
		t.Fatalf("state-save of a running VM: %v", err)
	}
	var st vmm.Status
	if err := control.Call(ctx, srcSock, "pause", nil, &st); err != nil {
		t.Fatal(err)
	}
	if err := control.Call(ctx, srcSock, "state-save", map[string]string{"path": file}, &res); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != int64(res["bytes"].(float64)) {
		t.Fatalf("state file %v (%v), answer %v: want mode 0600 and the size reported", fi, err, res)
	}
	if err := control.Call(ctx, srcSock, "state-load", map[string]string{"path": file}, nil); err == nil ||
		!strings.Contains(err.Error(), "only an incoming VM") {
		t.Fatalf("state-load into a running VM's source: %v", err)
	}

	dst := startVMM(t, "-incoming", "-mem", "1G", "-control", dstSock)
	if st := waitSocket(t, ctx, dstSock); st.State != vmm.StateIncoming {
		t.Fatalf("incoming VM is %s", st.State)
	}
	if err := control.Call(ctx, dstSock, "resume", nil, nil); err == nil {
		t.Fatal("resume before state-load succeeded")
	}
	bad := filepath.Join(dir, "bad.state")
	blob, _ := os.ReadFile(file)
	blob[len(blob)/2] ^= 1
	os.WriteFile(bad, blob, 0o600)
	if err := control.Call(ctx, dstSock, "state-load", map[string]string{"path": bad}, nil); err == nil ||
		!strings.Contains(err.Error(), "CRC") {
		t.Fatalf("state-load of a corrupted file: %v", err)
	}

	from := openGuestRAM(t, src.cmd.Process.Pid, os.O_RDONLY)
	defer from.Close()
	to := openGuestRAM(t, dst.cmd.Process.Pid, os.O_RDWR)
	defer to.Close()
	t.Logf("copied %d MiB of guest RAM", copyRAMFiles(t, from, to)>>20)
	if err := control.Call(ctx, dstSock, "state-load", map[string]string{"path": file}, &st); err != nil {
		t.Fatal(err)
	}
	if st.State != vmm.StatePaused {
		t.Fatalf("after state-load the VM is %s", st.State)
	}
	if err := control.Call(ctx, dstSock, "resume", nil, &st); err != nil || st.State != vmm.StateRunning {
		t.Fatalf("resume: %+v, %v", st, err)
	}
	first := dst.lastTick(1, 10*time.Second)
	if first != last+1 && first != last+2 {
		t.Fatalf("target's first tick %d; the source's last was %d", first, last)
	}
	if n := dst.lastTick(3, 10*time.Second); n != first+3 {
		t.Fatalf("target ticked %d after %d", n, first)
	}

	if err := control.Call(ctx, srcSock, "resume", nil, &st); err != nil {
		t.Fatal(err)
	}
	if n := src.lastTick(2, 10*time.Second); n < last+2 {
		t.Fatalf("source resumed at tick %d after %d", n, last)
	}
	for _, sock := range []string{srcSock, dstSock} {
		if err := control.Call(ctx, sock, "quit", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	go src.drain()
	go dst.drain()
	for _, r := range []*guestRun{src, dst} {
		if code := r.exitCode(30 * time.Second); code != 0 {
			t.Errorf("%v exited %d", r, code)
		}
	}
}

// TestIncomingBadInput checks ferry-vmm's refusals around -incoming.
func TestIncomingBadInput(t *testing.T) {
	_, guest := binaries(t)
	sock := filepath.Join(t.TempDir(), "s.sock")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"kernel", []string{"-incoming", "-kernel", guest, "-mem", "1G", "-control", sock}, "takes no -kernel"},
		{"cmdline", []string{"-incoming", "-cmdline", "x", "-mem", "1G", "-control", sock}, "takes no -kernel or -cmdline"},
		{"no control", []string{"-incoming", "-mem", "1G"}, "needs -control"},
		{"no mem", []string{"-incoming", "-control", sock}, "-mem is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startVMM(t, tc.args...)
			go r.drain()
			code := r.exitCode(30 * time.Second)
			if stderr := r.errors(); code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant 2 and %q", code, stderr, tc.want)
			}
		})
	}
}
