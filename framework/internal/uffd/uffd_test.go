//go:build linux && amd64

package uffd_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/internal/uffd"
)

const page = 4096

// ram is a memfd mapped twice: guest (registered) and alias (not).
type ram struct {
	fd           int
	guest, alias []byte
}

func newRAM(t *testing.T, pages int) *ram {
	t.Helper()
	fd, err := unix.MemfdCreate("uffd-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, int64(pages*page)); err != nil {
		t.Fatal(err)
	}
	r := &ram{fd: fd}
	for _, m := range []*[]byte{&r.guest, &r.alias} {
		*m, err = unix.Mmap(fd, 0, pages*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { unix.Munmap(r.guest); unix.Munmap(r.alias); unix.Close(fd) })
	return r
}

func open(t *testing.T) *uffd.FD {
	t.Helper()
	u, err := uffd.Open(uffd.Needed)
	if errors.Is(err, uffd.ErrPermission) || errors.Is(err, uffd.ErrNotSupported) {
		t.Skipf("SKIPPED: userfaultfd unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// TestOpen checks the handshake enabled the features Ferry needs.
func TestOpen(t *testing.T) {
	u := open(t)
	if u.Features()&uffd.Needed != uffd.Needed {
		t.Fatalf("features %#x lack %#x", u.Features(), uffd.Needed)
	}
	if err := uffd.Available(); err != nil {
		t.Fatal(err)
	}
}

// TestPermissionError runs Available as an unprivileged user (nobody, no
// capabilities) in a child process: with vm.unprivileged_userfaultfd=0
// and /dev/userfaultfd root-only, it must fail at once with ErrPermission
// and say what to change.
func TestPermissionError(t *testing.T) {
	if os.Getenv("FERRY_UFFD_CHILD") == "1" {
		err := uffd.Available()
		fmt.Printf("is-permission=%v\n%v\n", errors.Is(err, uffd.ErrPermission), err)
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root to start a child as nobody")
	}
	if b, _ := os.ReadFile("/proc/sys/vm/unprivileged_userfaultfd"); strings.TrimSpace(string(b)) != "0" {
		t.Skip("SKIPPED: vm.unprivileged_userfaultfd is not 0, nobody may use userfaultfd")
	}
	bin := nobodyCopy(t)
	cmd := exec.Command(bin, "-test.run=^TestPermissionError$")
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = append(os.Environ(), "FERRY_UFFD_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("as nobody, after %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	for _, want := range []string{"is-permission=true", "vm.unprivileged_userfaultfd=0", "CAP_SYS_PTRACE", "/dev/userfaultfd"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q", want)
		}
	}
}

// nobodyCopy copies the test binary where user nobody may run it (go
// test builds it in a private directory).
func nobodyCopy(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "uffd-perm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "uffd.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestExistAndWake: placing a page twice fails with ErrExist, and Wake on
// a range without waiters is harmless.
func TestExistAndWake(t *testing.T) {
	u, r := open(t), newRAM(t, 4)
	base := uffd.Addr(r.guest)
	if err := u.Register(base, 4*page, uffd.ModeMissing|uffd.ModeMinor); err != nil {
		t.Fatal(err)
	}
	if err := u.Zeropage(base, page); err != nil {
		t.Fatal(err)
	}
	if err := u.Zeropage(base, page); !errors.Is(err, uffd.ErrExist) {
		t.Fatalf("second zeropage: %v, want ErrExist", err)
	}
	if err := u.Copy(base, make([]byte, page)); !errors.Is(err, uffd.ErrExist) {
		t.Fatalf("copy onto a present page: %v, want ErrExist", err)
	}
	if err := u.Wake(base, 4*page); err != nil {
		t.Fatal(err)
	}
	if err := u.Wait(10 * time.Millisecond); !errors.Is(err, uffd.ErrTimeout) {
		t.Fatalf("wait with no fault: %v, want ErrTimeout", err)
	}
	u.Interrupt()
	if err := u.Wait(-1); !errors.Is(err, uffd.ErrStopped) {
		t.Fatalf("wait after Interrupt: %v, want ErrStopped", err)
	}
}

// TestWaitParked: a Wait without a timeout (parked in Go's network
// poller) returns when a fault arrives, and an Interrupt from another
// goroutine ends one in progress, on a goroutine locked to its thread
// as the fault loop's is.
func TestWaitParked(t *testing.T) {
	u, r := open(t), newRAM(t, 1)
	base := uffd.Addr(r.guest)
	if err := u.Register(base, page, uffd.ModeMissing|uffd.ModeMinor); err != nil {
		t.Fatal(err)
	}
	wait := func() chan error {
		c := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			c <- u.Wait(-1)
		}()
		return c
	}
	waited := wait()
	select {
	case err := <-waited:
		t.Fatalf("Wait returned %v before any fault", err)
	case <-time.After(20 * time.Millisecond):
	}
	touched := make(chan error, 1)
	go func() { touched <- uffd.Populate(base, page, false) }() // faults inside a syscall, waits for us
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("Wait after a fault: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after a fault")
	}
	ev := make([]uffd.Event, 4)
	if n, err := u.Read(ev); err != nil || n != 1 || uintptr(ev[0].Address)&^(page-1) != base {
		t.Fatalf("Read: %d events %+v, %v", n, ev[:n], err)
	}
	if err := u.Zeropage(base, page); err != nil {
		t.Fatal(err)
	}
	if err := <-touched; err != nil {
		t.Fatal(err)
	}
	waited = wait()
	time.Sleep(20 * time.Millisecond)
	u.Interrupt()
	select {
	case err := <-waited:
		if !errors.Is(err, uffd.ErrStopped) {
			t.Fatalf("Wait interrupted: %v, want ErrStopped", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Interrupt did not end a parked Wait")
	}
}

// toucher reads the first byte of each page in order on its own locked
// OS thread, as a VMM device thread would, timing each access.
func toucher(mem []byte, pages []int, lat []time.Duration, sum *atomic.Uint64, done chan<- struct{}) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(done)
	var s uint64
	for i, p := range pages {
		t0 := time.Now()
		s += uint64(mem[p*page])
		lat[i] = time.Since(t0)
	}
	sum.Store(s)
}

// serve answers faults until stop is closed: MISSING with Copy of a page
// filled with its index, MINOR with Continue.
func serve(t *testing.T, u *uffd.FD, base uintptr, stop <-chan struct{}) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, page)
	ev := make([]uffd.Event, 16)
	for {
		select {
		case <-stop:
			return
		default:
		}
		if err := u.Wait(50 * time.Millisecond); errors.Is(err, uffd.ErrTimeout) {
			continue
		} else if err != nil {
			t.Error(err)
			return
		}
		n, err := u.Read(ev)
		if err != nil {
			t.Error(err)
			return
		}
		for _, e := range ev[:n] {
			addr := uintptr(e.Address) &^ (page - 1)
			if e.Flags&uffd.FlagMinor != 0 {
				err = u.Continue(addr, page)
			} else {
				buf[0] = byte((addr - base) / page)
				err = u.Copy(addr, buf)
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	}
}

// TestRoundTrip measures a fault's round trip as the faulting thread
// sees it, for MISSING+COPY (holes) and MINOR+CONTINUE (pages written
// through the alias), and checks every page read the right byte.
func TestRoundTrip(t *testing.T) {
	const n = 2000
	u, r := open(t), newRAM(t, 2*n)
	base := uffd.Addr(r.guest)
	for p := n; p < 2*n; p++ { // second half: in the page cache, no PTE in guest
		r.alias[p*page] = byte(p)
	}
	if err := u.Register(base, 2*n*page, uffd.ModeMissing|uffd.ModeMinor); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	served := make(chan struct{})
	go func() { defer close(served); serve(t, u, base, stop) }()
	defer func() { close(stop); <-served }()

	for _, path := range []struct {
		name  string
		first int
	}{{"MISSING+COPY", 0}, {"MINOR+CONTINUE", n}} {
		pages := make([]int, n)
		var want uint64
		for i := range pages {
			pages[i] = path.first + i
			want += uint64(byte(pages[i]))
		}
		lat := make([]time.Duration, n)
		var sum atomic.Uint64
		done := make(chan struct{})
		go toucher(r.guest, pages, lat, &sum, done)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: toucher hung", path.name)
		}
		if sum.Load() != want {
			t.Errorf("%s: pages read sum %d, want %d", path.name, sum.Load(), want)
		}
		slices.Sort(lat)
		t.Logf("%s round trip over %d faults: p50 %.1f us, p99 %.1f us, max %.1f us", path.name, n,
			us(lat[n/2]), us(lat[n*99/100]), us(lat[n-1]))
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Interrupt after Close does nothing (it must not write to a reused fd
// number), and Close twice is harmless.
func TestInterruptAfterClose(t *testing.T) {
	u := open(t)
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	u.Interrupt()
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
}
