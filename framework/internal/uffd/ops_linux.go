//go:build linux && amd64

package uffd

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Zeropage atomically maps zero pages at [dst, dst+length) (page-aligned,
// registered MISSING, currently holes) and wakes the threads waiting
// there. A page already present fails with ErrExist.
func (u *FD) Zeropage(dst, length uintptr) error {
	for done := uintptr(0); done < length; {
		z := zeropageArgs{Range: rangeArgs{Start: uint64(dst + done), Len: uint64(length - done)}}
		err := ioctlPtr(u.fd, ioctlZeropage, &z)
		if z.Zeropage > 0 {
			done += uintptr(z.Zeropage)
		}
		if err == nil || err == unix.EAGAIN {
			continue
		}
		return resolveError("zeropage", dst+done, err)
	}
	return nil
}

// Continue maps the pages at [dst, dst+length) (registered MINOR) from
// the page cache, where they must already be (written completely through
// another mapping), and wakes the threads waiting there.
func (u *FD) Continue(dst, length uintptr) error {
	for done := uintptr(0); done < length; {
		c := continueArgs{Range: rangeArgs{Start: uint64(dst + done), Len: uint64(length - done)}}
		err := ioctlPtr(u.fd, ioctlContinue, &c)
		if c.Mapped > 0 {
			done += uintptr(c.Mapped)
		}
		if err == nil || err == unix.EAGAIN {
			continue
		}
		return resolveError("continue", dst+done, err)
	}
	return nil
}

// Wake wakes the threads waiting on faults in [dst, dst+length) without
// placing anything: they retry their access.
func (u *FD) Wake(dst, length uintptr) error {
	r := rangeArgs{Start: uint64(dst), Len: uint64(length)}
	if err := ioctlPtr(u.fd, ioctlWake, &r); err != nil {
		return fmt.Errorf("userfaultfd wake %#x+%#x: %w", dst, length, err)
	}
	return nil
}

// resolveError names the failing call and address; EEXIST becomes ErrExist.
func resolveError(op string, at uintptr, err error) error {
	if err == unix.EEXIST {
		return fmt.Errorf("userfaultfd %s at %#x: %w", op, at, ErrExist)
	}
	return fmt.Errorf("userfaultfd %s at %#x: %w", op, at, err)
}

// Populate faults [addr, addr+length) in from inside a syscall
// (madvise MADV_POPULATE_READ or _WRITE, Linux 5.14): on a registered
// range the calling thread waits for the fault service like any faulting
// thread, but it waits in a syscall, where the Go runtime can stop it for
// a garbage collection. A goroutine blocked on a fault in user mode
// inside non-preemptible code (copy, bytes.Equal: assembly) cannot be
// stopped, and a collection started meanwhile stops the fault loop too:
// the process deadlocks (docs/POSTCOPY.md). Touch guest RAM in user mode
// only after Populate, unless the pages are known to be placed.
func Populate(addr, length uintptr, write bool) error {
	advice := uintptr(unix.MADV_POPULATE_READ)
	if write {
		advice = unix.MADV_POPULATE_WRITE
	}
	for {
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, addr, length, advice)
		switch errno {
		case 0:
			return nil
		case unix.EINTR, unix.EAGAIN:
			continue
		}
		return fmt.Errorf("populate %#x+%#x: %w", addr, length, errno)
	}
}
