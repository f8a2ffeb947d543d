// Package uffd is a thin, typed layer over Linux userfaultfd(2) for the
// destination of a post-copy migration (framework/postcopy builds the
// fault service on it). It opens a descriptor that traps kernel faults as
// well as user ones (KVM's accesses to guest RAM are kernel faults, so
// UFFD_USER_MODE_ONLY is never used), checks the features Ferry needs
// (MISSING and MINOR faults on shared memory), registers ranges and
// resolves faults:
//
//	             guest mapping (registered MISSING|MINOR)     alias mapping (not registered)
//	             ┌───────────────────────────────────────┐    ┌───────────────────────────┐
//	page state:  │ hole      │ in page cache, no PTE     │    │ transport writes here     │
//	fault:       │ MISSING   │ MINOR                     │    │ (never faults)            │
//	resolve:     │ Copy/Zero │ Continue (once written    │◄───┤                           │
//	             │           │  completely via the alias)│    │                           │
//	             └───────────────────────────────────────┘    └───────────────────────────┘
//	                both backed by the same memfd (MAP_SHARED)
//
// What the kernel does (6.18, measured; docs/POSTCOPY.md): with MISSING a
// page-cache hole faults; a page written through an unregistered alias
// becomes visible silently unless MINOR is registered too, in which case
// the first access through the guest mapping raises MINOR. Every
// resolving call wakes the threads waiting on its range, except when it
// fails with ErrExist: then call Wake.
//
// Populate faults a range in from inside a syscall (MADV_POPULATE_*):
// Go code that is about to touch registered memory with code the runtime
// cannot preempt (copy, bytes.Equal) waits there instead, so a garbage
// collection never waits on a thread that waits on the fault service.
//
// Permissions: creating a descriptor that sees kernel faults needs root or
// CAP_SYS_PTRACE, or vm.unprivileged_userfaultfd=1, or read-write access
// to /dev/userfaultfd. Open tries userfaultfd(2), then /dev/userfaultfd,
// and otherwise returns one ErrPermission error that says which of these
// to change. Available runs the same check without keeping the descriptor,
// so a destination can fail before a migration starts.
//
// Structures and ioctl numbers are generated from <linux/userfaultfd.h>
// with `go tool cgo -godefs` (types_linux.go, `make godefs`), committed in
// ztypes_linux_amd64.go, and checked by abi_test.go. unsafe appears only
// in ioctl_unsafe.go.
//
// Measured here (TestRoundTrip, kernel 6.18, 2 cores under a load of
// about 16): a fault's round trip as the faulting thread sees it, MISSING
// + COPY p50 23-32 us, MINOR + CONTINUE p50 23-80 us; docs/POSTCOPY.md
// "Destination fault service" has the p99s and the service's figures.
package uffd
