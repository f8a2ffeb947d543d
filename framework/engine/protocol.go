package engine

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ferryvm/ferry/framework"
)

// protocolVersion is the engine protocol; HELLO carries it. Version 2
// added RUNNING: a version-1 source would take the destination's answer
// to COMMIT for nothing, so both sides must speak the same version (a
// mismatch is refused in the handshake, before any page moves). Version
// 3 added post-copy: HELLO's and READY's flags and the messages from
// POSTCOPY to MISSING (messages.go). Version 4 added POSTCOPY's count of
// queued pages: a version-3 destination could take a pre-copy write
// that its landed lane reported late for a post-copy page. Version 5
// added BROKEN: a version-4 source would take it for a malformed
// message, and a version-4 destination never tells its source that
// post-copy broke for good there, so the source waits out
// reconnect_timeout. Version 6 has the source answer SETTLED and the
// destination answer a RESUME with SETTLED: a version-5 source would
// take that answer for a malformed one and report a completed post-copy
// as broken. Version 7 adds the migration's tag to HELLO and RESUME: a
// version-6 destination answered the RESUME of any source that held
// credentials it trusts and named a guest of the same size, another
// migration's included (migrationTag). Within version 7 (2026-12-07)
// the source answers the ABORT that answers its RESUME before COMMIT
// with an empty ABORT, and the destination, unanswered, answers the
// next RESUME with ABORT again: both mixes with an earlier version-7
// peer end as before (such a destination reads no answer, such a source
// sends none and only costs the destination its wait, lingerToTell), so
// the version did not move. Version 8 has the ABORT that answers a
// RESUME carry that RESUME's tag before its reason (encodeResumeAbort),
// and a source whose COMMIT went out resumes its copy only on such an
// ABORT: a version-7 source resumed on any ABORT it read after its
// RESUME, a fresh destination's included (one that closed the session
// as silent before it read the RESUME, waitAgain, and cannot know
// whether COMMIT reached the destination before it, which may have run
// the guest), and would show a version-8 ABORT's tag as text. Within
// version 8 (2026-12-07) HELLO has the flag helloCheck: the source
// promises the page check, so a post-copy destination that lacks owed
// pages fails on a break from LOADED on until it begins to send
// VERIFIED, before the first HASHES too (checkBroke). Both mixes with
// an earlier version-8 peer end as before (such a destination ignores
// the flag, as every flag it does not know; such a source sets none,
// and its destination takes a break before the first HASHES for a lost
// COMMIT, as before), so the version did not move.
// Within version 8 (2026-12-07) a post-copy source answers the ABORT
// that answers its COMMIT with an empty ABORT, and a destination that
// refused that COMMIT (receiver.commitRefused), unanswered, answers the
// next RESUME with the ABORT that answers it (pcRecv.refuseCommit).
// Both mixes with an earlier version-8 peer end as before (such a
// destination sends its ABORT once and reads no answer; such a source
// sends none and only costs the destination its wait, lingerToTell), so
// the version did not move. The rule and the
// golden tests: docs/ARCHITECTURE.md#versions.
const protocolVersion = 8

// migrationTag names one migration on the wire: the source makes it
// for each Send (tagFor: from Options.MigrationID, else at random), HELLO
// carries it, and every RESUME of that migration carries it again. A
// destination answers only the RESUME that carries the tag of the HELLO
// it took, and one given a MigrationID takes only a HELLO with its tag.
// Credentials say which host speaks, not which migration: two migrations between the same two
// hosts with an operator's certificates (a security block) share them,
// and a source in post-copy keeps dialling its destination's address
// for reconnect_timeout, where by then another migration's destination
// may listen (the port of one that died, taken again). Answered MISSING,
// such a source would push its guest's pages into this one's; answered
// ABORT ("never got COMMIT"), it would resume a copy its own destination
// may have run past (TestForeignResumeAfterRunning,
// TestForeignResumeBeforeCommit). With IDs, a job whose destination
// address is another job's reaches that destination's HELLO check and
// is refused there (TestHelloOfAnotherMigration). Both sides also hand
// the tag to their transport (OpenRequest.Tag, transport API 8): the
// source on every Open, the destination on its first Open when it has a
// MigrationID and on every reconnect the tag of the HELLO it took (when
// that source's transport named it: helloTransportTag), and
// the transport refuses another migration's source in its own handshake,
// before any of its pages reaches guest RAM (a running guest's, in
// post-copy); the checks here stay for a transport that does not keep
// that rule. A destination that meets another migration's HELLO or
// RESUME while it waits for its source waits on (waitAgain). The tag is
// not a secret: the credentials authenticate, the tag only tells
// migrations apart. It is never reported all the same (an id-less
// migration's binds its RESUMEs and their ABORTs): reports and progress
// carry its fingerprint instead (fingerprint.go).
type migrationTag [16]byte

