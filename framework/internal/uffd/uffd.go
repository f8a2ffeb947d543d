package uffd

import "errors"

// Error classes (errors.Is).
var (
	// ErrPermission: this process may not create a userfaultfd that traps
	// kernel faults. The wrapping error says what to change.
	ErrPermission = errors.New("userfaultfd not permitted")
	// ErrNotSupported: no userfaultfd in this kernel or build, or a
	// feature Ferry needs is missing.
	ErrNotSupported = errors.New("userfaultfd not supported")
	// ErrExist: a resolving ioctl found the page already mapped (COPY,
	// ZEROPAGE) or, for CONTINUE, already mapped in this mapping. The
	// kernel woke nobody; call Wake if a thread may be waiting.
	ErrExist = errors.New("page already present")
	// ErrStopped: Wait was interrupted by Interrupt or Close.
	ErrStopped = errors.New("userfaultfd wait interrupted")
	// ErrTimeout: Wait's timeout passed with no event.
	ErrTimeout = errors.New("userfaultfd wait timed out")
)

// Event is one message read from a userfaultfd. Only page faults are
// decoded; other events keep their Kind.
type Event struct {
	Kind    uint8  // EventPagefault, ...
	Flags   uint64 // FlagWrite, FlagMinor, ... (page faults)
	Address uint64 // faulting address, page-aligned (FEATURE_EXACT_ADDRESS is never asked for)
	TID     uint32 // faulting thread, with FeatureThreadID
}
