package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// The page-exact check (Options.VerifyPages, a test mode): after LOADED the
// paused source sends a hash of every page; the destination compares them
// with its own RAM before it may run, and answers VERIFIED with the number
// of differing pages. Any difference aborts the migration: the source
// resumes and the destination never starts. The destination holds to
// that on its own: a COMMIT after such a verdict (in post-copy, or after
// an owed page that landed differing since), or before VERIFIED
// while the check is open, is refused (receiver.commitRefused: failed,
// ABORT), so a source that commits all the same (a bug) cannot make it
// run a copy known to be wrong or not yet checked.
//
// A page whose last send was a skip on a free or unused hint goes as
// hashFree, which the destination does not compare: the check trusts the
// provider that the guest does not care about it. In strict mode
// (Options.VerifyFree) the source sends such a page's real hash instead,
// so the destination (which holds zeros there) compares it like any
// other: a provider that called a used page free is caught before the
// destination runs. The destination needs no mode of its own.

const (
	// hashChunk is the pages of one HASHES message (n ≤ hashChunk): 64
	// MiB of guest RAM, 128 KiB on the wire. It is also how finely the
	// check's progress shows: each side hashes one chunk while the other
	// waits on it (the source's next send, sendHashes; the destination's
	// next HASHES, recvHashes: StallTimeout, and on the destination at
	// least SwitchoverTimeout; until 2026-12-07 the destination's wait
	// was SwitchoverTimeout alone), so a chunk must take well under
	// those bounds even on a slow host (~20 ms at this machine's 14 GB/s
	// of pageHash; 0.2 s at 350 MB/s). Until 2026-12-07 it was 128 Ki
	// pages (512 MiB), and a destination had to read every chunk it was
	// sent, as now.
	hashChunk = 1 << 14
)

// sendHashes streams the hash of every source page and returns how many
// of them the destination compares (every one but the pages sent as
// hashFree). Each send waits on the destination, which checks one
// chunk before it reads the next: it is under the stall rule of a
// pass's sends (watchPeer: progress is a send that returned or the
// transport's byte count growing), so a destination that stopped
// reading fails the check within StallTimeout; one that checks each
// chunk within it is never failed for taking long over them all. This
// side's own hashing between two sends is not waiting on the
// destination, and counts as progress.
func (s *sender) sendHashes(ctx context.Context) (checked uint64, err error) {
	pctx, stop := s.watchPeer(ctx)
	defer stop()
	var page uint64
	buf := make([]byte, 0, 16+8*hashChunk)
	flush := func(first uint64) error {
		if len(buf) == 16 {
			return nil
		}
		binary.LittleEndian.PutUint64(buf, first)
		binary.LittleEndian.PutUint64(buf[8:], uint64(len(buf)-16)/8)
		s.peer.moved() // from here this side waits on the destination
		if err := s.tr.SendMessage(pctx, transport.Message{Kind: msgHashes, Payload: buf}); err != nil {
			return s.peerStalled(pctx, err)
		}
		s.peer.moved()
		buf = buf[:16]
		return nil
	}
	buf = buf[:16]
	first := uint64(0)
	for i := range s.layout {
		m := s.mem[i]
		s.holes[i].valid = false
		for off := 0; off < len(m); off += framework.PageSize {
			h := zeroPageHash
			switch {
			case s.freeSent != nil && s.freeSent.Test(page):
				s.rep.PagesFree++
				if !s.opt.VerifyFree {
					h = hashFree
				} else if !s.holes[i].hole(int64(s.layout[i].Offset) + int64(off)) {
					h = pageHash(m[off : off+framework.PageSize])
				}
			case !s.holes[i].hole(int64(s.layout[i].Offset) + int64(off)):
				h = pageHash(m[off : off+framework.PageSize])
			}
			if h != hashFree {
				checked++
			}
			buf = binary.LittleEndian.AppendUint64(buf, h)
			page++
			if (len(buf)-16)/8 == hashChunk {
				if err := flush(first); err != nil {
					return checked, err
				}
				first = page
			} else if page%1024 == 0 {
				s.peer.moved() // hashing here: not a stall of the destination
			}
		}
	}
	return checked, flush(first)
}

// hashBudget is what the source's wait for VERIFIED allows the
// destination per page it compares (verifyWait): 10 µs, 400 MB/s of
// guest RAM hashed, some 30 times slower than this machine's pageHash
// on cached memory (0.3 µs a page) and 3 to 10 times slower than on
// cold memory. A variable for tests.
var hashBudget = 10 * time.Microsecond

// verifyWait bounds the source's wait for VERIFIED after its last
// HASHES returned (awaitVerified): the stall bound the rest of the
// pre-COMMIT handover uses (max(StallTimeout, SwitchoverTimeout), as
// the destination's wait between HELLO and LOADED: recvWatched) plus
// hashBudget for each of the checked pages the destination compares.
// It cannot be the stall rule alone: from the last send on, the
// destination checks in silence what its transport still held unread
// (sends return once the transport took the bytes, and how much it
// buffers is the transport's), sending nothing and taking nothing, so
// a destination hashing and a destination that stopped look the same
// from here; the pages bound what it can have left. A bigger guest is
// therefore waited for longer: 8 GiB ~21 s beyond the stall bound, 1
// TiB ~45 min. Until 2026-12-07 it was 5 minutes whatever the guest's
// size: a big guest's check could fail on a destination that hashed
// on, and a small guest's destination that stopped was found only
// after 5 minutes.
func (s *sender) verifyWait(checked uint64) time.Duration {
	return max(s.opt.StallTimeout, s.opt.SwitchoverTimeout) + time.Duration(checked)*hashBudget
}

