package vmtest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
)

// writer is the guest: while the VM runs, every WriteEvery it writes
// WriteBatch pages it owns, alternately as a vCPU (KVM's log) and as a
// device (the VMM's own log), so a Source missing either log loses pages.
func (v *VM) writer() {
	defer close(v.done)
	if v.opt.WriteEvery <= 0 {
		<-v.stop
		return
	}
	t := time.NewTicker(v.opt.WriteEvery)
	defer t.Stop()
	rng := uint64(0x9E3779B97F4A7C15)
	for {
		select {
		case <-v.stop:
			return
		case <-t.C:
		}
		v.mu.Lock()
		for i := 0; i < v.opt.WriteBatch && v.state == StateRunning; i++ {
			rng = mix(rng)
			p := rng % v.layout.Pages()
			if v.free.Test(p) {
				continue // the guest's free pages: not its data
			}
			if v.touchLocked(p, true) != nil || v.state != StateRunning || v.free.Test(p) {
				continue // halted or paused while it waited for the page
			}
			log := v.vcpuLog
			if v.seq%2 == 1 {
				log = v.vmmLog
			}
			v.writeLocked(p, log)
		}
		v.mu.Unlock()
	}
}

// writeLocked writes page p's next record and logs it in log, if the
// dirty log is on. v.mu is held.
func (v *VM) writeLocked(p uint64, log *bitmap.Bitmap) {
	v.seq++
	v.count.Writes++
	fill(v.page(p), p, v.seq)
	if v.own == nil {
		v.own = map[uint64]uint64{}
	}
	v.own[p] = v.seq
	if v.logging && !(log == v.vmmLog && v.opt.ForgetOwnWrites) {
		log.Set(p)
	}
}

// ErrPaused is returned by Write while the VM does not run.
var ErrPaused = errors.New("vmtest: the VM is not running")

// ErrHinted is returned by Write to a page the guest handed to the
// balloon while the hint window is open.
var ErrHinted = errors.New("vmtest: the page is hinted free and the hint window is open")

// Write is a write into guest RAM by the VMM itself (a device's DMA, a
// virtio used ring): it writes page gpa/PageSize's next record and logs it
// in the VMM's own dirty log. A page handed to the balloon may be written
// once the hint window closed: the guest took it back, it is no longer free.
func (v *VM) Write(gpa uint64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.pageOf(gpa)
	switch {
	case v.state != StateRunning:
		return fmt.Errorf("write %#x: %w (%s)", gpa, ErrPaused, v.state)
	case !ok:
		return fmt.Errorf("write %#x: not guest RAM", gpa)
	case v.free.Test(p) && v.window:
		return fmt.Errorf("write %#x: %w", gpa, ErrHinted)
	}
	if err := v.touchLocked(p, true); err != nil {
		return fmt.Errorf("write %#x: %w", gpa, err)
	}
	if v.state != StateRunning {
		return fmt.Errorf("write %#x: %w (%s)", gpa, ErrPaused, v.state)
	}
	v.free.Clear(p)
	v.writeLocked(p, v.vmmLog)
	return nil
}

// pageOf is the page index of guest address gpa.
func (v *VM) pageOf(gpa uint64) (uint64, bool) {
	for i, r := range v.layout {
		if gpa >= r.GPA && gpa < r.GPA+r.Size {
			return v.base[i] + (gpa-r.GPA)/framework.PageSize, true
		}
	}
	return 0, false
}

// Pause implements framework.Source: the writer stops; no write is in
// flight when Pause returns, and Write fails until Resume.
func (v *VM) Pause(context.Context) error {
	return v.move("pause", StateRunning, StatePaused, nil, func(c *Counters) { c.Pauses++ }, v.opt.OnPause)
}

// Resume implements framework.Source and framework.Target: the VM runs
// (again). A destination must have loaded its state first.
func (v *VM) Resume() error {
	return v.move("resume", StatePaused, StateRunning, v.opt.FailResume, func(c *Counters) { c.Resumes++ }, v.opt.OnResume)
}

// move is the one lifecycle transition of Pause and Resume (LoadState
// moves incoming to paused, Close anything to closed):
//
//	incoming ─LoadState─► paused ◄─Pause── running
//	                        └─────Resume──►
//
// It fails with fail, if set, or if the VM is not in from; otherwise it
// counts and then runs hook, outside the lock.
func (v *VM) move(op string, from, to State, fail error, count func(*Counters), hook func()) error {
	v.mu.Lock()
	switch {
	case fail != nil:
		v.mu.Unlock()
		return fail
	case v.state != from:
		st := v.state
		v.mu.Unlock()
		return fmt.Errorf("%s: the VM is %s, not %s", op, st, from)
	}
	v.state = to
	count(&v.count)
	v.mu.Unlock()
	if hook != nil {
		hook()
	}
	return nil
}

// MarkDirty reports the pages of [gpa, gpa+size) dirty in the VMM's own
// log without writing them, in any state, as a VMM that cannot track a
// device precisely must: reporting too much is always safe, too little
// never is. It does nothing while logging is off.
func (v *VM) MarkDirty(gpa, size uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.logging {
		return
	}
	end := gpa + size
	for i, r := range v.layout {
		lo, hi := max(gpa, r.GPA), min(end, r.GPA+r.Size)
		if lo < hi && end > gpa { // every page the range touches
			first := (lo - r.GPA) / framework.PageSize
			last := (hi - r.GPA - 1) / framework.PageSize
			v.vmmLog.SetRange(v.base[i]+first, last-first+1)
		}
	}
}

// StartDirtyLog implements framework.Source: both logs start empty.
func (v *VM) StartDirtyLog() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.vcpuLog.ClearAll()
	v.vmmLog.ClearAll()
	v.logging = true
	return nil
}

// SyncDirtyLog implements framework.Source: it ORs both logs into dst
// and clears them, in one step under the lock that every write takes.
func (v *VM) SyncDirtyLog(dst *bitmap.Bitmap) error {
	v.mu.Lock()
	if !v.logging {
		v.mu.Unlock()
		return errors.New("dirty log sync: logging is off")
	}
	dst.Or(v.vcpuLog)
	dst.Or(v.vmmLog)
	v.vcpuLog.ClearAll()
	v.vmmLog.ClearAll()
	v.syncs++
	n, hook := v.syncs, v.opt.OnSync
	v.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return nil
}

// StopDirtyLog implements framework.Source.
func (v *VM) StopDirtyLog() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.logging = false
	return nil
}
