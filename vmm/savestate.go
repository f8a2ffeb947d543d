package vmm

import (
	"context"
	"fmt"

	"github.com/ferryvm/ferry/vmm/arch/x86"
	"github.com/ferryvm/ferry/vmm/internal/ctxlock"
	"github.com/ferryvm/ferry/vmm/kvm"
	"github.com/ferryvm/ferry/vmm/state"
	"github.com/ferryvm/ferry/vmm/vcpu"
)

// SaveState returns the paused VM's state as a blob (vmm/state): the
// machine's shape, every vCPU, the in-kernel PIT, kvmclock and interrupt
// controllers, the UART, and the virtio-mmio transport and balloon. Guest
// RAM is not in it; it travels separately. A migration saves through
// migrationVM (framework.Source.SaveState); SaveState itself is refused
// while a migration owns the VM and after one handed it over
// (runlock.go): a copy of a VM that runs elsewhere must not be made.
//
// The VM must be paused (Pause) and stay paused until SaveState returns;
// saving changes nothing the guest can see, so the VM may be resumed
// afterwards (a failed migration leaves the source running). Host-side
// balloon calls (balloon target, hint sessions) must not run concurrently:
// their device and transport state are saved one after the other. The
// control socket's take the run lock (balloonChange, and the hand-driven
// hint-* commands), so they do not; what does not take it: a hint
// provider's calls (hintHost), which the engine cancels at its final
// sync without waiting for them, and which a provider may make late; a
// restored session that was not idle gets DONE (restoreDevices), so
// only a late BalloonDone between the two can leave the guest without
// the DONE interrupt.
func (v *VM) SaveState(ctx context.Context) ([]byte, error) {
	var blob []byte
	err := v.outside(ctx, "state-save", func(ctx context.Context) error {
		var err error
		blob, err = v.saveState(ctx)
		return err
	})
	return blob, err
}

// saveState does SaveState's work; the caller holds the run lock.
func (v *VM) saveState(ctx context.Context) ([]byte, error) {
	lock, err := v.lockState(ctx, "save state")
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	v.mu.Lock()
	st, cpus := v.state, v.cpus
	v.mu.Unlock()
	if st != StatePaused || !v.gate.Paused() {
		return nil, fmt.Errorf("save state: the VM is %s: pause it first", st)
	}
	secs := []state.Section{{Type: state.SecMachine, Data: v.machine().marshal()}}
	vsecs, err := v.saveVCPUs(ctx, cpus)
	if err != nil {
		return nil, err
	}
	secs = append(secs, vsecs...)
	ksecs, err := v.saveKVM()
	if err != nil {
		return nil, err
	}
	secs = append(secs, ksecs...)
	dsecs, err := v.saveDevices(ctx)
	if err != nil {
		return nil, err
	}
	secs = append(secs, dsecs...)
	return state.Encode(secs)
}

// lockState takes the lock that serialises saveState and loadState
// (made by its first use), or fails once ctx ended first, naming what
// (a free lock is taken even then). It returns the lock, to Unlock.
// Every caller holds the run lock too, which already serialises them,
// so no caller waits here today; it waits under ctx all the same, so
// that no save or load can wait without a bound.
func (v *VM) lockState(ctx context.Context, what string) (ctxlock.Mutex, error) {
	v.mu.Lock()
	if v.stateMu == nil {
		v.stateMu = ctxlock.New()
	}
	lock := v.stateMu
	v.mu.Unlock()
	if err := lock.LockContext(ctx); err != nil {
		return nil, fmt.Errorf("%s: another state save or load is still running: %w", what, err)
	}
	return lock, nil
}

// migrationMSRs is the MSR list every vCPU saves, computed once.
func (v *VM) migrationMSRs() ([]uint32, error) {
	if v.msrs == nil {
		list, err := v.sys.MSRIndexList()
		if err != nil {
			return nil, err
		}
		v.msrs = x86.MigrationMSRs(list)
	}
	return v.msrs, nil
}

func (v *VM) saveVCPUs(ctx context.Context, cpus []*vcpu.VCPU) ([]state.Section, error) {
	if len(cpus) != v.cfg.CPUs {
		return nil, fmt.Errorf("save state: %d of %d vCPUs are running", len(cpus), v.cfg.CPUs)
	}
	msrs, err := v.migrationMSRs()
	if err != nil {
		return nil, fmt.Errorf("save state: %w", err)
	}
	xsave := v.kvm.XsaveSize2()
	var secs []state.Section
	for _, c := range cpus {
		var s vcpu.State
		err := c.Do(ctx, func(k *kvm.VCPU) error {
			var err error
			s, err = vcpu.SaveState(k, msrs, xsave)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("save state of vCPU %d: %w", c.ID(), err)
		}
		b, err := s.MarshalBinary()
		if err != nil {
			return nil, err
		}
		secs = append(secs, state.Section{Type: state.SecVCPU, ID: uint32(c.ID()), Data: b})
	}
	return secs, nil
}

// irqChips are the in-kernel interrupt controllers, by KVM chip id.
var irqChips = []uint32{kvm.IRQChipPICMaster, kvm.IRQChipPICSlave, kvm.IRQChipIOAPIC}

// saveKVM saves the VM-wide in-kernel devices; VM.LoadState restores
// them after the vCPUs (loadstate.go).
func (v *VM) saveKVM() ([]state.Section, error) {
	pit, err := v.kvm.PIT2()
	if err != nil {
		return nil, fmt.Errorf("save state: %w", err)
	}
	clock, err := v.kvm.Clock()
	if err != nil {
		return nil, fmt.Errorf("save state: %w", err)
	}
	secs := []state.Section{
		{Type: state.SecPIT, Data: structBytes(&pit)},
		{Type: state.SecClock, Data: structBytes(&clock)},
	}
	for _, id := range irqChips {
		c, err := v.kvm.IRQChip(id)
		if err != nil {
			return nil, fmt.Errorf("save state: %w", err)
		}
		secs = append(secs, state.Section{Type: state.SecIRQChip, ID: id, Data: structBytes(&c)})
	}
	return secs, nil
}

func structBytes(v any) []byte {
	var w state.Writer
	w.Struct(v)
	return w.Bytes()
}

// saveDevices saves the UART and, if present, the balloon and its
// transport. The power-off port has no state: once the guest wrote it the
// VM is stopped and cannot be saved. The balloon's lock is waited for
// under ctx (devices/balloon/lock.go): a paused VM's vCPUs are parked,
// outside the device, but a host call may hold it, and a state save
// must not wait for anything without a bound.
func (v *VM) saveDevices(ctx context.Context) ([]state.Section, error) {
	u, err := v.uart.Save().MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("save state: %w", err)
	}
	secs := []state.Section{{Type: state.SecUART, Data: u}}
	if v.balloon == nil {
		return secs, nil
	}
	t, err := v.balloonTransport.Save().MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("save state: %w", err)
	}
	bs, err := v.balloon.SaveContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("save state: %w", err)
	}
	b, err := bs.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("save state: %w", err)
	}
	return append(secs, state.Section{Type: state.SecVirtioMMIO, ID: balloonWindow, Data: t},
		state.Section{Type: state.SecBalloon, ID: balloonWindow, Data: b}), nil
}

// balloonWindow is the balloon's virtio-mmio window (attachDevices).
const balloonWindow = 0
