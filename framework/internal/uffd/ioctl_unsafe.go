//go:build linux && amd64

package uffd

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl issues an ioctl whose argument is a plain integer.
func ioctl(fd int, req uintptr, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// ioctlPtr issues an ioctl whose argument is a pointer to a uffdio
// structure. The kernel reads and/or writes *arg; it keeps no reference.
func ioctlPtr[T any](fd int, req uintptr, arg *T) error {
	// The pointer is converted inside the syscall expression, so the Go
	// object stays alive and unmoved for the duration of the call.
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(arg)))
	if errno != 0 {
		return errno
	}
	return nil
}

// Addr returns the address of b's first byte: for a mapping made with
// mmap (guest RAM), which the Go runtime never moves. b must not be empty.
func Addr(b []byte) uintptr {
	// mmap'd memory is outside the Go heap: its address is stable.
	return uintptr(unsafe.Pointer(&b[0]))
}

// Copy atomically fills [dst, dst+len(src)) (page-aligned, registered
// MISSING, currently a hole) with src and wakes the threads waiting there.
// src must not lie in a registered range. A page already present fails
// with ErrExist after the pages before it were copied.
func (u *FD) Copy(dst uintptr, src []byte) error {
	for done := uintptr(0); done < uintptr(len(src)); {
		c := copyArgs{Dst: uint64(dst + done), Len: uint64(uintptr(len(src)) - done)}
		// src is a Go slice or a mapping; it stays reachable (and, being
		// a slice argument, unmoved) until the ioctl returns.
		c.Src = uint64(uintptr(unsafe.Pointer(&src[done])))
		err := ioctlPtr(u.fd, ioctlCopy, &c)
		if c.Copy > 0 {
			done += uintptr(c.Copy)
		}
		if err == nil || err == unix.EAGAIN {
			continue
		}
		return resolveError("copy", dst+done, err)
	}
	return nil
}

// Read reads up to len(buf) pending events without blocking and returns
// how many it stored; 0 means none was pending (call Wait).
func (u *FD) Read(buf []Event) (int, error) {
	raw := &u.raw // allocated with u: the fault loop must not allocate per read
	want := min(len(buf), len(raw))
	if want == 0 {
		return 0, nil
	}
	// rawMsg is the kernel's packed 32-byte uffd_msg (abi_test.go checks
	// the size), so the array's bytes are a sequence of messages.
	bytes := unsafe.Slice((*byte)(unsafe.Pointer(&raw[0])), want*sizeofMsg)
	n, err := unix.Read(u.fd, bytes)
	if err == unix.EAGAIN {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("userfaultfd read: %w", err)
	}
	if n%sizeofMsg != 0 {
		return 0, fmt.Errorf("userfaultfd read: %d bytes is not a whole number of messages", n)
	}
	for i := 0; i < n/sizeofMsg; i++ {
		// pagefaultMsg is uffd_msg with its page-fault union member spelled
		// out; both are 32 bytes (abi_test.go).
		pf := (*pagefaultMsg)(unsafe.Pointer(&raw[i]))
		buf[i] = Event{Kind: pf.Event}
		if pf.Event == EventPagefault {
			buf[i].Flags, buf[i].Address, buf[i].TID = pf.Flags, pf.Address, pf.Ptid
		}
	}
	return n / sizeofMsg, nil
}
