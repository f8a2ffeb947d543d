package kvm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// DevicePath is where the KVM device lives.
const DevicePath = "/dev/kvm"

// System is an open /dev/kvm.
type System struct {
	fd int
}

// Open opens /dev/kvm and checks the API version. Its errors say what the
// user can do: a missing device, a permission problem, an old kernel.
func Open() (*System, error) {
	fd, err := unix.Open(DevicePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, fmt.Errorf("%s does not exist: KVM is not available on this host "+
			"(load kvm_intel or kvm_amd, or enable nested virtualization for this VM)", DevicePath)
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		return nil, fmt.Errorf("permission denied opening %s: run as root or join the group that owns it "+
			"(usually: sudo usermod -aG kvm $USER, then log in again)", DevicePath)
	case err != nil:
		return nil, fmt.Errorf("open %s: %w", DevicePath, err)
	}
	s := &System{fd: fd}
	v, err := ioctl(fd, ioctlGetAPIVersion, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("KVM_GET_API_VERSION: %w", err)
	}
	if v != APIVersion {
		s.Close()
		return nil, fmt.Errorf("KVM API version %d, want %d", v, APIVersion)
	}
	return s, nil
}

// Available reports whether /dev/kvm can be opened, and why not.
func Available() error {
	s, err := Open()
	if err != nil {
		return err
	}
	return s.Close()
}

// Close closes /dev/kvm. VMs created from it stay valid.
func (s *System) Close() error { return unix.Close(s.fd) }

// CheckExtension returns KVM_CHECK_EXTENSION's answer for cap (0: absent).
func (s *System) CheckExtension(cap int) int {
	r, err := ioctl(s.fd, ioctlCheckExtension, uintptr(cap))
	if err != nil {
		return 0
	}
	return int(r)
}

// VCPUMmapSize is the size of the kvm_run mapping of every vCPU.
func (s *System) VCPUMmapSize() (int, error) {
	r, err := ioctl(s.fd, ioctlGetVCPUMmapSize, 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	return int(r), nil
}

// SupportedCPUID returns the CPUID leaves KVM can expose to guests.
func (s *System) SupportedCPUID() ([]CPUIDEntry2, error) {
	var c CPUID2
	c.Hdr.Nent = MaxCPUIDEntries
	if _, err := ioctlPtr(s.fd, ioctlGetSupportedCPUID, &c); err != nil {
		return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	return append([]CPUIDEntry2(nil), c.Entries[:c.Hdr.Nent]...), nil
}

// MSRIndexList returns the MSRs KVM saves and restores for a vCPU.
func (s *System) MSRIndexList() ([]uint32, error) {
	var l MSRList
	l.Hdr.Nmsrs = uint32(len(l.Indices))
	if _, err := ioctlPtr(s.fd, ioctlGetMSRIndexList, &l); err != nil {
		return nil, fmt.Errorf("KVM_GET_MSR_INDEX_LIST: %w", err)
	}
	return append([]uint32(nil), l.Indices[:l.Hdr.Nmsrs]...), nil
}

// CreateVM creates a VM with the default machine type.
func (s *System) CreateVM() (*VM, error) {
	r, err := ioctl(s.fd, ioctlCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	mmapSize, err := s.VCPUMmapSize()
	if err != nil {
		unix.Close(int(r))
		return nil, err
	}
	return &VM{fd: int(r), sys: s, runSize: mmapSize}, nil
}
