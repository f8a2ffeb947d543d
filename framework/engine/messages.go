package engine

import (
	"fmt"

	"github.com/ferryvm/ferry/framework/transport"
)

// Every engine message kind (transport.Message.Kind), its direction, its
// payload and the bound the reader applies; the package doc draws when
// each one travels. Pages do not travel as messages: the transport moves
// them (SendPages, Flush). 0 is invalid. Numbers never change meaning
// (in every engine protocol; protocol.go).
const (
	// HELLO, source → destination, first: u32 protocol version, u64
	// pages (its regions' pages: another count is malformed), u32
	// region count n ≤ maxRegions, n × (u64 GPA, u64 size),
	// u32 flags, the migration's tag (16 bytes, protocol 7); exactly
	// 36+16n bytes (encodeHello, decodeHello).
	msgHello = 1
	// READY, destination → source: empty; the layout matches.
	msgReady = 2
	// STATE, source → destination, after the final pass: u64 total, u64
	// offset, data; chunks of ≤ stateChunk in order, total ≤
	// maxStateBytes (encodeStateChunk, decodeStateChunk).
	msgState = 3
	// LOADED, destination → source: empty; the state is loaded, the VM
	// could run here. From its first byte on the source may commit.
	msgLoaded = 4
	// COMMIT, source → destination: empty; run the VM. The destination
	// refuses it (ABORT) after a VERIFIED that counts differing pages,
	// or while the page check is open (receiver.commitRefused). In
	// post-copy the source answers that ABORT with an empty ABORT
	// (heard; within protocol 8, 2026-12-07); unanswered, the
	// destination answers each next RESUME with the ABORT below
	// (pcRecv.refuseCommit).
	msgCommit = 5
	// ABORT, either way, any time before the handover ends: the reason,
	// text of ≤ maxAbortReason bytes (longer ones are cut by the sender).
	// Whoever sends it will never run the VM. In post-copy, the
	// destination's ABORT that answers a RESUME before COMMIT (or
	// after one it refused) carries
	// that RESUME's tag (16 bytes) before its reason (protocol 8,
	// encodeResumeAbort, resumeAbort): a source whose COMMIT went out
	// resumes on no other. The source answers it with an empty ABORT
	// (heard), as SETTLED and BROKEN are; unanswered, the destination
	// answers each next RESUME with it again (pcRecv.tellAborted).
	msgAbort = 6
	// HASHES, source → destination, after LOADED with VerifyPages: u64
	// first page, u64 count n, n × u64 page hash; chunks in page order
	// covering every page once (sendHashes, checker.chunk). A source
	// sends n ≤ hashChunk (16 Ki); a version-7 source from before
	// 2026-12-07 sent up to (transport.MaxMessage-16)/8 (128 Ki), so the
	// destination bounds n only by the pages left and the message's
	// length, never by hashChunk. A HASHES once every page's was in
	// (VERIFIED went out), empty or not, is malformed, and so is an
	// empty one (n = 0) before: no Ferry source sends one (sendHashes
	// skips an empty chunk, since the check began), and each counted as
	// progress to the destination's stall rule (until 2026-12-07).
	msgHashes = 7
	// VERIFIED, destination → source, after the last HASHES: u64 pages
	// that differ, u64 first differing page (^0 if none); exactly 16
	// bytes (checker.verdict, awaitVerified).
	msgVerified = 8
	// RUNNING, destination → source, protocol 2: empty; the VM's vCPUs
	// run here (in post-copy: with faults served).
	msgRunning = 9

	// Post-copy, protocol 3 (postcopy.go draws the exchange). A run list
	// is u32 flags (bit 0: the last chunk), u32 count n ≤ maxRunsPerMsg,
	// then n × (u64 first page, u64 count); runs non-empty, increasing,
	// not overlapping, inside RAM; exactly 8+16n bytes (encodeRuns,
	// decodeRuns).

	// POSTCOPY, source → destination, after the final pass was flushed
	// and before STATE: u64 the pages queued with SendPages in this
	// transport session (protocol 4), then a run list, in chunks, of the
	// pages the destination does not hold (never sent, or dirtied after
	// their last send). Every other page's last copy is in its RAM.
	// After the last chunk the destination waits until its landed lane
	// reported that many pages (the rest it reports is post-copy's),
	// then registers guest RAM with userfaultfd.
	msgPostcopy = 10
	// REQUEST, destination → source, on the urgent path: one chunk of a
	// run list (flags 0) of pages faulted on and asked for.
	msgRequest = 11
	// SETTLED, destination → source, after RUNNING in post-copy: every
	// page arrived and the fault service ended; u64 pages that differed
	// when checked on arrival, u64 first of them (^0 if none), both 0/^0
	// without the page check; exactly 16 bytes like VERIFIED. Sent on
	// the session, or (protocol 6) as the answer to a RESUME when the
	// session that carried it broke unanswered (pcRecv.tellSettled).
	// Source → destination, protocol 6, empty: the answer to it, so the
	// destination knows it was heard and need not wait for a reconnect.
	msgSettled = 12
	// RESUME, source → destination, first on a connection opened again
	// after post-copy broke (instead of HELLO): u32 protocol version,
	// u64 pages, the migration's tag from HELLO (16 bytes, protocol 7);
	// exactly 28 bytes. A RESUME with another tag is answered nothing
	// (migrationTag).
	msgResume = 13
	// MISSING, destination → source, the answer to RESUME: a run list,
	// in chunks, of the pages the destination does not hold yet; the
	// source owes them again.
	msgMissing = 14
	// BROKEN, protocol 5, after RUNNING in post-copy. Destination →
	// source: post-copy broke for good here (the fault service failed,
	// or a page could not be placed) and the VM, which ran here, is
	// halted; the reason, text of ≤ maxAbortReason bytes. Sent on the
	// session, or as the answer to a RESUME (pcRecv.tellBroken). The
	// source stops reconnecting and reports post-copy broken: its paused
	// copy is stale and must never be resumed. Unlike ABORT it never
	// means "resume the VM on the source". Source → destination, empty:
	// the answer to it, so the destination need not wait for a reconnect.
	msgBroken = 15
)

