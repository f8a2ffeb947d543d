package vmm

import (
	"context"
	"fmt"

	"github.com/ferryvm/ferry/vmm/arch/x86"
	"github.com/ferryvm/ferry/vmm/devices/balloon"
	"github.com/ferryvm/ferry/vmm/devices/uart"
	"github.com/ferryvm/ferry/vmm/kvm"
	"github.com/ferryvm/ferry/vmm/state"
	"github.com/ferryvm/ferry/vmm/vcpu"
	"github.com/ferryvm/ferry/vmm/virtio"
)

// savedVM is a decoded state blob, fully checked before any of it is
// applied.
type savedVM struct {
	machine   machineState
	vcpus     []vcpu.State // by index
	pit       kvm.PITState2
	clock     kvm.ClockData
	chips     []kvm.IRQChip // by KVM chip id
	uart      uart.State
	transport *virtio.TransportState // nil without a balloon
	balloon   *balloon.State
}

// parseState decodes and checks a blob without touching KVM: every section
// present exactly once (vCPUs 0..n-1, the three interrupt controllers), no
// section the machine does not call for.
func parseState(blob []byte) (*savedVM, error) {
	secs, err := state.Decode(blob)
	if err != nil {
		return nil, err
	}
	if len(secs) == 0 || secs[0].Type != state.SecMachine || secs[0].ID != 0 {
		return nil, fmt.Errorf("%w: the first section is not the machine", state.ErrBadState)
	}
	s := &savedVM{}
	if err := s.machine.unmarshal(secs[0].Data); err != nil {
		return nil, err
	}
	s.vcpus = make([]vcpu.State, s.machine.CPUs)
	s.chips = make([]kvm.IRQChip, len(irqChips))
	seen := map[[2]uint32]bool{}
	for _, sec := range secs[1:] {
		key := [2]uint32{uint32(sec.Type), sec.ID}
		if seen[key] {
			return nil, fmt.Errorf("%w: %s section %d appears twice", state.ErrBadState, sec.Type, sec.ID)
		}
		seen[key] = true
		if err := s.section(sec); err != nil {
			return nil, err
		}
	}
	type want struct {
		t state.SectionType
		n int
	}
	need := []want{{state.SecVCPU, int(s.machine.CPUs)}, {state.SecPIT, 1}, {state.SecClock, 1},
		{state.SecIRQChip, len(irqChips)}, {state.SecUART, 1}}
	if s.machine.Balloon {
		need = append(need, want{state.SecVirtioMMIO, 1}, want{state.SecBalloon, 1})
	}
	for _, n := range need {
		for id := 0; id < n.n; id++ {
			if !seen[[2]uint32{uint32(n.t), uint32(id)}] {
				return nil, fmt.Errorf("%w: no %s section %d", state.ErrBadState, n.t, id)
			}
		}
	}
	return s, nil
}

// section decodes one section into s, rejecting ids out of range.
func (s *savedVM) section(sec state.Section) error {
	outOf := func(n int) error {
		if int64(sec.ID) >= int64(n) {
			return fmt.Errorf("%w: %s section %d, only %d expected", state.ErrBadState, sec.Type, sec.ID, n)
		}
		return nil
	}
	structSection := func(v any) error {
		r := state.NewReader(sec.Data, sec.Type.String())
		r.Struct(v)
		return r.Close()
	}
	balloonN := 0
	if s.machine.Balloon {
		balloonN = 1
	}
	switch sec.Type {
	case state.SecVCPU:
		if err := outOf(len(s.vcpus)); err != nil {
			return err
		}
		return s.vcpus[sec.ID].UnmarshalBinary(sec.Data)
	case state.SecPIT:
		if err := outOf(1); err != nil {
			return err
		}
		return structSection(&s.pit)
	case state.SecClock:
		if err := outOf(1); err != nil {
			return err
		}
		return structSection(&s.clock)
	case state.SecIRQChip:
		if err := outOf(len(s.chips)); err != nil {
			return err
		}
		if err := structSection(&s.chips[sec.ID]); err != nil {
			return err
		}
		if s.chips[sec.ID].Id != sec.ID {
			return fmt.Errorf("%w: irqchip section %d holds chip %d", state.ErrBadState, sec.ID, s.chips[sec.ID].Id)
		}
		return nil
	case state.SecUART:
		if err := outOf(1); err != nil {
			return err
		}
		return s.uart.UnmarshalBinary(sec.Data)
	case state.SecVirtioMMIO:
		if err := outOf(balloonN); err != nil {
			return err
		}
		s.transport = &virtio.TransportState{}
		return s.transport.UnmarshalBinary(sec.Data)
	case state.SecBalloon:
		if err := outOf(balloonN); err != nil {
			return err
		}
		s.balloon = &balloon.State{}
		return s.balloon.UnmarshalBinary(sec.Data)
	}
	return fmt.Errorf("%w: unexpected %s section", state.ErrBadState, sec.Type)
}

