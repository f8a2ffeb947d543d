package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/arch/x86"
	"github.com/ferryvm/ferry/vmm/arch/x86/pvh"
	"github.com/ferryvm/ferry/vmm/bus"
	"github.com/ferryvm/ferry/vmm/devices/balloon"
	"github.com/ferryvm/ferry/vmm/devices/poweroff"
	"github.com/ferryvm/ferry/vmm/devices/uart"
	"github.com/ferryvm/ferry/vmm/internal/ctxlock"
	"github.com/ferryvm/ferry/vmm/kvm"
	"github.com/ferryvm/ferry/vmm/memory"
	"github.com/ferryvm/ferry/vmm/vcpu"
	"github.com/ferryvm/ferry/vmm/virtio"
)

// Fixed guest-physical addresses KVM needs on Intel hosts, inside the
// 32-bit MMIO hole and clear of any device (Firecracker's choice).
const (
	tssGPA         = 0xfffb_d000
	identityMapGPA = 0xfffb_c000
)

// Device addresses.
const (
	COM1Base     = 0x3f8
	PowerOffPort = 0xf4
	// VirtioMMIOBase is the first virtio-mmio window, in the 32-bit MMIO
	// hole; device i sits at VirtioMMIOBase + i*virtio.MMIOSize with GSI
	// VirtioFirstGSI + i.
	VirtioMMIOBase = 0xd000_0000
	VirtioFirstGSI = 5
)

// MaxCPUs bounds -cpus; the boot path starts vCPU 0 only in this version,
// the others wait in KVM's wait-for-SIPI state like real application processors.
const MaxCPUs = 64

// Config is what a VM is built from.
type Config struct {
	Kernel          string    // path of a PVH ELF
	Memory          uint64    // bytes of guest RAM
	CPUs            int       // vCPU count, 1..MaxCPUs
	Cmdline         string    // guest command line
	Serial          io.Writer // receives the guest's COM1 output
	NoBalloon       bool      // leave out the virtio-balloon device
	NoPageReporting bool      // the balloon offers no free page reporting
	// TransportInProcess: a migration whose transport plugin is
	// ferry-transport-tcp runs transports/tcp inside this process instead
	// (session.Spec.TransportInProcess): faster post-copy faults, no
	// isolation from a transport crash, and no process to kill behind
	// its Close: a migration waits for that about 9 s at most, then
	// reports without it (boundedClose, inprocess.go).
	TransportInProcess bool
	Log                *slog.Logger
	// Incoming builds a migration target: no Kernel or Cmdline; RAM,
	// devices and parked vCPUs wait for the guest's memory and LoadState,
	// and the guest runs from Resume on (see incoming.go).
	Incoming bool
}