// newMigrationTag draws a fresh tag.
func newMigrationTag() migrationTag {
	var t migrationTag
	rand.Read(t[:]) // never fails (crypto/rand)
	return t
}

// tagFor is the tag of the migration named id (Options.MigrationID): made
// from it, so that a destination told the id knows the tag before the
// source's HELLO; a fresh random one without an id.
func tagFor(id string) migrationTag {
	if id == "" {
		return newMigrationTag()
	}
	sum := sha256.Sum256([]byte("ferry migration tag\x00" + id))
	return migrationTag(sum[:16])
}

// HELLO's flags.
const (
	// helloMaySwitch: the source may switch to post-copy (its mode is
	// not off, or the operator may ask), so the destination checks now
	// that it could serve faults.
	helloMaySwitch = 1 << 0
	// helloTransportTag: the source's transport named HELLO's tag in its
	// own handshake (OpenRequest.Tag, transport API 8). An older source
	// sets no such flag (a destination of protocol 7 ignores flags it
	// does not know) and its transport names no tag, so a destination
	// binds its post-copy reconnects to HELLO's tag in the transport
	// only when this is set (receiver.hello); RESUME's tag is checked
	// either way.
	helloTransportTag = 1 << 1
	// helloCheck (within protocol 8, 2026-12-07): the source runs the
	// page check (Options.VerifyPages) and writes COMMIT only after a
	// VERIFIED that counts no differing page. So from LOADED's first
	// byte until this side begins to send VERIFIED no COMMIT can have
	// been written, before the first HASHES as after it; from
	// VERIFIED's first byte on one may be on its way. A post-copy
	// destination that still lacks owed pages fails on a break in that
	// window (receiver.checkBroke). A pre-copy destination, or one that
	// holds every page, stays handover-unknown all the same: it holds
	// the whole guest and cannot tell a source that resumed from one
	// whose VMM died, beside which its copy is the only one (docs/model:
	// property (b), mutant 8). A source from before sets no such flag
	// (and a destination from before ignores it): a break before its
	// first HASHES is handled as before (pcRecv.uncommitted). A COMMIT
	// that arrives in that window is refused, in either mode
	// (receiver.commitRefused).
	helloCheck = 1 << 2
)

// READY's flags.
const (
	// readyPostcopy: the destination can serve post-copy faults (its
	// Target is a framework.PostcopyTarget and userfaultfd works). When
	// the source asked and it cannot, READY's text says why.
	readyPostcopy = 1 << 0
	// maxReadyReason bounds that text.
	maxReadyReason = 1024
)

// encodeResumeAbort writes the ABORT that answers a RESUME (protocol 8):
// that RESUME's tag, then the reason, text cut to maxAbortReason bytes;
// 16 to 16+maxAbortReason bytes. Only a destination that read the
// RESUME, checked its tag, and never got COMMIT (pcRecv.uncommitted) or
// refused it without running the VM (pcRecv.refuseCommit) sends it.
func encodeResumeAbort(tag migrationTag, why string) []byte {
	return append(tag[:], why[:min(len(why), maxAbortReason)]...)
}

