// Package postcopy is the destination's fault service for post-copy
// migration: after the switch the guest runs here while pages are still
// arriving, and every access to a page that has not arrived is trapped
// with userfaultfd (framework/internal/uffd) and resolved, locally when
// the page is known to be zero or has already landed, otherwise by asking
// the source for it on the transport's urgent path.
//
// Each page is in one state; one table (state.go) decides every move:
//
//	                 zero run                      fault / ZEROPAGE
//	      ┌────────────────────────► zero-known ───────────────────────┐
//	      │   ┌──── dirtied ─────────┘   ▲ │ landed                     │
//	      │   ▼                     zero │ ▼                            ▼
//	   absent ─────── landed ──────────► landed ── fault / CONTINUE ─► placed
//	      ▲ │                                                           ▲
//	      │ │ fault / request (urgent)                                  │
//	      │ ▼                                                           │
//	      │ requested ── landed / CONTINUE, or zero run / ZEROPAGE ─────┘
//	      │   (a second fault here is not requested again)
//	      └─ dirtied (before the switch: landed or zero-known become absent)
//
//	placed: a fault only wakes (it raced with the placement); data or a
//	zero run for a placed page is an error: the guest owns the page.
//	reconnect (a broken connection resumed): requested pages are asked
//	for again; Missing lists the absent and requested ones for the source.
//	settle (the end): landed stays in the memfd, zero-known is discarded,
//	absent or requested is an error; then the caller unregisters.
//
// Who feeds it: the fault loop (Run, on its own locked OS thread, reading
// the userfaultfd) reports faults; the engine reports the transport's
// landed runs (Landed: data completely written into the memfd through
// the transport's own mapping, never half-written), zero and free runs
// (Zero) and the pages dirtied before the switch (Dirtied). Actions
// (Placer, on a real userfaultfd) carry out the moves: ZEROPAGE,
// CONTINUE, WAKE, a discard of stale memfd pages, and the page request,
// which must only queue. Neither the loop nor Placer touches guest RAM.
//
// Guest RAM is a memfd mapped twice:
//
//	guest mapping (VMM, KVM) ── registered MISSING|MINOR ─┐
//	                                                      ├── same memfd pages
//	transport's mapping ─────── not registered ───────────┘
//
// A hole faults MISSING (resolved by ZEROPAGE, or CONTINUE once the data
// landed); a page in the memfd without a page-table entry faults MINOR.
// Register drops the guest mapping's page-table entries first, so a page
// received before the switch still faults once and is checked against
// its state: a stale copy (dirtied) is never mapped.
//
// Go and page faults: a goroutine blocked on a fault in user mode keeps
// its P and, inside code Go cannot preempt (copy, bytes.Equal: assembly),
// cannot be stopped for a garbage collection; the collection then stops
// the fault loop as well, and the process deadlocks. Device threads
// therefore call Service.Populate before touching guest RAM: placed pages
// cost nothing, others are faulted in from inside a syscall, where a
// waiting thread holds no P and does not stop a collection. vCPUs fault
// inside KVM_RUN, a syscall, and need nothing.
//
// Fault latency is measured from reading the fault to the resolving
// ioctl's return; Stats reports p50/p99/max, pages requested and pages
// resolved locally. Figures measured here are in docs/POSTCOPY.md.
package postcopy
