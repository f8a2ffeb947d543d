// Package balloon is the reference VMM's virtio-balloon device (device ID
// 5) with statistics, deflate-on-OOM, free page hinting and free page
// reporting, behind a virtio-mmio transport.
//
// Free page hinting is what migration uses. The host drives a session:
//
//	host                       config cmd_id       guest driver
//	StartHintContext ────────► 0x8000000N ───────► sees a new id (config irq)
//	                  (Requested) ◄── OUT [id] ─── echoes it        → Active
//	sink.HintRange(id, gpa, n) ◄─── IN 4 MiB ───── free blocks, one by one
//	                           ◄── OUT [STOP] ─── no more free blocks
//	StopHintContext ─────────► 0 (STOP) ─────────► stops hinting, keeps blocks
//	DoneHintContext ─────────► 1 (DONE) ─────────► frees the hinted blocks
//
// Hints are accepted only while the session is Active, i.e. after the
// guest echoed the current id: buffers queued for an older id are used
// and ignored (counted as stale). A cmd_id is never reused: ids grow from
// 0x80000000, wrapping back to 0x80000000, and 0 and 1 are never ids.
// A session accepts at most MaxHintRanges ranges; the rest are dropped
// and counted (HintSummary.Dropped), so a guest that hints endlessly
// cannot grow the VMM's memory. Likewise an inflate or deflate buffer is
// read up to MaxPFNs PFNs, a stats buffer up to 64 entries, and one kick
// makes at most MaxKickDiscards discards, so the work of one kick does not
// grow with the buffers or the ring. What the guest can trigger at will
// (pages it cannot discard, hints past the cap, re-activation) is logged
// through a guestlog.Limiter: the first time, then a count. Whatever the
// driver does, the device and its transport stay saveable and restore
// into a device that saves the same state, so a guest can break its
// balloon, never its VM's migration (FuzzGuestDriver plays such a driver).
//
// Inflated and reported pages are punched out of the memfd; the device
// never writes hinted pages. What it cannot know: whether the guest keeps
// its promise not to touch hinted pages before DONE — migration must not
// rely on it (a later dirty-log sync catches every write).
//
// Every host call takes a context and waits for the device's lock under
// it: a vCPU may hold the lock for long, waiting in a post-copy fault
// (lock.go). None waits without a bound.
package balloon
