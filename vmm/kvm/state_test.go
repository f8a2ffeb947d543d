package kvm_test

import (
	"runtime"
	"testing"

	"github.com/ferryvm/ferry/vmm/kvm"
)

// TestStateIoctls reads every piece of migration state from a fresh VM
// and vCPU and writes it back unchanged: the ioctls and struct layouts
// agree with the kernel, and this host's KVM accepts its own output.
func TestStateIoctls(t *testing.T) {
	sys, err := kvm.Open()
	if err != nil {
		t.Skipf("SKIPPED (KVM unavailable): TestStateIoctls did not run: %v", err)
	}
	defer sys.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := vm.CreateIRQChip(); err != nil {
		t.Fatal(err)
	}
	if err := vm.CreatePIT2(kvm.PITSpeakerDummy); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint32{kvm.IRQChipPICMaster, kvm.IRQChipPICSlave, kvm.IRQChipIOAPIC} {
		c, err := vm.IRQChip(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := vm.SetIRQChip(c); err != nil {
			t.Fatal(err)
		}
	}
	pit, err := vm.PIT2()
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.SetPIT2(pit); err != nil {
		t.Fatal(err)
	}
	clk, err := vm.Clock()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kvmclock %d ns flags %#x", clk.Clock, clk.Flags)
	clk.Flags = 0
	if err := vm.SetClock(clk); err != nil {
		t.Fatal(err)
	}

	cpu, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	supported, err := sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	if err := cpu.SetCPUID2(supported); err != nil {
		t.Fatal(err)
	}
	got, err := cpu.CPUID2()
	if err != nil || len(got) != len(supported) {
		t.Fatalf("KVM_GET_CPUID2: %d entries (set %d), %v", len(got), len(supported), err)
	}
	size := vm.XsaveSize2()
	t.Logf("KVM_CAP_XSAVE2 size %d", size)
	if size > 0 {
		x, err := cpu.Xsave2(size)
		if err != nil {
			t.Fatal(err)
		}
		if err := cpu.SetXsaveBytes(x, size); err != nil {
			t.Fatal(err)
		}
	}
	xcrs, err := cpu.XCRs()
	t.Logf("XCRs %d err %v", xcrs.Nr_xcrs, err)
	if err == nil {
		if err := cpu.SetXCRs(xcrs); err != nil {
			t.Error(err)
		}
	}
	dr, err := cpu.DebugRegs()
	if err == nil {
		err = cpu.SetDebugRegs(dr)
	}
	t.Logf("debug regs: %v", err)
	l, err := cpu.LAPIC()
	if err != nil {
		t.Fatal(err)
	}
	if err := cpu.SetLAPIC(l); err != nil {
		t.Fatal(err)
	}
	ev, err := cpu.Events()
	if err != nil {
		t.Fatal(err)
	}
	if err := cpu.SetEvents(ev); err != nil {
		t.Fatal(err)
	}
	mp, err := cpu.MPState()
	if err != nil {
		t.Fatal(err)
	}
	if err := cpu.SetMPState(mp); err != nil {
		t.Fatal(err)
	}
	list, err := sys.MSRIndexList()
	if err != nil {
		t.Fatal(err)
	}
	var readable []kvm.MSREntry
	for len(list) > 0 {
		n := min(len(list), kvm.MaxMSREntries)
		e, err := cpu.GetMSRs(list[:n])
		if err != nil {
			t.Fatal(err)
		}
		readable = append(readable, e...)
		if len(e) < n {
			t.Logf("MSR %#x not readable", list[len(e)])
			list = list[len(e)+1:]
		} else {
			list = list[n:]
		}
	}
	t.Logf("%d readable MSRs", len(readable))
	for _, e := range readable {
		if err := cpu.SetMSRs([]kvm.MSREntry{e}); err != nil {
			t.Logf("MSR %#x = %#x not writable back: %v", e.Index, e.Data, err)
		}
	}
	if khz, err := cpu.TSCKHz(); err == nil {
		t.Logf("SET_TSC_KHZ %d: %v", khz, cpu.SetTSCKHz(khz))
	}
	t.Logf("KVMCLOCK_CTRL: %v", cpu.KVMClockCtrl())
}
