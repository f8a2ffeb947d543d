package vcpu

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/vmm/bus"
	"github.com/ferryvm/ferry/vmm/guestlog"
	"github.com/ferryvm/ferry/vmm/kvm"
)

// Config describes one vCPU.
type Config struct {
	ID int
	// Setup runs on the vCPU's thread after creation and before the first
	// KVM_RUN: CPUID, MSRs, registers.
	Setup func(*kvm.VCPU) error
	PIO   *bus.Bus // port I/O space
	MMIO  *bus.Bus // MMIO space outside guest RAM
	Log   *slog.Logger
}

// VCPU is a running virtual CPU.
type VCPU struct {
	cfg  Config
	gate *Gate
	k    *kvm.VCPU
	tid  atomic.Int32 // OS thread id while the loop runs, 0 otherwise
	done chan error

	// ioPending is set, on the vCPU's thread only, after an I/O or MMIO
	// exit: KVM completes that access at the next KVM_RUN.
	ioPending bool
	// reqs and exited are guarded by the gate's lock (see Do).
	reqs   []request
	exited bool
}

// Start creates the vCPU on a new locked OS thread, runs its Setup and
// starts its run loop; the loop's end is reported by Wait. The vCPU joins
// gate before Start returns.
func Start(vm *kvm.VM, gate *Gate, cfg Config) (*VCPU, error) {
	c := &VCPU{cfg: cfg, gate: gate, done: make(chan error, 1)}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the loop
		k, err := vm.CreateVCPU(cfg.ID)
		if err == nil && cfg.Setup != nil {
			if err = cfg.Setup(k); err != nil {
				k.Close()
			}
		}
		if err != nil {
			ready <- err
			return
		}
		c.k = k
		c.tid.Store(int32(unix.Gettid()))
		gate.add(c)
		ready <- nil
		err = c.loop()
		c.tid.Store(0)
		gate.done(c)
		k.Close()
		c.done <- err
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return c, nil
}

// Wait blocks until the run loop returns: nil after a Gate stop, else the
// fatal exit that ended it (a *FatalError for guest failures).
func (c *VCPU) Wait() error { return <-c.done }

// kick makes the vCPU leave KVM_RUN soon: immediate_exit covers the window
// before it enters the kernel, the signal the time inside.
func (c *VCPU) kick() {
	if c.k == nil {
		return
	}
	c.k.SetImmediateExit(true)
	if tid := c.tid.Load(); tid != 0 {
		// SIGURG is the Go runtime's own preemption signal: harmless to
		// the process, and it interrupts KVM_RUN with EINTR.
		_ = unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
	}
}

// FatalError is a guest failure that ended a vCPU loop, with a register dump.
type FatalError struct {
	VCPU   int
	Reason string
	Dump   string
}

func (e *FatalError) Error() string {
	return fmt.Sprintf("vCPU %d: %s\n%s", e.VCPU, e.Reason, e.Dump)
}

func (c *VCPU) loop() error {
	log := c.cfg.Log
	// A guest can touch unbacked ports and addresses as often as it likes:
	// the first access is logged, then counts (guestlog).
	glog := guestlog.New(log, 0)
	defer glog.Stop()
	for c.gate.checkpoint(c) {
		exit, err := c.k.Run()
		c.ioPending = false // KVM_RUN completed any access left from the last exit
		if errors.Is(err, kvm.ErrInterrupted) {
			c.k.SetImmediateExit(false)
			continue
		}
		if err != nil {
			return c.fatal(err.Error())
		}
		c.ioPending = exit == kvm.ExitIO || exit == kvm.ExitMMIO
		switch exit {
		case kvm.ExitIO:
			port, out, size, data, err := c.k.IO()
			if err != nil {
				return c.fatal(err.Error())
			}
			for i := 0; i+size <= len(data); i += size {
				var ok bool
				if out {
					ok = c.cfg.PIO.Write(uint64(port), data[i:i+size])
				} else {
					ok = c.cfg.PIO.Read(uint64(port), data[i:i+size])
				}
				if !ok {
					glog.Log(slog.LevelDebug, "port access with no device", "port", fmt.Sprintf("%#x", port), "out", out, "size", size)
				}
			}
		case kvm.ExitMMIO:
			addr, write, data := c.k.MMIO()
			var ok bool
			if write {
				ok = c.cfg.MMIO.Write(addr, data)
			} else {
				ok = c.cfg.MMIO.Read(addr, data)
			}
			if !ok {
				glog.Warn("MMIO access with no device", "addr", fmt.Sprintf("%#x", addr), "write", write, "size", len(data))
			}
		case kvm.ExitHLT:
			if log != nil {
				log.Info("vCPU halted", "vcpu", c.cfg.ID)
			}
			return c.fatal("guest halted (HLT exit) and nothing can wake it")
		case kvm.ExitShutdown:
			return c.fatal("guest shut down (triple fault)")
		case kvm.ExitSystemEvent:
			return c.fatal(fmt.Sprintf("guest system event %d (1 shutdown, 2 reset, 3 crash)", c.k.SystemEvent()))
		case kvm.ExitInternalError:
			sub, data := c.k.InternalError()
			return c.fatal(fmt.Sprintf("KVM internal error, suberror %d, data %#x", sub, data))
		case kvm.ExitFailEntry:
			return c.fatal(fmt.Sprintf("VM entry failed, hardware reason %#x", c.k.FailEntry()))
		case kvm.ExitIntr:
			// A signal arrived as KVM was about to run: back to the checkpoint.
		default:
			return c.fatal(fmt.Sprintf("unhandled KVM exit reason %d", exit))
		}
	}
	return nil
}

func (c *VCPU) fatal(reason string) error {
	return &FatalError{VCPU: c.cfg.ID, Reason: reason, Dump: Dump(c.k)}
}
