package vcpu_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/vmm/arch/x86"
	"github.com/ferryvm/ferry/vmm/bus"
	"github.com/ferryvm/ferry/vmm/kvm"
	"github.com/ferryvm/ferry/vmm/vcpu"
)

// pausingPort answers INs with 0x40+n and, at the fifth, asks the gate to
// pause while the vCPU is still in user space handling the exit.
type pausingPort struct {
	gate   *vcpu.Gate
	reads  atomic.Int32
	paused chan error
}

func (p *pausingPort) Write(uint64, []byte) {}
func (p *pausingPort) Read(_ uint64, data []byte) {
	n := p.reads.Add(1)
	data[0] = byte(0x40 + n)
	if n == 5 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			p.paused <- p.gate.Pause(ctx)
		}()
		for !p.gate.Paused() {
			time.Sleep(time.Millisecond)
		}
	}
}

// TestPauseCompletesIO pauses a real vCPU in the middle of an IN exit: the
// parked vCPU's registers must already hold the value the device returned
// and RIP must be past the IN, since KVM only completes the access at the
// next KVM_RUN.
func TestPauseCompletesIO(t *testing.T) {
	sys, err := kvm.Open()
	if err != nil {
		t.Skipf("SKIPPED (KVM unavailable): TestPauseCompletesIO did not run: %v", err)
	}
	defer sys.Close()
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
	copy(mem[0x1000:], []byte{
		0x66, 0xba, 0x10, 0x00, // mov dx, 0x10
		0xec,       // 0x1004: in al, dx
		0x43,       // 0x1005: inc ebx
		0xeb, 0xfc, // jmp 0x1004
	})
	if err := vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{Memory_size: 1 << 20, Userspace_addr: hostAddr(mem)}); err != nil {
		t.Fatal(err)
	}
	gate := vcpu.NewGate()
	port := &pausingPort{gate: gate, paused: make(chan error, 1)}
	var pio, mmio bus.Bus
	if err := pio.Register("port", 0x10, 1, port); err != nil {
		t.Fatal(err)
	}
	c, err := vcpu.Start(vm, gate, vcpu.Config{PIO: &pio, MMIO: &mmio, Setup: func(k *kvm.VCPU) error {
		sregs, err := k.Sregs()
		if err != nil {
			return err
		}
		regs, sregs := x86.PVHEntry(0x1000, 0, sregs)
		if err := k.SetSregs(sregs); err != nil {
			return err
		}
		return k.SetRegs(regs)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { gate.Stop(); c.Wait() }()
	if err := <-port.paused; err != nil {
		t.Fatal(err)
	}
	var regs kvm.Regs
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Do(ctx, func(k *kvm.VCPU) (err error) { regs, err = k.Regs(); return err }); err != nil {
		t.Fatal(err)
	}
	n := port.reads.Load()
	if regs.Rip != 0x1005 || regs.Rax&0xff != uint64(0x40+n) || regs.Rbx != uint64(n-1) {
		t.Fatalf("parked after %d INs: rip %#x al %#x rbx %d; want rip 0x1005, al %#x, rbx %d (the last IN completed)",
			n, regs.Rip, regs.Rax&0xff, regs.Rbx, 0x40+n, n-1)
	}
}
