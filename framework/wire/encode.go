package wire

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Run is the page range of a PAGES or ZERO frame.
//
// A ZERO run may be strided (FlagStrided): pages are
// grouped in cells of Cell pages (cell k is pages [k*Cell, (k+1)*Cell)),
// and the run covers only the pages of [First, First+Count) that lie in
// every Every-th cell counted from First's cell. A transport that deals
// cells out to its streams round robin (transports/tcp) sends each
// stream's share of a long zero run as one frame instead of one per cell,
// so an idle guest's holes cost frames in proportion to its ranges, not
// its size. Cell and Every are both 0 in every other run.
type Run struct {
	First uint64 // page index
	Count uint32 // pages from First, the pages a strided run skips included
	Cell  uint16 // strided: pages per cell
	Every uint16 // strided: the run covers one cell of every Every
}

// Strided reports whether the run is strided.
func (r Run) Strided() bool { return r.Every != 0 }

// End is the page after the run's range.
func (r Run) End() uint64 { return r.First + uint64(r.Count) }

// period is where a strided run's pattern starts and how long it is.
func (r Run) period() (base, p uint64) {
	cell := uint64(r.Cell)
	return r.First / cell * cell, cell * uint64(r.Every)
}

// Pages is the number of pages the run covers.
func (r Run) Pages() uint64 {
	if !r.Strided() {
		return uint64(r.Count)
	}
	base, p := r.period()
	upTo := func(x uint64) uint64 { return x/p*uint64(r.Cell) + min(x%p, uint64(r.Cell)) }
	return upTo(r.End()-base) - upTo(r.First-base)
}

// Next returns the first page at or after page p that the run covers,
// and the end of the stretch of covered pages that starts there (within
// one cell for a strided run); first == End() when there is none.
func (r Run) Next(p uint64) (first, end uint64) {
	e := r.End()
	p = max(p, r.First)
	if p >= e {
		return e, e
	}
	if !r.Strided() {
		return p, e
	}
	base, per := r.period()
	x := p - base
	start := base + x/per*per // the covered cell at or before p
	if x%per >= uint64(r.Cell) {
		start += per
		p = start
	}
	return min(p, e), min(start+uint64(r.Cell), e)
}

// Stretches calls fn for each stretch [first, end) of pages the run
// covers within [from, to), in order.
func (r Run) Stretches(from, to uint64, fn func(first, end uint64)) {
	for p := from; ; {
		first, end := r.Next(p)
		if first >= to {
			return
		}
		end = min(end, to)
		fn(first, end)
		p = end
	}
}

// Code says why a session was aborted. 0 is invalid.
type Code uint32

// Abort codes.
const (
	CodeProtocol Code = 1 // the peer sent a frame that breaks this format
	CodeLayout   Code = 2 // the two sides' guest RAM layouts differ
	CodeRejected Code = 3 // the stream does not belong to the session being accepted
	CodeFailed   Code = 4 // this side failed or gave up (I/O error, closed by its engine)
	// CodeOtherMigration: the destination waits for another migration
	// than the HELLO's tag names (version 2; a version-1 reader shows it
	// as code(5)).
	CodeOtherMigration Code = 5
)

var codeNames = [...]string{"invalid", "protocol violation", "RAM layout mismatch", "stream rejected", "peer failed", "another migration"}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint32(c))
}

func appendHeader(dst []byte, h Header) []byte {
	var b [HeaderSize]byte
	h.Put(b[:])
	return append(dst, b[:]...)
}

func appendRun(dst []byte, r Run) []byte {
	dst = binary.BigEndian.AppendUint64(dst, r.First)
	dst = binary.BigEndian.AppendUint32(dst, r.Count)
	dst = binary.BigEndian.AppendUint16(dst, r.Cell)
	return binary.BigEndian.AppendUint16(dst, r.Every)
}

