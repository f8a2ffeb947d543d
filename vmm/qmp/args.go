package qmp

import (
	"fmt"
	"sync"

	"github.com/ferryvm/ferry/vmm/kvm"
)

// KVMTSCKHz is KVM's TSC frequency for a new vCPU (KVM_GET_TSC_KHZ), or 0.
var KVMTSCKHz = sync.OnceValue(func() uint32 {
	sys, err := kvm.Open()
	if err != nil {
		return 0
	}
	defer sys.Close()
	vm, err := sys.CreateVM()
	if err != nil {
		return 0
	}
	defer vm.Close()
	cpu, err := vm.CreateVCPU(0)
	if err != nil {
		return 0
	}
	defer cpu.Close()
	khz, _ := cpu.TSCKHz()
	return khz
})

// TSCArgs makes QEMU publish the TSC frequency in CPUID 0x40000010, which
// it does only with an explicit tsc-frequency (equal to KVM's here: no TSC
// scaling under nested KVM). Without it the test guest calibrates on the
// PIT, which goes wrong under host load (5-10 GHz measured for 2.6 GHz):
// ticks, balloon polls and report periods then stretch by that factor.
// nil if KVM does not say.
func TSCArgs() []string {
	khz := KVMTSCKHz()
	if khz == 0 {
		return nil
	}
	return []string{"-cpu", fmt.Sprintf("qemu64,tsc-frequency=%d", uint64(khz)*1000)}
}

// BalloonArgs are the QEMU arguments for a virtio-balloon on virtio-mmio
// with device properties props and a QMP socket. QEMU 7.2 makes
// virtio-mmio transports legacy (version 1) unless told otherwise; the
// test guest drives version 2 only. The socket path must not contain ','
// or '='.
func BalloonArgs(socket, props string) []string {
	return []string{
		"-global", "virtio-mmio.force-legacy=false",
		"-object", "iothread,id=io1",
		"-device", "virtio-balloon-device,id=balloon0,iothread=io1," + props,
		"-qmp", "unix:" + socket + ",server=on,wait=off",
	}
}
