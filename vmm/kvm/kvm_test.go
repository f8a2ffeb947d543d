package kvm_test

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/vmm/arch/x86"
	"github.com/ferryvm/ferry/vmm/kvm"
)

// TestRunProtectedMode runs a few 32-bit instructions on a real vCPU: a
// port write, an MMIO write and HLT, checking what the exits report.
func TestRunProtectedMode(t *testing.T) {
	sys, err := kvm.Open()
	if err != nil {
		t.Skipf("SKIPPED (KVM unavailable): TestRunProtectedMode did not run: %v", err)
	}
	defer sys.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := vm.SetTSSAddr(0xfffbd000); err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	code := []byte{
		0xb0, 0x42, // mov al, 0x42
		0xe6, 0x10, // out 0x10, al
		0xb8, 0x78, 0x56, 0x34, 0x12, // mov eax, 0x12345678
		0xa3, 0x00, 0x00, 0x00, 0xd0, // mov [0xd0000000], eax
		0xf4, // hlt
	}
	copy(mem[0x1000:], code)
	if err := vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{Slot: 0, Memory_size: 1 << 20,
		Userspace_addr: hostAddr(mem)}); err != nil {
		t.Fatal(err)
	}
	cpu, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	sregs, err := cpu.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	regs, sregs := x86.PVHEntry(0x1000, 0, sregs)
	if err := cpu.SetSregs(sregs); err != nil {
		t.Fatal(err)
	}
	if err := cpu.SetRegs(regs); err != nil {
		t.Fatal(err)
	}

	exit := run(t, cpu)
	port, out, size, data, err := cpu.IO()
	if exit != kvm.ExitIO || err != nil || port != 0x10 || !out || size != 1 || data[0] != 0x42 {
		t.Fatalf("exit %d: port %#x out %v size %d data %v err %v", exit, port, out, size, data, err)
	}
	exit = run(t, cpu)
	addr, write, mdata := cpu.MMIO()
	if exit != kvm.ExitMMIO || addr != 0xd0000000 || !write || len(mdata) != 4 || mdata[0] != 0x78 || mdata[3] != 0x12 {
		t.Fatalf("exit %d: mmio %#x write %v data %x", exit, addr, write, mdata)
	}
	if exit = run(t, cpu); exit != kvm.ExitHLT {
		t.Fatalf("exit %d, want HLT", exit)
	}
	r, err := cpu.Regs()
	if err != nil || r.Rip != 0x1000+uint64(len(code)) {
		t.Errorf("rip after hlt = %#x (%v)", r.Rip, err)
	}
}

func run(t *testing.T, cpu *kvm.VCPU) uint32 {
	t.Helper()
	for i := 0; i < 100; i++ {
		exit, err := cpu.Run()
		if err == kvm.ErrInterrupted {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return exit
	}
	t.Fatal("KVM_RUN interrupted 100 times in a row")
	return 0
}

func TestTSCKHz(t *testing.T) {
	sys, err := kvm.Open()
	if err != nil {
		t.Skipf("SKIPPED (KVM unavailable): TestTSCKHz did not run: %v", err)
	}
	defer sys.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	cpu, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	khz, err := cpu.TSCKHz()
	t.Logf("TSC %d kHz, err %v", khz, err)
	if err != nil || khz < 100_000 {
		t.Errorf("TSC frequency %d kHz (%v)", khz, err)
	}
}
