package framework

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/ferryvm/ferry/framework/bitmap"
)

// PageSize is the unit of migration.
const PageSize = 4096

// Region is a range of guest RAM backed by a memfd (or any mappable file).
type Region struct {
	GPA    uint64 // guest physical address of the first byte
	Size   uint64 // bytes, a multiple of PageSize
	Fd     int    // file descriptor of the backing file; owned by the VMM
	Offset uint64 // offset of GPA's byte in that file, a multiple of PageSize
}

// Layout is the guest RAM of a VM, in page-index order.
type Layout []Region

// Pages is the number of pages in the layout.
func (l Layout) Pages() uint64 {
	var n uint64
	for _, r := range l {
		n += r.Size / PageSize
	}
	return n
}

// Locate returns the region holding page p and p's byte offset inside it.
func (l Layout) Locate(p uint64) (Region, uint64, bool) {
	for _, r := range l {
		n := r.Size / PageSize
		if p < n {
			return r, p * PageSize, true
		}
		p -= n
	}
	return Region{}, 0, false
}

// Check reports whether the layout is well formed: at least one region,
// page-aligned, sizes non-zero, guest addresses increasing without
// overlap, each region ending inside the 64-bit guest address space and
// its file range inside a file's int64 offsets. A layout without
// regions is refused: a VM without RAM has nothing to migrate, and with
// the page check on no HASHES would go out for no page, so no VERIFIED
// would come: the source would fail at its deadline and the destination
// end handover-unknown, rather than both failing here. Check cannot
// tell whether the files behind the regions are that large: it opens
// none.
func (l Layout) Check() error {
	if len(l) == 0 {
		return errors.New("no RAM regions: a VM without guest RAM cannot be migrated")
	}
	var end uint64
	for i, r := range l {
		if r.Size == 0 || r.Size%PageSize != 0 || r.GPA%PageSize != 0 || r.Offset%PageSize != 0 {
			return fmt.Errorf("RAM region %d (%#x+%#x at offset %#x) is not page-aligned", i, r.GPA, r.Size, r.Offset)
		}
		if r.GPA+r.Size < r.GPA || r.Offset > math.MaxInt64 || r.Size > math.MaxInt64-r.Offset {
			// Wrapped, end would read as a low address and let the next
			// region overlap this one; a file offset is an int64.
			return fmt.Errorf("RAM region %d (%#x+%#x at offset %#x) runs past the end of the address space or of a file",
				i, r.GPA, r.Size, r.Offset)
		}
		if i > 0 && r.GPA < end {
			return fmt.Errorf("RAM region %d at %#x overlaps or precedes region %d", i, r.GPA, i-1)
		}
		end = r.GPA + r.Size
	}
	return nil
}

// Same reports whether two layouts describe the same guest addresses
// (files and offsets may differ), with an error saying how they differ.
func (l Layout) Same(o Layout) error {
	if len(l) != len(o) {
		return fmt.Errorf("%d RAM regions here, %d on the other side", len(l), len(o))
	}
	for i := range l {
		if l[i].GPA != o[i].GPA || l[i].Size != o[i].Size {
			return fmt.Errorf("RAM region %d is %#x+%#x here, %#x+%#x on the other side",
				i, l[i].GPA, l[i].Size, o[i].GPA, o[i].Size)
		}
	}
	return nil
}

// Source is the VMM side of a VM being migrated away.
//
// The engine calls these from one goroutine, except Memory, whose result
// it reads concurrently while the guest runs. Errors abort the migration;
// the engine then resumes the VM if it paused it, unless it had started
// writing COMMIT: then the VM stays paused (handover unknown, see
// engine.ErrHandoverUnknown) until the caller resolves it.
type Source interface {
	// RAM describes guest memory, a layout that passes Layout.Check (at
	// least one region). It must not change during a migration.
	RAM() Layout
	// Memory returns the VMM's mapping of region i (len = Size), for
	// zero-page detection. The guest may write it concurrently.
	Memory(i int) []byte
	// StartDirtyLog begins logging writes to guest RAM: by vCPUs (KVM's
	// log) and by the VMM itself (device DMA, used rings).
	StartDirtyLog() error
	// SyncDirtyLog ORs into dst every page written since the previous
	// sync (or StartDirtyLog) and begins a new epoch: a write after
	// SyncDirtyLog returns is reported by the next one.
	SyncDirtyLog(dst *bitmap.Bitmap) error
	// StopDirtyLog ends logging.
	StopDirtyLog() error
	// Pause stops the vCPUs (and device activity that writes guest RAM).
	Pause(ctx context.Context) error
	// Resume undoes Pause.
	Resume() error
	// SaveState returns the VM's state (vCPUs, devices) as an opaque,
	// versioned blob. The VM is paused.
	SaveState(ctx context.Context) ([]byte, error)
}