// VM is one virtual machine.
type VM struct {
	cfg Config
	log *slog.Logger
	// plugins counts migrations whose plugin processes are still being
	// stopped (after their report): Close waits for them (each is
	// bounded: boundedClose).
	plugins sync.WaitGroup
	kernel  *pvh.Kernel
	image   []byte

	sys  *kvm.System
	kvm  *kvm.VM
	mem  *memory.Guest
	ram  *guestRAM // mem as the devices reach it: touched first during post-copy (guestram.go)
	pio  bus.Bus
	mmio bus.Bus
	uart *uart.UART
	gate *vcpu.Gate

	balloon          *balloon.Device // nil with Config.NoBalloon
	balloonTransport *virtio.Transport
	cmdline          string // Config.Cmdline plus the devices' words

	cpus     []*vcpu.VCPU    // set once, under mu, when the vCPUs start
	cpusDone chan struct{}   // closed when every vCPU loop has returned
	stateMu  ctxlock.Mutex   // serialises saveState and loadState (lockState); made by its first use, under mu
	run      runLock         // serialises run-state changes (runlock.go)
	owner    *migrationOwner // the migration that owns the VM, or nil; guarded by run
	mig      *migration      // the migration record every control server shares, or nil before the first Serve; set once, under mu (migrations)
	msrs     []uint32        // MSRs to save, from KVM's list (state.go)

	// manualProtect: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is on, and a sync
	// re-protects what it read (dirty.go); tried once, by the first
	// EnableDirtyLog (migrations are serialised by run).
	manualProtect, manualProtectTried bool

	mu       sync.Mutex
	state    State
	runs     uint64        // how many times the VM entered running (moveLocked): its run generation
	moved    chan struct{} // closed at the next state change (awaitLeaving); nil until asked
	started  time.Time
	exitCode int
	exitErr  error
	stopOnce sync.Once
	stopped  chan struct{}
	// incomingCancelled: the VMM's shutdown cancelled the incoming
	// migration (incomingWait, shutdown.go), so its COMMIT never runs the guest
	// here (resumeFor).
	incomingCancelled bool
	// shutdowns are the shutdowns under way, from their request to their
	// end, which migrate-resolve tells of a resume here
	// (resolvedHereInShutdown, shutdown.go).
	shutdowns []*shutdownRun
	// stateFile is state-save's file lock (state_file.go), made by its
	// first use.
	stateFile ctxlock.Mutex
	// inProcess makes the transport of a migration that runs one in
	// process (Config.TransportInProcess); nil: transports/tcp.New.
	// closeBound bounds the wait for its Close (boundedClose); 0:
	// inProcessCloseBound. Both are set by tests only.
	inProcess  func(hclog.Logger) transport.Transport
	closeBound time.Duration
	// haltFailed: the engine's Halt failed, a vCPU loop left waiting
	// for good; stopAsked: Stop was called. Once both, vcpusLeft is
	// closed (vcpusLeftClosed), and Run and Close no longer wait for the
	// vCPU loops (halt_failed.go). Under mu; vcpusLeft is made by its
	// first use. haltBound bounds halt's wait (0: haltTimeout); set by
	// tests only.
	haltFailed, stopAsked, vcpusLeftClosed bool
	vcpusLeft                              chan struct{}
	haltBound                              time.Duration
}

