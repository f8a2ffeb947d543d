package vmtest

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/hint"
)

// Region is one range of the fake guest's RAM.
type Region struct {
	GPA  uint64 // page-aligned
	Size uint64 // bytes, a non-zero multiple of framework.PageSize
}

// DefaultRegions is 16 MiB of RAM in two regions with a gap between them,
// like low RAM and RAM above a PCI hole.
var DefaultRegions = []Region{{GPA: 0, Size: 4 << 20}, {GPA: 64 << 20, Size: 12 << 20}}

// Options describe a fake VM.
type Options struct {
	// Regions is the RAM layout; nil means DefaultRegions, an empty
	// non-nil one is refused (framework.Layout.Check). Source and
	// destination must use the same one.
	Regions []Region
	// Incoming makes a destination: RAM all zero, nothing running, until
	// LoadState and Resume. Otherwise the VM starts running with every
	// page it owns written once.
	Incoming bool
	// Free is what the fake guest reports through BalloonHint: it never
	// writes these pages while a hint window is open, and fills them
	// with a poison byte so that a page sent anyway shows.
	Free []hint.GPARange
	// WriteEvery is the writer's period; each tick it writes WriteBatch
	// pages (default 8). 0 means no writer: the guest writes only
	// through Write.
	WriteEvery time.Duration
	WriteBatch int
	// ForgetOwnWrites makes a broken VMM whose dirty log misses the
	// writes made through Write (device DMA): for tests that show the
	// engine needs them.
	ForgetOwnWrites bool
	// FailSave, FailLoad and FailResume, if set, are returned by
	// SaveState, LoadState and Resume.
	FailSave, FailLoad, FailResume error
	// OnSync, if set, runs after every SyncDirtyLog with its number
	// (1, 2, ...), outside the VM's lock: a test may Write from it.
	OnSync func(n int)
	// OnPause and OnResume, if set, run after a successful Pause or
	// Resume, outside the VM's lock.
	OnPause, OnResume func()
	// OnHalt, if set, runs inside Halt (under the VM's lock); what it
	// returns is kept for HaltNotes (a test records there what it saw,
	// such as whether a userfaultfd was still open).
	OnHalt func() string
}

// State is where the fake VM is in its life.
type State int

// States; 0 is invalid.
const (
	StateIncoming State = iota + 1 // a destination waiting for its state
	StatePaused                    // not running: paused, or loaded and not resumed yet
	StateRunning
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateIncoming:
		return "incoming"
	case StatePaused:
		return "paused"
	case StateRunning:
		return "running"
	case StateClosed:
		return "closed"
	case StateHalted:
		return "halted"
	}
	return "invalid"
}

// VM is a fake VM. Its methods are safe for concurrent use.
type VM struct {
	opt    Options
	layout framework.Layout
	mem    [][]byte // one MAP_SHARED mapping per region, of its own memfd
	base   []uint64 // first page index of each region
	free   *bitmap.Bitmap

	mu       sync.Mutex
	state    State
	seq      uint64            // writes so far; the next write's sequence is seq+1
	own      map[uint64]uint64 // page -> the sequence of this VM's last write to it
	logging  bool
	vcpuLog  *bitmap.Bitmap // what KVM's dirty log would hold
	vmmLog   *bitmap.Bitmap // the VMM's own writes (Write)
	syncs    int
	window   bool   // a balloon hint window is open (BalloonHint until BalloonDone)
	reported uint64 // pages the last BalloonHint reported
	count    Counters
	toucher  framework.Toucher // set during post-copy (postcopy.go)
	halts    []string          // OnHalt's answers

	stop chan struct{}
	done chan struct{}
}

// Counters are what happened to a VM, for assertions.
type Counters struct {
	Pauses, Resumes, Saves, Loads int
	HintSessions, HintDones       int
	Writes                        uint64 // pages written, by the writer and Write
	Postcopies, Halts             int    // Postcopy calls with a Toucher, Halt calls
	TouchErrors                   int    // Toucher.Touch calls that failed
}

