package vmm

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/vmm/memory"
)

// Guest RAM as the VMM's own device code reaches it (docs/POSTCOPY.md,
// "Go and page faults"). During post-copy a page of guest RAM may not
// have arrived: a Go goroutine that touched it in user mode would wait on
// the fault while holding its P, and could stall the garbage collector
// and with it the fault service. So device code never reads guest RAM
// through *memory.Guest directly: it goes through guestRAM, whose Slice
// calls the engine's Toucher first while one is set. It is the one place
// that does; the vCPUs need nothing (their faults happen inside KVM_RUN).
//
//	virtio queues (Pop, Push) ──┐
//	balloon (PFNs, stats)  ─────┼─► guestRAM.Slice ─► Toucher.Touch (post-copy only) ─► memory.Guest
//	virtio validation ──────────┘   guestRAM.Check: bounds only, never reaches the bytes
//
// After Halt (post-copy broke for good) Slice fails: no device may read
// a page that will never come.

// errHalted is what device code gets from guest RAM after Halt.
var errHalted = errors.New("the VM was halted for good (post-copy broke): guest memory is gone")

// guestRAM wraps the VM's memory for its devices (virtio.Memory,
// balloon.Memory). Its methods may be called from any goroutine.
type guestRAM struct {
	*memory.Guest
	toucher atomic.Pointer[toucherBox] // set during post-copy (migrationVM.Postcopy)
	halted  atomic.Bool
}

// toucherBox holds a Toucher, an interface, for the atomic pointer.
type toucherBox struct{ t framework.Toucher }

// setToucher sets the Toucher device code calls first, or clears it (nil).
func (g *guestRAM) setToucher(t framework.Toucher) {
	if t == nil {
		g.toucher.Store(nil)
		return
	}
	g.toucher.Store(&toucherBox{t})
}

// halt makes every later Slice fail with errHalted.
func (g *guestRAM) halt() { g.halted.Store(true) }

// Slice implements virtio.Memory: the host bytes of guest physical
// [gpa, gpa+n), present. During post-copy it first has the Toucher bring
// in every page of the range, for writing (the caller may write; a page
// made present for writing reads as well), so the caller never faults in
// user mode.
func (g *guestRAM) Slice(gpa, n uint64) ([]byte, error) {
	if g.halted.Load() {
		return nil, errHalted
	}
	b, err := g.Guest.Slice(gpa, n)
	if err != nil || len(b) == 0 {
		return b, err
	}
	if box := g.toucher.Load(); box != nil {
		if err := box.t.Touch(b, true); err != nil {
			return nil, fmt.Errorf("guest RAM %#x+%#x during post-copy: %w", gpa, n, err)
		}
	}
	return b, nil
}

// Check implements virtio's range check: whether [gpa, gpa+n) lies in
// one RAM region, without reaching its bytes (no Touch: a buffer the
// device only validates, like a reported free page, is never fetched).
func (g *guestRAM) Check(gpa, n uint64) error {
	_, err := g.Guest.Slice(gpa, n)
	return err
}