// awaitVerified waits for the destination's verdict, at most
// verifyWait(checked).
func (s *sender) awaitVerified(ctx context.Context, checked uint64) error {
	wait := s.verifyWait(checked)
	vctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	select {
	case m, ok := <-s.msgs:
		switch {
		case !ok:
			return fmt.Errorf("destination went away during the page check: %w", transport.ErrClosed)
		case m.Kind == msgAbort:
			return fmt.Errorf("destination aborted: %s", m.Payload)
		case m.Kind != msgVerified || len(m.Payload) != 16:
			return fmt.Errorf("%w: message %d instead of VERIFIED", errMalformed, m.Kind)
		}
		if bad := binary.LittleEndian.Uint64(m.Payload); bad != 0 {
			return s.checkFailed(bad, binary.LittleEndian.Uint64(m.Payload[8:]))
		}
		return nil
	case <-vctx.Done():
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for VERIFIED: %w", ctx.Err())
		}
		return fmt.Errorf("no VERIFIED from the destination within %v of the last HASHES (the stall bound, and %v for each "+
			"of the %d pages it compares): it stopped, or hashes slower than that: %w", wait.Round(time.Millisecond), hashBudget,
			checked, vctx.Err())
	}
}

// checkFailed is the error of a page check that found bad pages, first
// the first of them; it says when that page had been skipped as free.
func (s *sender) checkFailed(bad, first uint64) error {
	err := fmt.Errorf("page-exact check failed: %d pages differ between source and destination (first: page %d)", bad, first)
	if s.opt.VerifyFree && s.freeSent != nil && first < s.freeSent.Len() && s.freeSent.Test(first) {
		err = fmt.Errorf("%w; that page was skipped on a free hint: strict mode found a page hinted free that "+
			"does not read on the source as it arrived (zero) — a provider claimed a page the guest uses, "+
			"or the guest does not zero the pages it frees", err)
	}
	return err
}

// hashFree marks a page that was free at switch-over (its last send was a
// skip on a free/unused hint): the guest does not care about its contents,
// so the destination does not compare it (invariant 4,
// docs/ARCHITECTURE.md#invariant-4).
const hashFree = 0

// zeroPageHash is the hash of an all-zero page: holes hash to it without
// being read (reading a hole would fault in a page for nothing).
var zeroPageHash = pageHash(make([]byte, framework.PageSize))

// checker compares hashes against the destination's RAM.
type checker struct {
	maps     [][]byte
	holes    []holes
	layout   framework.Layout
	next     uint64 // next page expected
	bad      uint64
	firstBad uint64
	// deferred, in post-copy, takes the hash of a page not held yet
	// (and reports true): that page is compared when it lands.
	deferred func(p, hash uint64) bool
}

func newChecker(l framework.Layout) (*checker, error) {
	c := &checker{layout: l, firstBad: ^uint64(0)}
	for _, r := range l {
		m, err := unix.Mmap(r.Fd, int64(r.Offset), int(r.Size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("map guest RAM for the page check: %w", err)
		}
		c.maps = append(c.maps, m)
		c.holes = append(c.holes, holes{fd: r.Fd})
	}
	return c, nil
}

func (c *checker) close() {
	for _, m := range c.maps {
		unix.Munmap(m)
	}
}

// chunk checks one HASHES message; done is true after the last page.
// A HASHES once every page's hash was in (VERIFIED went out), empty or
// not, is malformed (receiver.hashes says what follows), and so is an
// empty one before: every HASHES taken moves the check on by a page at
// least, so a source can keep the destination in the check for at most
// a stall bound per page (recvHashes), not for ever.
func (c *checker) chunk(b []byte) (done bool, err error) {
	if len(b) < 16 {
		return false, fmt.Errorf("%w: HASHES of %d bytes", errMalformed, len(b))
	}
	first, n := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
	total := c.layout.Pages()
	if !c.pending() {
		return false, fmt.Errorf("%w: HASHES for pages %d+%d after the page check completed (every page's hash was "+
			"in, and VERIFIED went out)", errMalformed, first, n)
	}
	if n == 0 {
		// Ferry's source never sends one (sendHashes skips an empty
		// chunk). Taken, it would be a message and bytes on the wire,
		// both progress to recvHashes' stall rule: a source sending
		// them for ever would keep this side waiting for ever.
		return false, fmt.Errorf("%w: empty HASHES (no page's hash, at page %d): the check makes no progress on it",
			errMalformed, first)
	}
	if first != c.next || n > total-first || uint64(len(b)-16) != 8*n {
		return false, fmt.Errorf("%w: HASHES for pages %d+%d, expected from %d", errMalformed, first, n, c.next)
	}
	for i := uint64(0); i < n; i++ {
		p := first + i
		r, off, _ := c.layout.Locate(p)
		idx := 0
		for c.layout[idx] != r {
			idx++
		}
		want := binary.LittleEndian.Uint64(b[16+8*i:])
		if want == hashFree || (c.deferred != nil && c.deferred(p, want)) {
			continue
		}
		h := zeroPageHash
		if !c.holes[idx].hole(int64(r.Offset + off)) {
			h = pageHash(c.maps[idx][off : off+framework.PageSize])
		}
		if h != want {
			c.bad++
			c.firstBad = min(c.firstBad, p)
		}
	}
	c.next += n
	return c.next == total, nil
}

// pending reports whether pages are still to be checked: HASHES came,
// and VERIFIED's send has not begun (receiver.hashes sends it on the
// last chunk).
func (c *checker) pending() bool { return c.next < c.layout.Pages() }

func (c *checker) verdict() []byte {
	b := binary.LittleEndian.AppendUint64(nil, c.bad)
	return binary.LittleEndian.AppendUint64(b, c.firstBad)
}