// New makes a fake VM. Call Close when done.
func New(opt Options) (*VM, error) {
	if opt.Regions == nil {
		opt.Regions = DefaultRegions
	}
	if opt.WriteBatch <= 0 {
		opt.WriteBatch = 8
	}
	v := &VM{opt: opt, state: StateRunning, stop: make(chan struct{}), done: make(chan struct{})}
	if opt.Incoming {
		v.state = StateIncoming
	}
	if err := v.mapRAM(); err != nil {
		v.unmap()
		return nil, err
	}
	pages := v.layout.Pages()
	v.free, v.vcpuLog, v.vmmLog = bitmap.New(pages), bitmap.New(pages), bitmap.New(pages)
	if !opt.Incoming {
		for _, r := range (hint.VM{RAM: v.hintRAM()}).PageRanges(opt.Free) {
			v.free.SetRange(r.First, r.Count)
		}
		for p := range pages {
			if v.free.Test(p) {
				poison(v.page(p))
			} else {
				fill(v.page(p), p, 0)
			}
		}
	}
	go v.writer()
	return v, nil
}

// mapRAM creates and maps one memfd per region. The memfds allow seals
// but carry none, so a receiving engine seals them against shrinking
// itself (engine.RAMFiles), as it does a VMM's.
func (v *VM) mapRAM() error {
	var next uint64
	for i, r := range v.opt.Regions {
		fd, err := unix.MemfdCreate(fmt.Sprintf("vmtest-ram-%d", i), unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			return fmt.Errorf("guest RAM region %d: %w", i, err)
		}
		v.layout = append(v.layout, framework.Region{GPA: r.GPA, Size: r.Size, Fd: fd})
		if err := unix.Ftruncate(fd, int64(r.Size)); err != nil {
			return fmt.Errorf("guest RAM region %d: size %d: %w", i, r.Size, err)
		}
		m, err := unix.Mmap(fd, 0, int(r.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("guest RAM region %d: map: %w", i, err)
		}
		v.mem = append(v.mem, m)
		v.base = append(v.base, next)
		next += r.Size / framework.PageSize
	}
	return v.layout.Check()
}

func (v *VM) unmap() {
	for _, m := range v.mem {
		unix.Munmap(m)
	}
	for _, r := range v.layout {
		unix.Close(r.Fd)
	}
	v.mem, v.layout = nil, nil
}

// Close stops the writer and releases the RAM. The VM must not be in a
// migration.
func (v *VM) Close() error {
	v.mu.Lock()
	if v.state == StateClosed {
		v.mu.Unlock()
		return nil
	}
	v.state = StateClosed
	v.mu.Unlock()
	close(v.stop)
	<-v.done
	v.unmap()
	return nil
}

// ErrClosed is returned by calls on a closed VM.
var ErrClosed = errors.New("vmtest: VM is closed")

// RAM implements framework.Source and framework.Target: the same layout
// for the VM's whole life.
func (v *VM) RAM() framework.Layout { return v.layout }

// Memory implements framework.Source: the VM's mapping of region i.
func (v *VM) Memory(i int) []byte { return v.mem[i] }

// hintRAM is the layout as hint providers see it (no host addresses).
func (v *VM) hintRAM() []hint.Region {
	var out []hint.Region
	for i, r := range v.layout {
		out = append(out, hint.Region{GPA: r.GPA, Size: r.Size, File: i})
	}
	return out
}

// page is page p's bytes in the VM's mapping.
func (v *VM) page(p uint64) []byte {
	for i := len(v.base) - 1; i >= 0; i-- {
		if p >= v.base[i] {
			off := (p - v.base[i]) * framework.PageSize
			return v.mem[i][off : off+framework.PageSize]
		}
	}
	panic("vmtest: page index out of range")
}

// Pages is the number of pages of guest RAM.
func (v *VM) Pages() uint64 { return v.layout.Pages() }

// State is where the VM is in its life.
func (v *VM) State() State { v.mu.Lock(); defer v.mu.Unlock(); return v.state }

// Counters returns what happened so far.
func (v *VM) Counters() Counters { v.mu.Lock(); defer v.mu.Unlock(); return v.count }