// resumeAbort reads an ABORT's payload as the answer to a RESUME tagged
// tag: its reason, and whether it is one. Any other ABORT (plain text, a
// payload out of bounds, another tag) answers false: it does not come
// from a destination of this migration that read the RESUME, so it says
// nothing of whether COMMIT arrived (pcSend.reopen). What it cannot
// tell: the tag is no secret, and a peer that holds the job's
// credentials and sends it unread is believed.
func resumeAbort(payload []byte, tag migrationTag) (why []byte, answers bool) {
	if len(payload) < len(tag) || len(payload) > len(tag)+maxAbortReason || migrationTag(payload[:len(tag)]) != tag {
		return nil, false
	}
	return payload[len(tag):], true
}

// Limits the destination applies to what the source says.
const (
	maxRegions    = 64
	maxStateBytes = 64 << 20
	stateChunk    = 512 << 10
)

var errMalformed = errors.New("malformed engine message")

// hello is the first message: who we are and what RAM we move.
type hello struct {
	Version uint32
	Pages   uint64
	Layout  []regionDesc
	Flags   uint32       // helloMaySwitch, helloTransportTag, helloCheck
	Tag     migrationTag // protocol 7
}

type regionDesc struct{ GPA, Size uint64 }

// encodeHello writes HELLO: u32 version, u64 pages, u32 region count n,
// n × (u64 GPA, u64 size), u32 flags, 16 bytes migration tag; exactly
// 36+16n bytes.
func encodeHello(l framework.Layout, flags uint32, tag migrationTag) []byte {
	b := binary.LittleEndian.AppendUint32(nil, protocolVersion)
	b = binary.LittleEndian.AppendUint64(b, l.Pages())
	b = binary.LittleEndian.AppendUint32(b, uint32(len(l)))
	for _, r := range l {
		b = binary.LittleEndian.AppendUint64(b, r.GPA)
		b = binary.LittleEndian.AppendUint64(b, r.Size)
	}
	b = binary.LittleEndian.AppendUint32(b, flags)
	return append(b, tag[:]...)
}

func decodeHello(b []byte) (hello, error) {
	var h hello
	if len(b) < 16 {
		return h, fmt.Errorf("%w: HELLO of %d bytes", errMalformed, len(b))
	}
	h.Version = binary.LittleEndian.Uint32(b)
	h.Pages = binary.LittleEndian.Uint64(b[4:])
	n := binary.LittleEndian.Uint32(b[12:])
	if h.Version != protocolVersion {
		return h, fmt.Errorf("source speaks engine protocol %d, this destination %d: both VMMs must speak the same one "+
			"(docs/ARCHITECTURE.md#versions); upgrade the older side", h.Version, protocolVersion)
	}
	if n > maxRegions || uint64(len(b)) != 36+16*uint64(n) {
		return h, fmt.Errorf("%w: HELLO with %d regions in %d bytes", errMalformed, n, len(b))
	}
	for i := uint32(0); i < n; i++ {
		o := 16 + 16*i
		h.Layout = append(h.Layout, regionDesc{binary.LittleEndian.Uint64(b[o:]), binary.LittleEndian.Uint64(b[o+8:])})
	}
	h.Flags = binary.LittleEndian.Uint32(b[16+16*n:])
	copy(h.Tag[:], b[20+16*n:])
	if pages := h.layout().Pages(); h.Pages != pages {
		return h, fmt.Errorf("%w: HELLO of %d pages whose regions hold %d", errMalformed, h.Pages, pages)
	}
	return h, nil
}

// encodeReady writes READY: u32 flags, then (when the source may switch
// and post-copy is not ready here) why not, at most maxReadyReason bytes.
func encodeReady(flags uint32, why string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, flags)
	if len(why) > maxReadyReason {
		why = why[:maxReadyReason]
	}
	return append(b, why...)
}

func decodeReady(b []byte) (flags uint32, why string, err error) {
	if len(b) < 4 || len(b) > 4+maxReadyReason {
		return 0, "", fmt.Errorf("%w: READY of %d bytes", errMalformed, len(b))
	}
	return binary.LittleEndian.Uint32(b), string(b[4:]), nil
}

// Run-list flags (messages.go).
const runsLast = 1 << 0

// pageRun is Count pages from First in a run list.
type pageRun struct{ First, Count uint64 }

