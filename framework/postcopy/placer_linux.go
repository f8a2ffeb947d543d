package postcopy

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/internal/uffd"
)

// Placer carries out Actions on real guest RAM through a userfaultfd.
// It never reads or writes guest RAM itself: the kernel places pages.
type Placer struct {
	FD  *uffd.FD
	Map Mapping
	// Requester asks the source for pages; it must not block (see Actions).
	Requester func(first, count uint64) error
}

// Available reports whether this process may serve post-copy faults:
// a userfaultfd that traps kernel faults, with MISSING and MINOR on
// shared memory. The error (uffd.ErrPermission, uffd.ErrNotSupported)
// says what to change; a destination calls it before a migration starts,
// so a post-copy job fails at once instead of after the switch. Code
// outside framework/ cannot import framework/internal/uffd; this is its
// way in.
func Available() error { return uffd.Available() }

// Register prepares m for the fault service: it drops the guest
// mapping's page-table entries (the page cache stays), so that every
// access to a page the service has not placed faults, then registers
// every region for MISSING and MINOR faults. Call it before any thread
// may touch guest RAM after the switch.
func Register(fd *uffd.FD, m Mapping) error {
	for i, r := range m {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.Host, uintptr(r.Size), unix.MADV_DONTNEED); errno != 0 {
			return fmt.Errorf("region %d: madvise(DONTNEED): %w", i, errno)
		}
		if err := fd.Register(r.Host, uintptr(r.Size), uffd.ModeMissing|uffd.ModeMinor); err != nil {
			return fmt.Errorf("region %d: %w", i, err)
		}
	}
	return nil
}

// Unregister ends userfaultfd on m (after Service.Settle).
func Unregister(fd *uffd.FD, m Mapping) error {
	var errs []error
	for _, r := range m {
		errs = append(errs, fd.Unregister(r.Host, uintptr(r.Size)))
	}
	return errors.Join(errs...)
}

// Populate makes [addr, addr+length) of the guest mapping m safe for the
// calling goroutine to touch in user mode while post-copy runs: pages the
// service has placed and mapped need nothing (until Settle: placed);
// otherwise the thread faults them in inside a syscall (uffd.Populate)
// and waits there for the service. A
// device thread calls it before it reads or writes guest RAM with copy,
// bytes functions or any other code Go cannot preempt: blocked on a fault
// in such code, it would hold up the next garbage collection and, with
// it, the fault loop. vCPUs need nothing: KVM faults inside KVM_RUN.
func (s *Service) Populate(m Mapping, addr uintptr, length uint64, write bool) error {
	first, ok1 := m.Page(uint64(addr))
	last, ok2 := m.Page(uint64(addr) + length - 1)
	if length == 0 || (ok1 && ok2 && s.placed(first, last-first+1)) {
		return nil
	}
	return uffd.Populate(addr, uintptr(length), write)
}

// Request implements Actions.Request.
func (p *Placer) Request(first, count uint64) error { return p.Requester(first, count) }

// Continue implements Actions.Continue. A landed page the VMM punched
// out of the memfd since (its guest inflated the balloon over it, or
// reported it free) is a hole, which CONTINUE refuses (EFAULT): then the
// run is placed page by page as Wake places it, the hole as a zero page,
// what the guest gave it away for.
func (p *Placer) Continue(first, count uint64) error {
	err := p.Map.each(first, count, func(r Region, off, n uint64) error {
		return p.FD.Continue(r.Host+uintptr(off), uintptr(n))
	})
	if errors.Is(err, unix.EFAULT) {
		return p.Wake(first, count)
	}
	return err
}

// Wake implements Actions.Wake. Usually the fault raced with the
// placement and the page is mapped: CONTINUE finds it present and the
// waiters are woken. If the VMM dropped the page-table entry since
// (MADV_DONTNEED) the page is mapped again from the memfd, and if the
// memfd page was punched out it becomes a zero page: what the kernel
// would do without userfaultfd, and never a fault that repeats forever.
func (p *Placer) Wake(first, count uint64) error {
	return p.Map.each(first, count, func(r Region, off, n uint64) error {
		for o := off; o < off+n; o += PageSize {
			addr := r.Host + uintptr(o)
			err := p.FD.Continue(addr, PageSize)
			if errors.Is(err, unix.EFAULT) { // not in the memfd: a hole
				err = p.FD.Zeropage(addr, PageSize)
			}
			if errors.Is(err, uffd.ErrExist) {
				err = p.FD.Wake(addr, PageSize)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Zero implements Actions.Zero, page by page: a page whose memfd still
// holds an older copy (ZEROPAGE finds it present) is discarded first, so
// the guest never sees that copy.
func (p *Placer) Zero(first, count uint64) error {
	return p.Map.each(first, count, func(r Region, off, n uint64) error {
		for o := off; o < off+n; o += PageSize {
			err := p.FD.Zeropage(r.Host+uintptr(o), PageSize)
			if errors.Is(err, uffd.ErrExist) {
				if err = punch(r, o, PageSize); err == nil {
					err = p.FD.Zeropage(r.Host+uintptr(o), PageSize)
				}
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Discard implements Actions.Discard: it punches the pages out of the
// memfd (none of them is mapped in the guest).
func (p *Placer) Discard(first, count uint64) error {
	return p.Map.each(first, count, func(r Region, off, n uint64) error {
		return punch(r, off, n)
	})
}

func punch(r Region, off, n uint64) error {
	err := unix.Fallocate(r.Fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, r.Offset+int64(off), int64(n))
	if err != nil {
		return fmt.Errorf("discard %#x+%#x of the memfd: %w", r.Offset+int64(off), n, err)
	}
	return nil
}
