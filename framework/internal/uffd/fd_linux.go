//go:build linux && amd64

package uffd

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Needed are the features Ferry's destination needs: MISSING and MINOR
// faults on shared memory (memfd guest RAM). MINOR_SHMEM needs Linux 5.14.
const Needed = FeatureMissingShmem | FeatureMinorShmem

// FD is an open userfaultfd after the UFFDIO_API handshake.
//
// Concurrency: the resolving calls (Copy, Zeropage, Continue, Wake),
// Register and Unregister may be called from any goroutine; Wait and Read
// from one goroutine at a time; Interrupt from any goroutine at any time;
// Close after the other calls returned (a second Close does nothing).
type FD struct {
	fd       int
	stop     int // eventfd: readable once Interrupt was called
	features uint64
	ioctls   uint64
	mu       sync.Mutex // orders Interrupt against Close: never write to a closed (reused) fd number
	closed   bool
	raw      [64]rawMsg // Read's buffer

	// Wait without a timeout parks in Go's network poller (file owns
	// fd; ioctls use the number), so the waiting thread holds no P (a thread blocked in
	// poll(2) keeps its P until sysmon retakes it, 20 us to 10 ms later,
	// and with it the goroutines it readied: the fault loop's page
	// requests; docs/BENCHMARKS.md "Where a network fault's time goes").
	// rc is nil if the poller refused the descriptor: Wait then uses
	// poll(2).
	file    *os.File
	rc      syscall.RawConn
	ready   func(fd uintptr) bool // rc.Read's callback, made once
	pfd     [1]unix.PollFd
	perr    error
	stopped atomic.Bool
}

// Available reports whether this process can open a userfaultfd with the
// features Ferry needs, as Open would; the error says what to change.
func Available() error {
	u, err := Open(Needed)
	if err != nil {
		return err
	}
	return u.Close()
}

// Open creates a userfaultfd that traps user and kernel faults and
// enables the features in want (Needed, optionally FeatureThreadID).
// It fails with ErrPermission or ErrNotSupported, wrapped in an error
// that says what to change.
func Open(want uint64) (*FD, error) {
	supported, err := probe()
	if err != nil {
		return nil, err
	}
	if missing := want &^ supported; missing != 0 {
		return nil, fmt.Errorf("%w: this kernel lacks userfaultfd features %#x (have %#x; MINOR on shared memory needs Linux 5.14 or later)",
			ErrNotSupported, missing, supported)
	}
	fd, err := create()
	if err != nil {
		return nil, err
	}
	api := apiArgs{Api: APIVersion, Features: want}
	if err := ioctlPtr(fd, ioctlAPI, &api); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("userfaultfd handshake (features %#x): %w", want, err)
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("userfaultfd stop eventfd: %w", err)
	}
	u := &FD{fd: fd, stop: stop, features: api.Features, ioctls: api.Ioctls}
	u.openPoller()
	return u, nil
}

// openPoller hands the descriptor to an os.File (which then owns it)
// and registers it with Go's network poller, for Wait; if the poller
// refuses it, Wait uses poll(2) alone.
func (u *FD) openPoller() {
	u.file = os.NewFile(uintptr(u.fd), "userfaultfd") // non-blocking: pollable
	rc, err := u.file.SyscallConn()
	if err != nil || u.file.SetReadDeadline(time.Time{}) != nil { // ErrNoDeadline: not in the poller
		return
	}
	u.rc = rc
	u.ready = func(uintptr) bool {
		u.pfd[0] = unix.PollFd{Fd: int32(u.fd), Events: unix.POLLIN}
		n, err := unix.Poll(u.pfd[:], 0)
		switch {
		case err == unix.EINTR:
			return false
		case err != nil:
			u.perr = fmt.Errorf("userfaultfd poll: %w", err)
			return true
		case n > 0 && u.pfd[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0:
			u.perr = fmt.Errorf("userfaultfd poll: revents %#x", u.pfd[0].Revents)
			return true
		}
		return n > 0
	}
}

// probe opens a throw-away descriptor and returns the features the
// kernel supports (UFFDIO_API may be called once per descriptor).
func probe() (uint64, error) {
	fd, err := create()
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	api := apiArgs{Api: APIVersion}
	if err := ioctlPtr(fd, ioctlAPI, &api); err != nil {
		return 0, fmt.Errorf("%w: userfaultfd API handshake: %v", ErrNotSupported, err)
	}
	return api.Features, nil
}

// create returns a new non-blocking userfaultfd, from userfaultfd(2) or,
// when that is refused, from /dev/userfaultfd.
func create() (int, error) {
	const flags = unix.O_CLOEXEC | unix.O_NONBLOCK
	r, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, flags, 0, 0)
	if errno == 0 {
		return int(r), nil
	}
	if errno == unix.ENOSYS {
		return -1, fmt.Errorf("%w: this kernel has no userfaultfd(2) (CONFIG_USERFAULTFD)", ErrNotSupported)
	}
	if errno != unix.EPERM {
		return -1, fmt.Errorf("userfaultfd(2): %w", errno)
	}
	dev, err := unix.Open("/dev/userfaultfd", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, permissionError(err)
	}
	defer unix.Close(dev)
	fd, err := ioctl(dev, ioctlNew, flags)
	if err != nil {
		return -1, permissionError(fmt.Errorf("USERFAULTFD_IOC_NEW: %w", err))
	}
	return int(fd), nil
}