// maxRunsPerMsg bounds the runs of one run-list chunk.
const maxRunsPerMsg = (transport.MaxMessage - 8) / 16

// MsgLoaded, MsgCommit and MsgRunning are the handover messages' kinds,
// exported for tests outside the package that watch a plaintext stream.
const (
	MsgLoaded  = msgLoaded
	MsgCommit  = msgCommit
	MsgRunning = msgRunning
)

// maxAbortReason bounds an ABORT's or BROKEN's reason as sent.
const maxAbortReason = 4096

// reason is the payload of an ABORT or BROKEN for err: its text, cut to
// maxAbortReason bytes.
func reason(err error) []byte {
	msg := err.Error()
	return []byte(msg[:min(len(msg), maxAbortReason)])
}

var msgNames = [...]string{msgHello: "HELLO", msgReady: "READY", msgState: "STATE", msgLoaded: "LOADED",
	msgCommit: "COMMIT", msgAbort: "ABORT", msgHashes: "HASHES", msgVerified: "VERIFIED", msgRunning: "RUNNING",
	msgPostcopy: "POSTCOPY", msgRequest: "REQUEST", msgSettled: "SETTLED", msgResume: "RESUME", msgMissing: "MISSING",
	msgBroken: "BROKEN"}

// msgName names a message kind for errors and logs.
func msgName(kind uint32) string {
	if kind < uint32(len(msgNames)) && msgNames[kind] != "" {
		return msgNames[kind]
	}
	return fmt.Sprintf("message %d", kind)
}

// receiverAccepts is the one table of what the destination takes from
// the source in each of its handover states; ABORT is taken in each of
// them (the states not listed are the source's or final), and anything else ends the migration as
// malformed. The source reads its answers in order instead (await):
// READY after HELLO, LOADED after the last STATE, VERIFIED after the
// last HASHES, RUNNING after COMMIT, or ABORT in place of any of them.
var receiverAccepts = map[Handover][]uint32{
	HandoverWaiting:   {msgHello},
	HandoverReceiving: {msgPostcopy, msgState},
	HandoverLoaded:    {msgHashes, msgCommit},
}

// receiverTakes reports whether the destination takes kind in state h.
func receiverTakes(h Handover, kind uint32) bool {
	if kind == msgAbort {
		_, receiving := receiverAccepts[h]
		return receiving
	}
	return oneOf(kind, receiverAccepts[h])
}