// New validates cfg and builds the VM: guest RAM, the KVM VM, devices and
// the loaded kernel. The vCPUs start in Run.
func New(cfg Config) (*VM, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Serial == nil {
		cfg.Serial = io.Discard
	}
	if cfg.CPUs < 1 || cfg.CPUs > MaxCPUs {
		return nil, fmt.Errorf("vCPU count %d out of range: 1 to %d", cfg.CPUs, MaxCPUs)
	}
	if _, err := memory.Layout(cfg.Memory); err != nil {
		return nil, err
	}
	if err := memory.FitsHost(cfg.Memory); err != nil {
		return nil, err
	}
	v := &VM{cfg: cfg, log: cfg.Log, state: StateCreated,
		gate: vcpu.NewGate(), run: newRunLock(), stopped: make(chan struct{}), cpusDone: make(chan struct{})}
	if cfg.Incoming {
		if err := checkIncoming(cfg); err != nil {
			return nil, err
		}
		v.state = StateIncoming
	} else {
		image, err := os.ReadFile(cfg.Kernel)
		if err != nil {
			return nil, fmt.Errorf("kernel: %w", err)
		}
		if v.kernel, err = pvh.Parse(image); err != nil {
			return nil, fmt.Errorf("kernel %s: %w", cfg.Kernel, err)
		}
		v.image = image
	}
	if err := v.build(); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

func (v *VM) build() error {
	var err error
	if v.sys, err = kvm.Open(); err != nil {
		return err
	}
	if v.kvm, err = v.sys.CreateVM(); err != nil {
		return err
	}
	if err := v.kvm.SetTSSAddr(tssGPA); err != nil {
		return err
	}
	if err := v.kvm.SetIdentityMapAddr(identityMapGPA); err != nil {
		return err
	}
	if err := v.kvm.CreateIRQChip(); err != nil {
		return err
	}
	if err := v.kvm.CreatePIT2(kvm.PITSpeakerDummy); err != nil {
		return err
	}
	if v.mem, err = memory.New(v.cfg.Memory); err != nil {
		return err
	}
	v.ram = &guestRAM{Guest: v.mem}
	if err := v.setSlots(0); err != nil {
		return err
	}
	if err := v.attachDevices(); err != nil {
		return err
	}
	if v.cfg.Incoming {
		return v.startIncoming()
	}
	return v.load()
}

// load copies the kernel and the boot structures into guest RAM.
func (v *VM) load() error {
	var ram []pvh.Region
	for _, r := range v.mem.Regions() {
		ram = append(ram, pvh.Region{GPA: r.GPA, Size: r.Size})
	}
	if err := v.kernel.Load(v.image, v.mem, ram); err != nil {
		return fmt.Errorf("load kernel %s: %w", v.cfg.Kernel, err)
	}
	v.image = nil
	if err := pvh.WriteStartInfo(v.mem, v.cmdline, ram); err != nil {
		return err
	}
	return x86.WriteBootGDT(v.mem)
}

func (v *VM) attachDevices() error {
	v.uart = uart.New(v.cfg.Serial)
	if err := v.pio.Register("com1", COM1Base, 8, v.uart); err != nil {
		return err
	}
	if err := v.pio.Register("poweroff", PowerOffPort, 4, poweroff.New(func(code int) {
		v.finish(code, nil)
	})); err != nil {
		return err
	}
	v.cmdline = v.cfg.Cmdline
	if v.cfg.NoBalloon {
		return nil
	}
	v.balloon = balloon.New(v.ram, v.log)
	if v.cfg.NoPageReporting {
		v.balloon.WithoutReporting()
	}
	tr, err := v.attachVirtio("balloon", 0, v.balloon)
	if err != nil {
		return err
	}
	v.balloon.SetSignaller(tr)
	v.balloonTransport = tr
	return nil
}

// attachVirtio places a virtio device in MMIO window i, wires its
// interrupt line and announces it on the guest's command line.
func (v *VM) attachVirtio(name string, i int, dev virtio.Device) (*virtio.Transport, error) {
	base := uint64(VirtioMMIOBase + i*virtio.MMIOSize)
	gsi := uint32(VirtioFirstGSI + i)
	irq := func() { // an edge on the in-kernel IOAPIC; the test guest polls instead
		if err := v.kvm.IRQLine(gsi, true); err == nil {
			v.kvm.IRQLine(gsi, false)
		}
	}
	tr := virtio.NewTransport(name, dev, v.ram, irq, v.log)
	if err := v.mmio.Register(name, base, virtio.MMIOSize, tr); err != nil {
		return nil, err
	}
	v.cmdline = strings.TrimSpace(v.cmdline + " " + virtio.CmdlineArg(base, gsi))
	return tr, nil
}

// Balloon is the VM's virtio-balloon device, or nil.
func (v *VM) Balloon() *balloon.Device { return v.balloon }

// Memory is the guest's RAM.
func (v *VM) Memory() *memory.Guest { return v.mem }

// UART is the guest's COM1, for feeding it input.
func (v *VM) UART() *uart.UART { return v.uart }

// finish records how the VM ended (first caller wins) and stops the vCPUs.
func (v *VM) finish(code int, err error) {
	v.stopOnce.Do(func() {
		v.mu.Lock()
		v.exitCode, v.exitErr = code, err
		_ = v.moveLocked(StateStopped) // from every state but stopped
		v.mu.Unlock()
		v.gate.Stop()
		close(v.stopped)
	})
}

// Stop ends the VM as if powered off with exit code 0; Run then returns.
// After a failed post-copy Halt (halt_failed.go) it is what lets Run
// and Close return without the vCPU loops that Halt left waiting for
// good: the VM then ends with errNotHalted, exit code 1.
func (v *VM) Stop() {
	v.finish(0, nil)
	v.stopAskedNow()
}

// Run boots the vCPUs and blocks until the guest powers off (its exit code,
// nil), fails (a *vcpu.FatalError), or Stop is called or a shutdown
// stopped the VM (0, nil). A post-copy destination whose VM was halted
// because post-copy broke returns 1, errPostcopyHalted, at the Halt; one
// whose Halt failed stays, its guest frozen, until Stop (quit, a
// shutdown), and returns 1 and an error wrapping errNotHalted without
// waiting for the vCPU loops left waiting (halt_failed.go).
//
// ctx's end is one shutdown request (shutdown.go): it waits while a
// migration holds the VM, and is cancelled, the VM running on, if
// migrate-resolve resumed the guest here as its only copy; a ctx ends
// once, so it cannot ask again. A caller that takes several requests
// (signals) passes them to ServeShutdowns and a ctx that never ends.
//
// An incoming VM's vCPUs already exist, parked: Run only waits, and the
// guest starts at the Resume after LoadState.
func (v *VM) Run(ctx context.Context) (int, error) {
	if !v.cfg.Incoming {
		supported, err := v.sys.SupportedCPUID()
		if err != nil {
			return 1, err
		}
		v.startVCPUs(func(k *kvm.VCPU) error { return v.setupVCPU(k, supported) })
	}
	v.mu.Lock()
	if v.state == StateCreated && v.moveLocked(StateRunning) == nil {
		v.started = time.Now()
	}
	v.mu.Unlock()
	stopOnCancel := context.AfterFunc(ctx, func() {
		if v.shutdown() {
			v.log.Warn("shutdown cancelled: migrate -resolve resumed the guest here, and this is its only copy; quit stops it")
		}
	})
	defer stopOnCancel()
	v.awaitEnd()
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.exitCode, v.exitErr
}

// startVCPUs creates every vCPU, running setup on its thread, and a
// goroutine that ends the VM when they have all returned (closing
// cpusDone). A vCPU that cannot be created ends the VM with its error.
func (v *VM) startVCPUs(setup func(*kvm.VCPU) error) {
	var cpus []*vcpu.VCPU
	for id := 0; id < v.cfg.CPUs; id++ {
		c, err := vcpu.Start(v.kvm, v.gate, vcpu.Config{
			ID: id, PIO: &v.pio, MMIO: &v.mmio, Log: v.log, Setup: setup,
		})
		if err != nil {
			v.finish(1, err)
			break
		}
		cpus = append(cpus, c)
	}
	v.mu.Lock()
	v.cpus = cpus
	v.mu.Unlock()
	go func() {
		var wg sync.WaitGroup
		for _, c := range cpus {
			wg.Go(func() {
				if err := c.Wait(); err != nil {
					v.finish(1, err)
				}
			})
		}
		wg.Wait()
		v.finish(0, nil) // every vCPU returned on its own: nothing left to run
		close(v.cpusDone)
	}()
}

// setupVCPU runs on the vCPU's thread: CPUID before MSRs (KVM drops MSRs
// that the guest's CPUID does not advertise), then the boot registers.
func (v *VM) setupVCPU(k *kvm.VCPU, supported []kvm.CPUIDEntry2) error {
	tscKHz, err := k.TSCKHz()
	if err != nil {
		v.log.Warn("no TSC frequency from KVM; the guest will calibrate", "err", err)
		tscKHz = 0
	}
	if err := k.SetCPUID2(x86.CPUID(supported, k.ID(), v.cfg.CPUs, tscKHz)); err != nil {
		return err
	}
	if err := k.SetMSRs(x86.BootMSRs()); err != nil {
		return err
	}
	if k.ID() != 0 {
		return nil // application processors wait for INIT/SIPI
	}
	sregs, err := k.Sregs()
	if err != nil {
		return err
	}
	regs, sregs := x86.PVHEntry(v.kernel.Entry, pvh.StartInfoGPA, sregs)
	if err := k.SetSregs(sregs); err != nil {
		return err
	}
	if err := k.SetRegs(regs); err != nil {
		return err
	}
	return k.SetFPU(x86.BootFPU())
}

// pauseTimeout bounds a pause: vCPUs park within microseconds unless one
// is stuck in a device's handler, and a stuck pause must not hold the run
// lock (or a migration's switch-over) for ever.
const pauseTimeout = 5 * time.Second

// Pause parks every vCPU; it returns once none is inside the guest. It is
// refused while a migration owns the VM and after one handed it over
// (runlock.go). If not every vCPU parked in time (ctx, at most
// pauseTimeout), the VM runs on and Pause fails.
func (v *VM) Pause(ctx context.Context) error {
	return v.outside(ctx, "pause", v.pause)
}

// Resume lets a paused VM run again; it is refused while a migration owns
// the VM and after one handed it over (runlock.go). It waits for a pause
// or state change in progress, each bounded (the control command's
// resume waits under its request's deadline).
func (v *VM) Resume() error {
	return v.outside(context.Background(), "resume", func(context.Context) error { return v.resume() })
}

// pause does Pause's work; the caller holds the run lock.
func (v *VM) pause(ctx context.Context) error {
	v.mu.Lock()
	st := v.state
	v.mu.Unlock()
	if st != StateRunning && st != StatePaused {
		return fmt.Errorf("cannot pause a VM that is %s", st)
	}
	ctx, cancel := context.WithTimeout(ctx, pauseTimeout)
	defer cancel()
	if err := v.gate.Pause(ctx); err != nil {
		if st == StateRunning { // the pause stays requested: withdraw it, the VM runs as its state says
			v.gate.Resume()
		}
		return fmt.Errorf("pause: %w", err)
	}
	_, err := v.setStateIf(StateRunning, StatePaused)
	return err
}

// resume does Resume's work; the caller holds the run lock. It holds
// v.mu from the check to the state change: finish (a stop, which does not
// take the run lock) cannot come in between, so resume never reports a
// VM running that a stop ended a moment before (a destination would
// answer COMMIT with RUNNING for a guest that runs nowhere).
func (v *VM) resume() error { return v.resumeFor(false) }

// errIncomingCancelled is the engine's Resume at COMMIT after the VMM's
// shutdown cancelled the incoming migration: the engine then answers
// ABORT and the source runs the guest on. It is a cancel (the report
// says cancelled).
var errIncomingCancelled = fmt.Errorf("this VMM is shutting down and cancelled the incoming migration: "+
	"the guest is not run here: %w", context.Canceled)

// resumeFor is resume; migration says that a migration's engine asks
// (migrationVM.Resume), which is refused once the VMM's shutdown
// cancelled the incoming migration: checked under the same v.mu as the
// change, so either the guest ran here before the shutdown looked
// (the shutdown then stops it as a running VM) or it never runs here.
//
// Every check, the state table's too (canMoveState), comes before the
// gate lets a vCPU go, and nothing after it fails: an error means that
// no vCPU ran (framework.Target.Resume's contract, on which a
// destination's engine tells its source to run the guest on). Before,
// a table that refused paused → running failed the resume after the
// vCPUs were let go (TestResumeRefusedByTableRunsNoVCPU).
func (v *VM) resumeFor(migration bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if migration && v.incomingCancelled {
		return errIncomingCancelled
	}
	switch v.state {
	case StateIncoming:
		return fmt.Errorf("cannot resume an incoming VM before its state is loaded (state-load, or LoadState)")
	case StatePaused, StateRunning:
	default:
		return fmt.Errorf("cannot resume a VM that is %s", v.state)
	}
	if v.state == StatePaused && !canMoveState(v.state, StateRunning) {
		err := fmt.Errorf("vmm bug: VM state %s → %s is not allowed; the vCPUs stay parked", v.state, StateRunning)
		v.log.Error("resume refused", "err", err)
		return err
	}
	v.gate.Resume() // the vCPUs run from here on: nothing below fails
	if v.state != StatePaused {
		return nil
	}
	_ = v.moveLocked(StateRunning) // allowed: checked above, under the same v.mu
	if v.started.IsZero() {        // an incoming VM's guest starts here
		v.started = time.Now()
	}
	return nil
}

// Status is a snapshot of the VM for the control socket.
type Status struct {
	State       State  `json:"state"`
	MemoryBytes uint64 `json:"memory_bytes"`
	VCPUs       int    `json:"vcpus"`
	UptimeMS    int64  `json:"uptime_ms"`
	// NotHalted: post-copy broke here and the VM (stopped) could not be
	// halted: a vCPU waits for good on a page this destination lacks,
	// and the guest is frozen; quit ends this VMM's process, and with it
	// the guest (halt_failed.go). Left out otherwise.
	NotHalted bool `json:"not_halted,omitempty"`
}

// Status reports the VM's state.
func (v *VM) Status() Status {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := Status{State: v.state, MemoryBytes: v.cfg.Memory, VCPUs: v.cfg.CPUs, NotHalted: v.haltFailed}
	if !v.started.IsZero() {
		s.UptimeMS = time.Since(v.started).Milliseconds()
	}
	return s
}

// Close flushes the guest's serial output and releases guest RAM and the
// KVM file descriptors. Call after Run; vCPUs still parked (an incoming VM
// that never ran) are stopped first. It waits for a migration still
// running and its plugins, but not for an incoming post-copy's telling
// its source how post-copy ended here (linger.go): it ends that, now if
// post-copy ended, else as soon as it ends. The same for a destination
// whose Resume at COMMIT failed (the guest never ran here), which only
// tells its source ABORT: a source that lost it ends handover-unknown
// after its reconnect_timeout, and migrate -resolve resumes it there.
//
// Close stops a VM that still runs, whatever its migration is doing. On
// a post-copy destination whose post-copy has not ended (pages still
// owed, not broken) that loses the guest: this side holds its only
// newest copy, and the source keeps an older one, paused, which it never
// resumes on its own. Nothing here refuses that (migrate-cancel and
// quit do; Close does not ask): close such a VM only when losing its
// guest is meant (once post-copy ended, Close ends the guest as it
// would any VM's). Close then waits, with no bound of its own, for
// every vCPU loop, so for a vCPU that waits in a fault on a page the
// source has yet to send: until the page arrives (post-copy goes on
// after the stop) or the engine halts the VM because post-copy broke.
// Post-copy breaks only once it could not reconnect for
// reconnect_timeout (10 minutes by default) after its connection went
// down or its session stalled (stall_timeout), so the wait can last that
// long; the Halt then waits at most haltTimeout more (halt_failed.go).
//
// After a failed post-copy Halt (halt_failed.go) it does not wait for
// the vCPU loops that Halt left waiting, and releases neither the KVM
// file descriptors nor guest RAM: a vCPU or device thread still waits
// in a fault on that RAM, and only the process's exit, which must
// follow, ends it (with the userfaultfd). It then returns an error that
// says so.
func (v *VM) Close() error {
	v.mu.Lock()
	started := v.cpus != nil
	v.mu.Unlock()
	returned := true
	if started {
		v.Stop()
		returned = v.vcpusReturned()
	}
	if own := v.migration().owner(); own != nil { // a nil record: none
		own.linger.cutOnEnd()
	}
	v.plugins.Wait() // each is bounded: go-plugin kills a plugin that does not exit, boundedClose leaves a transport in process
	var errs []error
	if v.uart != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		errs = append(errs, v.uart.Close(ctx))
		cancel()
	}
	if !returned {
		return errors.Join(append(errs, fmt.Errorf("%w: the KVM file descriptors and guest RAM are left to this process's exit", errNotHalted))...)
	}
	if v.kvm != nil {
		errs = append(errs, v.kvm.Close())
	}
	if v.sys != nil {
		errs = append(errs, v.sys.Close())
	}
	if v.mem != nil {
		errs = append(errs, v.mem.Close())
	}
	return errors.Join(errs...)
}
