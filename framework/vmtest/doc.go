// Package vmtest is a fake VM for tests and examples that have no KVM: a
// framework.Source and framework.Target (and a hint.Host with a fake
// virtio-balloon) whose guest RAM lives in memfds and whose "guest" is a
// goroutine that keeps writing known data. It is what a VMM embedding
// Ferry must provide, in a few hundred lines (docs/EMBEDDING.md).
//
//	          *vmtest.VM
//	┌─────────────────────────────────────────────────────────────┐
//	│ writer goroutine ("vCPU" and "device"), stopped by Pause    │
//	│   vCPU writes ───────► vcpuLog ─┐                           │
//	│   Write (VMM's own) ──► vmmLog ─┴─► SyncDirtyLog ORs both   │
//	│ region 0: memfd 0, mmap MAP_SHARED, GPA 0                   │
//	│           ... gap (no RAM) ...                              │
//	│ region 1: memfd 1, mmap MAP_SHARED, GPA 64 MiB              │
//	│ free pages (Options.Free): poisoned; never written while    │
//	│   a balloon hint window is open (BalloonHint..BalloonDone)  │
//	│ state blob: magic, version, write sequence, free pages, CRC │
//	└─────────────────────────────────────────────────────────────┘
//
// Its life, one transition function (move):
//
//	New ─► running ◄─Resume── paused ◄─LoadState── incoming ◄─ New{Incoming}
//	          └──────Pause──────►
//	any state ─Halt─► halted (for good; post-copy broke)
//
// Hooks (OnSync, OnPause, OnResume) and faults (FailSave, FailLoad,
// FailResume, ForgetOwnWrites) let tests place events exactly: a write
// right after a given dirty sync, a proxy stalled at the pause.
//
// Every page the guest owns carries a self-describing record (page index,
// write sequence, a pattern derived from both), so Verify can check one
// VM's live memory on its own (invariant 4, the guest's own check) and
// Equal can compare two VMs page by page, leaving out free pages.
//
// Post-copy (framework.PostcopyTarget, postcopy.go): GuestMemory is the
// VM's own mapping, which the engine registers with userfaultfd; while
// the engine's Toucher is set, the writer, Write, Page, Verify and Equal
// touch each page first, outside the lock (a goroutine never waits on a
// missing page in user mode, and Halt never waits for one that does);
// Halt stops the VM for good (StateHalted). Seq tells a test which pages
// the guest wrote after a moment (their records carry a later sequence).
//
// What it cannot do: model vCPU state, devices, or KVM's dirty log; its
// "vCPU" writes whole pages under a lock, so a reader sees torn pages
// (as with a real guest) but Verify and Equal never do.
package vmtest
