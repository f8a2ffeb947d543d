package kvm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// VCPU is a virtual CPU: its fd and its shared kvm_run page.
//
// Every method except SetImmediateExit must be called from the OS thread
// that created the vCPU. SetImmediateExit may be called from any thread.
type VCPU struct {
	fd  int
	id  int
	run []byte // the kvm_run mapping, RunSize bytes or more
}

// CreateVCPU creates vCPU id (its APIC id) and maps its kvm_run page.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	r, err := ioctl(vm.fd, ioctlCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU %d: %w", id, err)
	}
	fd := int(r)
	if vm.runSize < RunSize {
		unix.Close(fd)
		return nil, fmt.Errorf("kvm_run mapping is %d bytes, want at least %d", vm.runSize, RunSize)
	}
	run, err := unix.Mmap(fd, 0, vm.runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mmap kvm_run of vCPU %d: %w", id, err)
	}
	return &VCPU{fd: fd, id: id, run: run}, nil
}

// ID is the vCPU's index and APIC id.
func (c *VCPU) ID() int { return c.id }

// Close unmaps kvm_run and closes the vCPU fd.
func (c *VCPU) Close() error {
	err := unix.Munmap(c.run)
	return errors.Join(err, unix.Close(c.fd))
}

// ErrInterrupted is returned by Run when a signal or SetImmediateExit made
// KVM_RUN return before the guest exited on its own.
var ErrInterrupted = errors.New("KVM_RUN interrupted")

// Run enters the guest until its next exit and returns the exit reason.
func (c *VCPU) Run() (uint32, error) {
	_, err := ioctl(c.fd, ioctlRun, 0)
	if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
		return ExitIntr, ErrInterrupted
	}
	if err != nil {
		return 0, fmt.Errorf("KVM_RUN: %w", err)
	}
	return c.header().Exit_reason, nil
}

// SetImmediateExit sets kvm_run.immediate_exit: while it is set, KVM_RUN
// returns EINTR at once. A signal to the vCPU thread then reliably kicks it.
func (c *VCPU) SetImmediateExit(on bool) {
	var v uint8
	if on {
		v = 1
	}
	c.setImmediateExit(v)
}

// IO describes a KVM_EXIT_IO: Data holds Size*Count bytes; for an OUT the
// guest's bytes, for an IN the bytes to fill before the next Run.
func (c *VCPU) IO() (port uint16, out bool, size int, data []byte, err error) {
	io := c.runIO()
	size, count := int(io.Size), int(io.Count)
	end := io.Offset + uint64(size*count)
	if size == 0 || io.Offset < RunSize || end > uint64(len(c.run)) {
		return 0, false, 0, nil, fmt.Errorf("KVM_EXIT_IO data %d*%d at %#x outside kvm_run", size, count, io.Offset)
	}
	return io.Port, io.Direction == ExitIOOut, size, c.run[io.Offset:end], nil
}

// MMIO describes a KVM_EXIT_MMIO: for a read, fill data before the next Run.
func (c *VCPU) MMIO() (addr uint64, write bool, data []byte) {
	m := c.runMMIO()
	n := min(int(m.Len), len(m.Data))
	return m.Phys_addr, m.Is_write != 0, m.Data[:n]
}

// InternalError returns KVM_EXIT_INTERNAL_ERROR's suberror and data words.
func (c *VCPU) InternalError() (suberror uint32, data []uint64) {
	ie := c.runInternal()
	n := min(int(ie.Ndata), len(ie.Data))
	return ie.Suberror, append([]uint64(nil), ie.Data[:n]...)
}

// FailEntry returns KVM_EXIT_FAIL_ENTRY's hardware reason.
func (c *VCPU) FailEntry() uint64 { return c.runFailEntry().Entry_failure_reason }

// SystemEvent returns KVM_EXIT_SYSTEM_EVENT's type.
func (c *VCPU) SystemEvent() uint32 { return c.runSystemEvent().Type }
