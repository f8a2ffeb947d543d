// Package engine is Ferry's pre-copy migration engine: Send runs on the
// source beside a framework.Source, Receive on the destination beside a
// framework.Target, and a transport.Transport connects them. Protocol 8;
// every message kind, its payload and its bounds are in messages.go:
//
//	source (Send)                                   destination (Receive)
//	Open(tag) ── the transport's handshake ───────► Open(tag of MigrationID, or any):
//	                                                another migration's source is refused there;
//	                                                wait ≤ IncomingTimeout for a source
//	HELLO(v8, layout, tag) ──────────────────────►  check version, migration tag, layout
//	                                                (another migration's: ABORT it, wait on)
//	              ◄─────────────────────────────── READY (or ABORT: reason)
//	dirty log on; pass 1: every page (bulk)
//	pass n: pages dirtied during pass n-1 ══ pages ═► written into guest RAM
//	  Flush after every pass (pass n+1 never overtakes pass n)
//	until estimated downtime <= max_downtime or max_passes
//	(at max_passes, a switch that cannot finish within
//	switchover_timeout fails here, never paused: ErrNotConverged):
//	pause ┐ final sync; last pass; Flush          │
//	      │ STATE(blob, chunked) ─────────────────►  LoadState
//	      ┘ ◄─────────────────────────────────────  LOADED   (switch-over deadline
//	                                                          covers pause..LOADED)
//	page check (VerifyPages only; not under the switch-over deadline;
//	each HASHES send, the wait for each HASHES after the first, and
//	VERIFIED's send under the stall rule; the wait for VERIFIED ≤ the
//	stall bound + hashBudget per page compared: verifyWait):
//	  HASHES(first, n, n × hash) ─ … ─────────────►  compare with own RAM
//	              ◄─────────────────────────────── VERIFIED(differ, first) (or ABORT)
//	  (pages skipped on free hints hash as 0, not compared, unless
//	  VerifyFree, the strict check, sends their real hash: verify.go)
//	  differ > 0: the source resumes and sends ABORT
//	COMMIT ──────────────────────────────────────►  Resume
//	              ◄─────────────────────────────── RUNNING (or ABORT: will not run)
//	source stays paused for good: the VM lives on the destination
//
//	ABORT(reason) may come from either side at any step before the
//	handover ends; whoever sends it will never run the VM.
//
// Handover states (type Handover, one transition table: handoverNext):
//
//	source:       live ─► switchover ─► committing ─► completed
//	                │          │             ├──────► handover-unknown
//	                └──────────┴─────────────┴──────► failed (the source resumed)
//	destination:  waiting ─► receiving ─► loaded ─► running
//	                │            │           ├────► handover-unknown
//	                └────────────┴───────────┴────► failed (never runs; ABORT sent
//	                                                unless the source aborted)
//
// The destination's handover state is all it knows: what it takes next
// is receiverAccepts (waiting: HELLO; receiving: STATE; loaded: HASHES,
// COMMIT; ABORT in each), anything else ends the migration as malformed;
// whether it answers a failure with ABORT is whether its state was
// final (giveUp). The source reads its answers in order (await).
//
// Progress (type Phase, one table: phaseNext) refines the handover state
// for the caller: setup, bulk, dirty (live), stop-and-copy, state
// (switchover), done; on the destination waiting, bulk, state, done.
// Report.Status (type Status) says how it ended: completed, failed,
// cancelled, handover-unknown or postcopy-broken; a side whose handover
// ended failed reports failed or cancelled, whatever its error wraps (a
// VMM's error may wrap an engine sentinel: reportStatus). The transport's counters are polled on
// a timer (progress.go), never per batch. Report.TagFingerprint (and
// Progress's) names the migration, the same on both sides from HELLO
// on, also without a MigrationID, and never shows its tag
// (fingerprint.go).
//
// What each side does when something fails:
//   - source, at max_passes with an estimate over max_downtime whose
//     final sync and data pages (the last pass's share of its dirty
//     pages) alone, at the fastest rate a live pass measured, take
//     longer than SwitchoverTimeout: fails without pausing the VM
//     (ErrNotConverged, converge.go) and sends ABORT.
//   - source, before it starts writing COMMIT (pause, final pass, state,
//     LOADED, page check, or the switch-over deadline): resumes the VM and
//     sends ABORT. An ABORT in answer to COMMIT (the destination's vCPUs
//     would not run) resumes it too.
//   - source, after it started writing COMMIT and before RUNNING (broken
//     stream, SwitchoverTimeout): handover-unknown, VM paused (in
//     post-copy after reconnecting for ReconnectTimeout; it resumes only
//     on the ABORT that answers its RESUME, postcopy.go). A cancel
//     from then on is ignored (hold.go): it could only make it unknown.
//     A caller that cancels through a Cancel (cancel.go) learns which:
//     it took, or it was refused and never applied.
//   - destination, before LOADED: fails, ABORT; after LOADED, a broken or
//     silent stream (SwitchoverTimeout; between two HASHES the stall
//     rule) without COMMIT or ABORT, or a LOADED that did not get out:
//     handover-unknown, VM paused (in post-copy, the check not open,
//     after listening for the RESUME of a source whose COMMIT was lost,
//     which it answers ABORT, failing: uncommitted; failed without one
//     when its fault service failed meanwhile); but a
//     post-copy destination that lacks owed pages fails (ABORT) on such
//     a stream during the page check, before VERIFIED (from LOADED on
//     when HELLO promised the check, helloCheck; else from the first
//     HASHES), and so does one whose check found differing pages
//     (checkBroke); a pre-copy one stays handover-unknown there, the
//     check promised or not (its copy may be the only one); a VERIFIED that
//     does not get out is handover-unknown too (in post-copy after
//     listening for the RESUME of a source that committed on it, as
//     after any break from VERIFIED on: uncommitted), but for such a
//     verdict or a cancel that cut its send (failed, ABORT). A COMMIT
//     the page check forbids (after differing pages, in post-copy also
//     an owed page that landed differing before it, or before VERIFIED
//     while the check is open) is refused: failed, ABORT
//     (commitRefused; in post-copy that ABORT lingers, as uncommitted's
//     does, for a source that missed it and reconnects: refuseCommit,
//     abortCommit, as it does when a post-copy destination's fault
//     service or Resume failed as COMMIT came: pcRecv.commit),
//     and so is a HASHES after the last (the check completed:
//     malformed).
//
// handover-unknown is final for the engine: Send and Receive return an
// error wrapping ErrHandoverUnknown and never resume or discard the VM on
// their own. Whoever drives the migration asks both sides and resumes
// exactly one (the VMM's migrate-resolve; docs/HANDOVER.md).
//
// Zero pages go as zero runs, never as 4 KiB each: holes in the source's
// memory files are found with SEEK_DATA, populated pages are checked word
// by word. Every page of a pass is classified in one place, the
// classifier (classify.go: hinted, hole, zero, data runs); sendPass only
// consumes the runs. Hint providers are asked right after each dirty
// sync and never waited for: their answers apply, as they arrive, to the
// pages the pass has not reached (hints.go).
//
// What it cannot do: tell a destination that is merely slow from one that
// is gone (both are bounded by the deadlines above), or resolve an unknown
// handover by itself: only someone who can reach both sides can.
package engine
