package vmtest

import (
	"fmt"

	"github.com/ferryvm/ferry/framework"
)

// Post-copy (framework.PostcopyTarget): the engine registers the VM's
// mappings with userfaultfd and hands it a Toucher; until it takes it
// back, every access to guest RAM from Go (the writer, Write, Page,
// Verify, Equal) touches the page first, outside the VM's lock, so a
// goroutine never waits on a missing page in user mode and Halt never
// waits for one that does.
//
//	Postcopy(t) ─► writer/Write/Page/Verify: Touch, then lock and access
//	Postcopy(nil) ─► plain access again (every page arrived)
//	Halt ─► halted for good: nothing runs or writes again

var _ framework.PostcopyTarget = (*VM)(nil)

// StateHalted: Halt stopped the VM for good (post-copy broke).
const StateHalted State = StateClosed + 1

// GuestMemory implements framework.PostcopyTarget: the VM's own mapping
// of region i, the one its writer and Write use.
func (v *VM) GuestMemory(i int) []byte { return v.mem[i] }

// Postcopy implements framework.PostcopyTarget.
func (v *VM) Postcopy(t framework.Toucher) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.toucher = t
	if t != nil {
		v.count.Postcopies++
	}
}

// Halt implements framework.PostcopyTarget: the writer and Write stop
// for good. It does not wait for a write blocked on a missing page: that
// one finds the VM halted once the page arrives (or the engine closed
// the userfaultfd) and writes nothing.
func (v *VM) Halt() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state == StateClosed {
		return ErrClosed
	}
	v.state = StateHalted
	v.count.Halts++
	v.halts = append(v.halts, v.haltHook())
	return nil
}

// haltHook runs OnHalt, if set (under the lock: keep it quick), and
// returns its answer for HaltNotes.
func (v *VM) haltHook() string {
	if v.opt.OnHalt == nil {
		return ""
	}
	return v.opt.OnHalt()
}

// HaltNotes returns what OnHalt answered at each Halt.
func (v *VM) HaltNotes() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.halts...)
}

// touchLocked touches page p through the Toucher, if one is set, with
// v.mu released meanwhile (it is held again on return: callers check
// the state again). A failed touch is counted and returned.
func (v *VM) touchLocked(p uint64, write bool) error {
	t := v.toucher
	if t == nil {
		return nil
	}
	v.mu.Unlock()
	err := t.Touch(v.page(p), write)
	v.mu.Lock()
	if err != nil {
		v.count.TouchErrors++
		return fmt.Errorf("touch page %d: %w", p, err)
	}
	return nil
}

// touchAll touches all of guest RAM for reading, if a Toucher is set;
// v.mu is not held.
func (v *VM) touchAll() error {
	v.mu.Lock()
	t := v.toucher
	v.mu.Unlock()
	if t == nil {
		return nil
	}
	for i, m := range v.mem {
		if err := t.Touch(m, false); err != nil {
			v.mu.Lock()
			v.count.TouchErrors++
			v.mu.Unlock()
			return fmt.Errorf("touch region %d: %w", i, err)
		}
	}
	return nil
}

// Seq returns the VM's write sequence: a page whose record carries a
// larger one was written after that moment.
func (v *VM) Seq() uint64 { v.mu.Lock(); defer v.mu.Unlock(); return v.seq }
