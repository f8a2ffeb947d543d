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
// resumes and the destination never starts.
//
// A page whose last send was a skip on a free or unused hint goes as
// hashFree, which the destination does not compare: the check trusts the
// provider that the guest does not care about it. In strict mode
// (Options.VerifyFree) the source sends such a page's real hash instead,
// so the destination (which holds zeros there) compares it like any
// other: a provider that called a used page free is caught before the
// destination runs. The destination needs no mode of its own.

const (
	hashChunk = (transport.MaxMessage - 16) / 8
)

// sendHashes streams the hash of every source page.
func (s *sender) sendHashes(ctx context.Context) error {
	var page uint64
	buf := make([]byte, 0, 16+8*hashChunk)
	flush := func(first uint64) error {
		if len(buf) == 16 {
			return nil
		}
		binary.LittleEndian.PutUint64(buf, first)
		binary.LittleEndian.PutUint64(buf[8:], uint64(len(buf)-16)/8)
		err := s.tr.SendMessage(ctx, transport.Message{Kind: msgHashes, Payload: buf})
		buf = buf[:16]
		return err
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
			buf = binary.LittleEndian.AppendUint64(buf, h)
			page++
			if (len(buf)-16)/8 == hashChunk {
				if err := flush(first); err != nil {
					return err
				}
				first = page
			}
		}
	}
	return flush(first)
}

// verifyTimeout bounds the page check's answer on either side: the
// source's wait for VERIFIED after its last HASHES, and the
// destination's send of it (a VERIFIED later than that finds no source
// waiting). A variable for tests.
var verifyTimeout = 5 * time.Minute

// awaitVerified waits for the destination's verdict, at most
// verifyTimeout.
func (s *sender) awaitVerified(ctx context.Context) error {
	vctx, cancel := context.WithTimeout(ctx, verifyTimeout)
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
		return fmt.Errorf("no VERIFIED from the destination within %v of the last HASHES: %w", verifyTimeout, vctx.Err())
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
func (c *checker) chunk(b []byte) (done bool, err error) {
	if len(b) < 16 {
		return false, fmt.Errorf("%w: HASHES of %d bytes", errMalformed, len(b))
	}
	first, n := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
	total := c.layout.Pages()
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

func (c *checker) verdict() []byte {
	b := binary.LittleEndian.AppendUint64(nil, c.bad)
	return binary.LittleEndian.AppendUint64(b, c.firstBad)
}
