package vmm

import (
	"context"
	"errors"
)

// Incoming mode: the VM a migration (or a snapshot restore) lands in.
//
//	vmm.New(Config{Incoming: true})   RAM (zero), KVM VM, irqchip, PIT,
//	        │                          devices, vCPUs created and parked
//	        │                          before their first KVM_RUN
//	guest RAM filled by the caller     (migration transport, snapshot file)
//	        │
//	LoadState(blob)                    vCPU, irqchip, clock and device state
//	        │                          → StatePaused
//	Resume()                           the guest runs on from where it was
//
// The target must be built like the source: same RAM size (hence the same
// layout), vCPU count and devices; LoadState checks this and says what to
// change. No kernel is loaded and no command line is written: both are in
// the guest RAM that arrives.

func checkIncoming(cfg Config) error {
	if cfg.Kernel != "" || cfg.Cmdline != "" {
		return errors.New("an incoming VM takes no kernel or command line: they arrive with the guest's memory")
	}
	return nil
}

// startIncoming creates the vCPUs behind a paused gate, so they park at
// their first checkpoint without entering the guest. LoadState then runs
// on their threads.
func (v *VM) startIncoming() error {
	if err := v.gate.Pause(context.Background()); err != nil { // no vCPU yet: returns at once
		return err
	}
	v.startVCPUs(nil)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state == StateStopped {
		return v.exitErr
	}
	return nil
}