// LoadState restores a blob made by SaveState into an incoming VM whose
// guest RAM already holds the source's memory; Resume then runs the guest
// on. It implements framework.Target.LoadState.
//
// The whole blob is decoded and checked (magic, version, CRC, every
// section, the machine's shape against this VM) before anything is
// applied. Then, in this order (vcpu.RestoreState gives the reasons for
// the vCPU's own order):
//
//  1. each vCPU on its own thread (vcpu.RestoreState: TSC rate, CPUID, MP
//     state, registers, XSAVE, XCRs, debug registers, LAPIC, MSRs, events);
//  2. the VM-wide in-kernel devices after the vCPUs, as Firecracker does:
//     PIT, kvmclock, then the PICs and the IOAPIC;
//  3. the devices: UART, virtio-mmio transport (re-activating the balloon
//     with the restored queues), balloon; device interrupts pending at
//     save time are raised again on the restored interrupt controllers;
//  4. a balloon hint session still open is ended with DONE, so the guest
//     takes back blocks it hinted to the source (a guest holds hinted
//     blocks until the device says DONE: vmm/devices/balloon/session.go).
//
// kvmclock is set to the saved value (no KVM_CLOCK_REALTIME), as the TSC
// is: the guest's clocks continue from the moment of the save, and the
// time the VM spent in transit is not seen by it.
//
// Every wait in it honours ctx: for the run lock (runlock.go), for the
// lock that serialises saves and loads (lockState), for each vCPU to take
// its restore (vcpu.VCPU.Do) and for the balloon's lock, the transport's
// activation of the device included (restoreDevices); when ctx ends
// first it fails with ctx's error and lets the run lock go. What it
// cannot cut short: a vCPU's restore once its thread began it (KVM
// ioctls, which Do waits for) and the in-kernel devices' ioctls.
//
// A failed LoadState leaves the VM incoming but partly loaded: discard it
// (the source still has the guest). A migration loads through
// migrationVM; LoadState itself is refused while a migration owns the VM
// (runlock.go).
func (v *VM) LoadState(ctx context.Context, blob []byte) error {
	return v.outside(ctx, "state-load", func(ctx context.Context) error { return v.loadState(ctx, blob) })
}

// loadState does LoadState's work; the caller holds the run lock.
func (v *VM) loadState(ctx context.Context, blob []byte) error {
	lock, err := v.lockState(ctx, "load state")
	if err != nil {
		return err
	}
	defer lock.Unlock()
	v.mu.Lock()
	st, cpus := v.state, v.cpus
	v.mu.Unlock()
	if st != StateIncoming {
		return fmt.Errorf("load state: the VM is %s; only an incoming VM (-incoming) takes a state", st)
	}
	s, err := parseState(blob)
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	if err := s.machine.compatible(v.machine()); err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	if len(cpus) != len(s.vcpus) {
		return fmt.Errorf("load state: %d vCPUs are ready, the state has %d", len(cpus), len(s.vcpus))
	}
	xsave := v.kvm.XsaveSize2()
	for i, c := range cpus {
		if err := c.Do(ctx, func(k *kvm.VCPU) error {
			if err := vcpu.RestoreState(k, s.vcpus[i], xsave); err != nil {
				return err
			}
			v.checkTSC(k, s.vcpus[i])
			return nil
		}); err != nil {
			return fmt.Errorf("load state of vCPU %d: %w", i, err)
		}
	}
	if err := v.restoreKVM(s); err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	if err := v.restoreDevices(ctx, s); err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	v.setStateIf(StateIncoming, StatePaused)
	return nil
}

// checkTSC reads back the TSC a vCPU restore wrote and warns when KVM did
// not take it: PVM ignores TSC writes and gives the guest the host's TSC,
// so a restored guest's TSC moves on by the time in transit on the same
// host, and by the hosts' TSC difference between hosts. kvm_amd under
// QEMU's TCG (its kernel marks the TSC unstable) was seen to jump too,
// by 157 s (vmm/e2e/tcg/README.md); why is not known.
func (v *VM) checkTSC(k *kvm.VCPU, s vcpu.State) {
	var saved uint64
	for _, m := range s.MSRs {
		if m.Index == x86.MSRTSC {
			saved = m.Data
		}
	}
	got, err := k.GetMSRs([]uint32{x86.MSRTSC})
	if err != nil || len(got) != 1 || s.TSCKHz == 0 {
		return
	}
	skew := int64(got[0].Data - saved)
	ms := skew / int64(s.TSCKHz)
	if ms > 1000 || ms < -1000 {
		v.log.Warn("KVM did not take the saved TSC (PVM keeps the guest's TSC at the host's; seen too under an emulator, whose kernel marks the TSC unstable): the guest's TSC jumps",
			"vcpu", k.ID(), "jump_ms", ms)
	} else {
		v.log.Debug("TSC restored", "vcpu", k.ID(), "skew_ms", ms)
	}
}

func (v *VM) restoreKVM(s *savedVM) error {
	if err := v.kvm.SetPIT2(s.pit); err != nil {
		return err
	}
	clock := s.clock
	clock.Flags = 0 // continue from the saved value; see LoadState
	if err := v.kvm.SetClock(clock); err != nil {
		return err
	}
	for _, c := range s.chips {
		if err := v.kvm.SetIRQChip(c); err != nil {
			return err
		}
	}
	return nil
}

// restoreDevices restores the UART, and the balloon's transport and
// device. Every wait for the balloon's lock is under ctx
// (devices/balloon/lock.go), the transport's activation of the device
// too (virtio.Transport.Restore): an incoming VM's vCPUs never ran, but
// a host call may hold the lock under a longer deadline of its own, or
// wait with it in a post-copy fault. When ctx ends first the load fails
// with its error, the devices partly restored.
func (v *VM) restoreDevices(ctx context.Context, s *savedVM) error {
	if err := v.uart.Restore(s.uart); err != nil {
		return err
	}
	if v.balloon == nil {
		return nil
	}
	if err := v.balloonTransport.Restore(ctx, *s.transport); err != nil {
		return err
	}
	if err := v.balloon.RestoreContext(ctx, *s.balloon); err != nil {
		return err
	}
	if s.balloon.Hint.State != balloon.Idle {
		sum, err := v.balloon.DoneHintContext(ctx)
		if err != nil {
			return fmt.Errorf("end the restored balloon hint session: %w", err)
		}
		v.log.Info("balloon: hint session ended with DONE after restore", "cmd_id", fmt.Sprintf("%#x", sum.CmdID))
	}
	return nil
}