// permissionError is the one error a destination shows when it may not
// use userfaultfd: what was refused, and the three ways to allow it.
func permissionError(dev error) error {
	sysctl := "unknown"
	if b, err := os.ReadFile("/proc/sys/vm/unprivileged_userfaultfd"); err == nil {
		sysctl = strings.TrimSpace(string(b))
	}
	return fmt.Errorf("%w: userfaultfd(2) was refused (EPERM; vm.unprivileged_userfaultfd=%s, and this process "+
		"lacks CAP_SYS_PTRACE) and /dev/userfaultfd could not be used (%v); post-copy needs a userfaultfd that "+
		"sees kernel faults: run the destination as root or with CAP_SYS_PTRACE, or set "+
		"`sysctl vm.unprivileged_userfaultfd=1`, or give this user read-write access to /dev/userfaultfd",
		ErrPermission, sysctl, dev)
}

// Features returns the features enabled by the handshake.
func (u *FD) Features() uint64 { return u.features }

// Register registers [addr, addr+length) (page-aligned, a whole mapping
// or part of one) for the faults in mode (ModeMissing|ModeMinor) and
// checks that the kernel allows the ioctls that resolve them.
func (u *FD) Register(addr, length uintptr, mode uint64) error {
	reg := registerArgs{Range: rangeArgs{Start: uint64(addr), Len: uint64(length)}, Mode: mode}
	if err := ioctlPtr(u.fd, ioctlRegister, &reg); err != nil {
		return fmt.Errorf("userfaultfd register %#x+%#x mode %#x: %w", addr, length, mode, err)
	}
	need := uint64(1) << ioctlBitWake
	if mode&ModeMissing != 0 {
		need |= 1<<ioctlBitCopy | 1<<ioctlBitZeropage
	}
	if mode&ModeMinor != 0 {
		need |= 1 << ioctlBitContinue
	}
	if missing := need &^ reg.Ioctls; missing != 0 {
		_ = u.Unregister(addr, length)
		return fmt.Errorf("%w: range %#x+%#x lacks resolving ioctls %#x (has %#x): is it shared memory?",
			ErrNotSupported, addr, length, missing, reg.Ioctls)
	}
	return nil
}

// Unregister undoes Register; threads still waiting are woken and retry
// their access without userfaultfd.
func (u *FD) Unregister(addr, length uintptr) error {
	r := rangeArgs{Start: uint64(addr), Len: uint64(length)}
	if err := ioctlPtr(u.fd, ioctlUnregister, &r); err != nil {
		return fmt.Errorf("userfaultfd unregister %#x+%#x: %w", addr, length, err)
	}
	return nil
}

// Interrupt makes a Wait in progress, and every later one, return
// ErrStopped. It may be called from any goroutine, more than once, even
// after Close (then it does nothing).
func (u *FD) Interrupt() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.closed {
		u.stopped.Store(true)
		one := [8]byte{1}
		_, _ = unix.Write(u.stop, one[:])
		_ = u.file.SetReadDeadline(time.Unix(1, 0)) // ends a Wait parked in the poller
	}
}

// Close releases the descriptor; registered ranges are unregistered and
// waiting threads woken by the kernel.
func (u *FD) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil
	}
	u.closed = true
	return errors.Join(u.file.Close(), unix.Close(u.stop))
}

// Wait blocks until an event can be read (nil), Interrupt was called
// (ErrStopped) or timeout passed (ErrTimeout; a negative timeout waits
// forever).
func (u *FD) Wait(timeout time.Duration) error {
	if timeout < 0 && u.rc != nil {
		return u.waitPoller()
	}
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	fds := []unix.PollFd{{Fd: int32(u.fd), Events: unix.POLLIN}, {Fd: int32(u.stop), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("userfaultfd poll: %w", err)
		}
		switch {
		case fds[1].Revents != 0:
			return ErrStopped
		case fds[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0:
			return fmt.Errorf("userfaultfd poll: revents %#x", fds[0].Revents)
		case n == 0:
			return ErrTimeout
		}
		return nil
	}
}

// waitPoller is Wait without a timeout, parked in Go's network poller.
// It does not trust the poller alone: every pollerRecheck it looks at
// the descriptor itself (poll(2), no wait), so a wake-up the poller
// missed costs at most that long, never a guest. The poller does miss
// some on userfaultfd: a TestEmbedPostcopyCut round hung for 13 minutes
// with the loop parked here and two threads waiting on faults, and with
// the recheck 150 cut rounds found the descriptor readable and unreported
// 8 times (MissedWakeups; why epoll loses them was not found).
func (u *FD) waitPoller() error {
	for {
		if u.stopped.Load() {
			return ErrStopped
		}
		u.perr = nil
		if err := u.file.SetReadDeadline(time.Now().Add(pollerRecheck)); err != nil {
			return fmt.Errorf("userfaultfd wait: %w", err)
		}
		err := u.rc.Read(u.ready)
		switch {
		case u.stopped.Load():
			return ErrStopped
		case errors.Is(err, os.ErrDeadlineExceeded):
			if u.ready(0) { // readable, and the poller did not say so
				missedWakeups.Add(1)
				return u.perr
			}
			continue
		case err != nil:
			return fmt.Errorf("userfaultfd wait: %w", err)
		}
		return u.perr
	}
}

// pollerRecheck bounds how long waitPoller trusts the poller.
const pollerRecheck = 20 * time.Millisecond

var missedWakeups atomic.Int64

// MissedWakeups counts the waits in which the descriptor was readable
// when the poller had not woken the waiter by pollerRecheck.
func MissedWakeups() int64 { return missedWakeups.Load() }