// Target is the VMM side of a VM being migrated in. Guest RAM is written
// by the transport directly into the files of RAM(); the engine calls
// LoadState once every page has arrived, then Resume after the source
// committed.
//
// The engine calls these (and PostcopyTarget's) one at a time, from the
// goroutine that runs Receive, except LoadState in post-copy: it runs
// on a goroutine of its own, not on Receive's goroutine nor its OS
// thread (a LoadState that needs a locked thread must lock one itself),
// and Receive waits for it to return before it calls anything else,
// also when the migration ended meanwhile.
type Target interface {
	// RAM describes guest memory as Source.RAM does; it must match the
	// source's (Layout.Same).
	RAM() Layout
	// LoadState restores a blob made by the source's SaveState. It must
	// reject a blob it does not understand (magic, version, CRC). In
	// post-copy (a PostcopyTarget) guest memory is registered by then:
	// a read of a page the source still owes waits for it, from Go only
	// through the Toucher (PostcopyTarget.Postcopy). If the migration
	// ends meanwhile, ctx ends and the engine closes the userfaultfd, so
	// such a read goes on with what the RAM file holds (zeros for a
	// hole, an older copy for a page dirtied after it was sent); the VM
	// is then never resumed.
	LoadState(ctx context.Context, state []byte) error
	// Resume starts the migrated VM. An error must mean that no vCPU
	// ran the guest here and none will: the engine then fails the
	// migration (its handover failed, reported at once in its Progress),
	// tells the source, which runs its copy again, and a resolve resumes
	// a handover-unknown source beside it (docs/HANDOVER.md). A Resume
	// that let any vCPU run returns nil, whatever else failed; the
	// engine cannot tell the two apart.
	Resume() error
}

// PostcopyTarget is a Target that can run the migrated VM before all of
// its RAM arrived (post-copy, docs/POSTCOPY.md). A Target without it is
// migrated by pre-copy only: the destination tells the source so in the
// handshake.
type PostcopyTarget interface {
	Target
	// GuestMemory returns region i as the guest reaches it: the VMM's
	// MAP_SHARED mapping of the region's file that KVM and the device
	// threads use (len = Size). During post-copy the engine registers it
	// with userfaultfd; it must stay mapped until Receive returns.
	GuestMemory(i int) []byte
	// Postcopy is called with a Toucher once the engine registered guest
	// memory, before LoadState, and with nil once every page arrived or
	// the migration failed (at the latest before Receive returns), except
	// after a Halt that failed: the Toucher then stays set for good (see
	// Halt). While a Toucher is set, code that reads or writes guest
	// memory in user mode (device emulation, LoadState's too; not the
	// vCPUs, whose faults happen inside KVM_RUN) calls Touch first.
	Postcopy(t Toucher)
	// Halt stops the vCPUs and every device thread for good: post-copy
	// broke and cannot resume. The engine calls it before it closes the
	// userfaultfd, which would otherwise let threads waiting on a missing
	// page read it as zeros. The VM must never run again. An error must
	// mean that some of the guest may still run: the engine then does not
	// close the userfaultfd (it stays open, its fault loop stopped, until
	// the process exits) and does not take the Toucher back, so a thread
	// waiting on a page the destination lacks, and any that later
	// reaches a page not mapped into the guest yet (one it lacks, or one
	// it holds that nothing touched since the switch), waits for good
	// instead of reading zeros; threads that reach only pages mapped
	// before run on. Receive reports postcopy-broken with an error that
	// wraps engine.ErrNotHalted and says to end the process (and the
	// error Halt returned, as text: not wrapped, so nothing it wraps
	// changes how the migration is reported), and still
	// tells the source (BROKEN). Only ending the process stops such a
	// guest (a thread blocked in a fault ends with it): a VMM that waits
	// for every thread to return before it exits waits until it is
	// killed.
	Halt() error
}

// Toucher makes guest memory safe to reach from Go code during
// post-copy.
type Toucher interface {
	// Touch returns once every page of b (part of a GuestMemory slice) is
	// present: pages that have not arrived are faulted in inside a system
	// call, so the calling goroutine never waits on a fault in user mode,
	// where it could hold up the garbage collector and, with it, the
	// fault service (docs/POSTCOPY.md, "Go and page faults"). write says
	// the caller will write. Placed pages cost a lookup.
	Touch(b []byte, write bool) error
}
