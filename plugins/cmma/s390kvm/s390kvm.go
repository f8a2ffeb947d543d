package s390kvm

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferryvm/ferry/framework/hint"
)

// KVM ABI (include/uapi/linux/kvm.h, arch/s390/include/uapi/asm/kvm.h),
// in the generic ioctl encoding s390 uses.
const (
	kvmS390GetCMMABits = 0xc020aeb8 // _IOWR(KVMIO, 0xb8, struct kvm_s390_cmma_log)
	kvmS390SetCMMABits = 0x4020aeb9 // _IOW(KVMIO, 0xb9, struct kvm_s390_cmma_log)
	kvmSetDeviceAttr   = 0x4018aee1 // _IOW(KVMIO, 0xe1, struct kvm_device_attr)
	kvmGetDeviceAttr   = 0x4018aee2 // _IOW(KVMIO, 0xe2, struct kvm_device_attr)

	kvmS390VMMigration = 4 // KVM_S390_VM_MIGRATION attribute group
	migrationStop      = 0 // KVM_S390_VM_MIGRATION_STOP
	migrationStart     = 1 // KVM_S390_VM_MIGRATION_START
	migrationStatus    = 2 // KVM_S390_VM_MIGRATION_STATUS (u64 at addr)

	cmmaPeek = 1 << 0 // KVM_S390_CMMA_PEEK

	// MaxValues is KVM_S390_CMMA_SIZE_MAX (= KVM_S390_SKEYS_MAX): the
	// most values one call returns or sets.
	MaxValues = 1 << 20
)

// cmmaLog is struct kvm_s390_cmma_log (32 bytes): remaining for GET, mask
// for SET share the third word.
type cmmaLog struct {
	startGFN  uint64
	count     uint32
	flags     uint32
	remaining uint64 // or mask
	values    *byte  // the buffer; a Go pointer, so moving stacks update it
}

// deviceAttr is struct kvm_device_attr (24 bytes).
type deviceAttr struct {
	//lint:ignore U1000 the kernel's layout: zero, never read
	flags uint32
	group uint32
	attr  uint64
	addr  *uint64 // the only attribute with data here is a u64
}

// ErrNotS390 is what every call returns off linux/s390x.
var ErrNotS390 = fmt.Errorf("CMMA is s390-only: not supported on this architecture: %w", hint.ErrNotSupported)

// VM is the CMMA interface of one KVM VM (its VM file descriptor, which
// the VMM owns).
type VM struct{ fd int }

// New returns the CMMA interface of the KVM VM vmFD.
func New(vmFD int) *VM { return &VM{fd: vmFD} }

// StartMigration enters migration mode: every CMMA value is marked dirty
// and ESSA is intercepted so changes are tracked. KVM refuses it (EINVAL)
// unless dirty logging is on for every memslot; turning dirty logging
// off on any memslot ends migration mode.
func (v *VM) StartMigration() error {
	return v.setAttr(migrationStart)
}

// StopMigration leaves migration mode.
func (v *VM) StopMigration() error {
	return v.setAttr(migrationStop)
}

// MigrationMode reports whether the VM is in migration mode.
func (v *VM) MigrationMode() (bool, error) {
	var mode uint64
	if err := getMigrationStatus(v.fd, &mode); err != nil {
		return false, fmt.Errorf("KVM_GET_DEVICE_ATTR(MIGRATION_STATUS): %w", err)
	}
	return mode != 0, nil
}

func (v *VM) setAttr(attr uint64) error {
	if err := setDeviceAttr(v.fd, &deviceAttr{group: kvmS390VMMigration, attr: attr}); err != nil {
		return fmt.Errorf("KVM_SET_DEVICE_ATTR(MIGRATION %d): %w", attr, err)
	}
	return nil
}

// Peek reads the values of the frames from gfn on into buf (at most
// MaxValues) without side effects, in or out of migration mode. It
// returns how many it read: fewer than len(buf) at the end of a memslot.
// KVM fails with EFAULT when gfn is in no memslot and ENXIO when CMMA is
// not enabled; a guest that never used CMMA gives 0 values.
func (v *VM) Peek(gfn uint64, buf []byte) (int, error) {
	l := cmmaLog{startGFN: gfn, count: uint32(min(len(buf), MaxValues)), flags: cmmaPeek}
	if err := getCMMA(v.fd, &l, buf); err != nil {
		return 0, fmt.Errorf("KVM_S390_GET_CMMA_BITS(peek, %#x): %w", gfn, err)
	}
	return int(min(l.count, uint32(len(buf)))), nil
}

// Dirty is the migration-mode walk: the values from the first frame at or
// after gfn whose value changed since it was last returned (wrapping
// around to the lowest frame), up to a run of 16 unchanged ones, into buf.
// It returns that first frame, the number of values and how many changed
// values remain. The returned values are clean afterwards: they are the
// VMM's to send with the VM state. EINVAL: not in migration mode.
func (v *VM) Dirty(gfn uint64, buf []byte) (first uint64, n int, remaining uint64, err error) {
	l := cmmaLog{startGFN: gfn, count: uint32(min(len(buf), MaxValues))}
	if err := getCMMA(v.fd, &l, buf); err != nil {
		return 0, 0, 0, fmt.Errorf("KVM_S390_GET_CMMA_BITS(%#x): %w", gfn, err)
	}
	return l.startGFN, int(min(l.count, uint32(len(buf)))), l.remaining, nil
}

// Set writes values on the destination (KVM_S390_SET_CMMA_BITS), for the
// frames from gfn on; mask selects the PGSTE bits (QEMU passes ^0: KVM
// keeps only the usage and no-DAT bits).
func (v *VM) Set(gfn uint64, values []byte, mask uint64) error {
	for len(values) > 0 {
		n := min(len(values), MaxValues)
		l := cmmaLog{startGFN: gfn, count: uint32(n), remaining: mask}
		if err := setCMMA(v.fd, &l, values[:n]); err != nil {
			return fmt.Errorf("KVM_S390_SET_CMMA_BITS(%#x+%d): %w", gfn, n, err)
		}
		values, gfn = values[n:], gfn+uint64(n)
	}
	return nil
}

// CMMABits has hint.Host's CMMABits signature, for the VMM's host
// capabilities: it peeks count values (at most MaxValues) from startGFN.
func (v *VM) CMMABits(ctx context.Context, startGFN uint64, count int) (uint64, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	if count <= 0 {
		return startGFN, nil, nil
	}
	buf := make([]byte, min(count, MaxValues))
	n, err := v.Peek(startGFN, buf)
	if errors.Is(err, ErrNotS390) {
		return 0, nil, ErrNotS390
	}
	if err != nil {
		return 0, nil, err
	}
	return startGFN, buf[:n], nil
}