// encodeRuns writes one run-list chunk; len(runs) ≤ maxRunsPerMsg.
func encodeRuns(runs []pageRun, last bool) []byte {
	var flags uint32
	if last {
		flags = runsLast
	}
	b := make([]byte, 0, 8+16*len(runs))
	b = binary.LittleEndian.AppendUint32(b, flags)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(runs)))
	for _, r := range runs {
		b = binary.LittleEndian.AppendUint64(b, r.First)
		b = binary.LittleEndian.AppendUint64(b, r.Count)
	}
	return b
}

// decodeRuns reads one run-list chunk for a guest of pages pages. after
// is where the previous chunk of the same list ended (0 for the first
// or a lone chunk): runs must be non-empty, increasing from there, not
// overlapping and inside RAM. It returns the runs (appended to dst), the
// last flag and where this chunk ends.
func decodeRuns(dst []pageRun, b []byte, pages, after uint64) ([]pageRun, bool, uint64, error) {
	if len(b) < 8 {
		return dst, false, after, fmt.Errorf("%w: run list of %d bytes", errMalformed, len(b))
	}
	flags, n := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
	if flags&^runsLast != 0 || n > maxRunsPerMsg || uint64(len(b)) != 8+16*uint64(n) {
		return dst, false, after, fmt.Errorf("%w: run list with flags %#x and %d runs in %d bytes", errMalformed, flags, n, len(b))
	}
	for i := uint32(0); i < n; i++ {
		o := 8 + 16*i
		r := pageRun{binary.LittleEndian.Uint64(b[o:]), binary.LittleEndian.Uint64(b[o+8:])}
		if r.Count == 0 || r.First < after || r.First > pages || r.Count > pages-r.First {
			return dst, false, after, fmt.Errorf("%w: run %d+%d (after page %d, guest has %d)", errMalformed, r.First, r.Count, after, pages)
		}
		after = r.First + r.Count
		dst = append(dst, r)
	}
	return dst, flags&runsLast != 0, after, nil
}

// encodePostcopy writes one POSTCOPY chunk (protocol 4): u64 the pages
// the source queued with SendPages in this transport session, then a
// run-list chunk.
func encodePostcopy(queued uint64, runs []pageRun, last bool) []byte {
	return append(binary.LittleEndian.AppendUint64(nil, queued), encodeRuns(runs, last)...)
}

// decodePostcopy reads one POSTCOPY chunk as decodeRuns does, and its
// queued pages.
func decodePostcopy(dst []pageRun, b []byte, pages, after uint64) (runs []pageRun, last bool, end, queued uint64, err error) {
	if len(b) < 8 {
		return dst, false, after, 0, fmt.Errorf("%w: POSTCOPY of %d bytes", errMalformed, len(b))
	}
	runs, last, end, err = decodeRuns(dst, b[8:], pages, after)
	return runs, last, end, binary.LittleEndian.Uint64(b), err
}

// layout turns a HELLO's regions into a Layout for comparison.
func (h hello) layout() framework.Layout {
	l := make(framework.Layout, len(h.Layout))
	for i, r := range h.Layout {
		l[i] = framework.Region{GPA: r.GPA, Size: r.Size}
	}
	return l
}

// stateChunkHeader precedes each STATE chunk: total length and offset.
func encodeStateChunk(total, off uint64, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, total)
	b = binary.LittleEndian.AppendUint64(b, off)
	return append(b, data...)
}

func decodeStateChunk(b []byte) (total, off uint64, data []byte, err error) {
	if len(b) < 16 {
		return 0, 0, nil, fmt.Errorf("%w: STATE chunk of %d bytes", errMalformed, len(b))
	}
	total, off, data = binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:]), b[16:]
	if total > maxStateBytes {
		return 0, 0, nil, fmt.Errorf("state blob of %d bytes is over the %d-byte limit", total, maxStateBytes)
	}
	if off > total || uint64(len(data)) > total-off {
		return 0, 0, nil, fmt.Errorf("%w: STATE chunk %d+%d beyond %d", errMalformed, off, len(data), total)
	}
	return total, off, data, nil
}