// AppendPagesHeader appends the header and run of a PAGES frame whose
// page data (dataLen bytes: Count pages raw, or one lz4 block if
// compressed) the caller writes right after it, e.g. with writev.
func AppendPagesHeader(dst []byte, seq uint64, r Run, compressed bool, dataLen int) ([]byte, error) {
	if r.Count == 0 || r.Count > MaxPagesPerFrame || r.First+uint64(r.Count) < r.First {
		return dst, fmt.Errorf("%w: PAGES run %d+%d (at most %d pages)", ErrTooLong, r.First, r.Count, MaxPagesPerFrame)
	}
	if r.Cell != 0 || r.Every != 0 {
		return dst, fmt.Errorf("%w: PAGES run %d+%d cannot be strided", ErrMalformed, r.First, r.Count)
	}
	raw := int(r.Count) * PageSize
	if (!compressed && dataLen != raw) || (compressed && (dataLen <= 0 || dataLen > raw)) {
		return dst, fmt.Errorf("%w: %d bytes of data for %d pages (compressed %v)", ErrMalformed, dataLen, r.Count, compressed)
	}
	var fl Flags
	if compressed {
		fl = FlagCompressed
	}
	dst = appendHeader(dst, Header{Type: TypePages, Flags: fl, Length: uint32(RunSize + dataLen), Seq: seq})
	return appendRun(dst, r), nil
}

// AppendPages appends a whole PAGES frame.
func AppendPages(dst []byte, seq uint64, r Run, compressed bool, data []byte) ([]byte, error) {
	dst, err := AppendPagesHeader(dst, seq, r, compressed, len(data))
	if err != nil {
		return dst, err
	}
	return append(dst, data...), nil
}

// AppendZero appends a ZERO frame, with FlagStrided if the run is strided.
func AppendZero(dst []byte, seq uint64, r Run) ([]byte, error) {
	if r.Count == 0 || r.Count > MaxZeroPages || r.First+uint64(r.Count) < r.First {
		return dst, fmt.Errorf("%w: ZERO run %d+%d (at most %d pages)", ErrTooLong, r.First, r.Count, MaxZeroPages)
	}
	var fl Flags
	if r.Cell != 0 || r.Every != 0 {
		if r.Cell == 0 || r.Every == 0 {
			return dst, fmt.Errorf("%w: ZERO run %d+%d strided by %d cells of %d pages", ErrMalformed, r.First, r.Count, r.Every, r.Cell)
		}
		fl = FlagStrided
	}
	dst = appendHeader(dst, Header{Type: TypeZero, Flags: fl, Length: RunSize, Seq: seq})
	return appendRun(dst, r), nil
}

// AppendAck appends an ACK of every batch up to seq.
func AppendAck(dst []byte, seq uint64) []byte {
	return appendHeader(dst, Header{Type: TypeAck, Seq: seq})
}

// AppendMsgHeader appends the header and kind of a MSG frame whose
// payload (n bytes) the caller writes right after it.
func AppendMsgHeader(dst []byte, kind uint32, n int) ([]byte, error) {
	if kind == 0 || n < 0 || n > MaxMessage {
		return dst, fmt.Errorf("%w: message of kind %d with %d bytes (at most %d)", ErrTooLong, kind, n, MaxMessage)
	}
	dst = appendHeader(dst, Header{Type: TypeMsg, Length: uint32(msgFixed + n)})
	return binary.BigEndian.AppendUint32(dst, kind), nil
}

// AppendMsg appends a whole MSG frame.
func AppendMsg(dst []byte, kind uint32, payload []byte) ([]byte, error) {
	dst, err := AppendMsgHeader(dst, kind, len(payload))
	if err != nil {
		return dst, err
	}
	return append(dst, payload...), nil
}

// AppendBye appends a BYE frame; a reason over MaxReason bytes is cut.
func AppendBye(dst []byte, reason string) []byte {
	reason = clip(reason)
	dst = appendHeader(dst, Header{Type: TypeBye, Length: uint32(len(reason))})
	return append(dst, reason...)
}

// AppendAbort appends an ABORT frame; a reason over MaxReason bytes is cut.
// A zero code is sent as CodeFailed.
func AppendAbort(dst []byte, code Code, reason string) []byte {
	if code == 0 {
		code = CodeFailed
	}
	reason = clip(reason)
	dst = appendHeader(dst, Header{Type: TypeAbort, Length: uint32(abortFixed + len(reason))})
	dst = binary.BigEndian.AppendUint32(dst, uint32(code))
	return append(dst, reason...)
}

// clip cuts s to at most MaxReason bytes at a rune boundary.
func clip(s string) string {
	if len(s) <= MaxReason {
		return s
	}
	cut := MaxReason
	for cut > MaxReason-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut-- // s[cut] continues a rune that began before the cut
	}
	return s[:cut]
}
