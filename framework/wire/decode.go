package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pierrec/lz4/v4"
)

// readBufferSize is the Decoder's read-ahead: enough for runs of small
// frames (ZERO, ACK); page data goes straight into the caller's buffer,
// so a small read-ahead also copies less of it twice.
const readBufferSize = 8 << 10

// growStep is how much a payload buffer grows at a time while its bytes
// arrive, so that a frame claiming more than it carries costs little.
const growStep = 64 << 10

// Frame is one decoded frame. Which fields are set depends on Type.
type Frame struct {
	Header
	Hello   Hello  // HELLO
	Run     Run    // PAGES, ZERO
	DataLen int    // PAGES: bytes of page data that ReadPages consumes
	Kind    uint32 // MSG
	Payload []byte // MSG: a new slice the caller owns
	Code    Code   // ABORT
	Reason  string // BYE, ABORT
}

// Decoder reads frames from a stream. It is not safe for concurrent use.
type Decoder struct {
	r          *bufio.Reader
	hdr        [HeaderSize + RunSize]byte
	scratch    []byte // payloads and compressed pages, at most MaxPayload
	pending    int    // unread page data of the current PAGES frame
	pages      int    // pages of the current PAGES frame
	compressed bool
	stride     Run   // Cell and Every of the strided ZERO runs this reader takes (AcceptStrided)
	version    uint8 // of the stream's first frame; 0 before it
}

// Version is the version of the stream's frames: its first frame's
// (MinVersion..Version), or 0 before Next returned one. A stream speaks
// one version: a later frame of another is an error.
func (d *Decoder) Version() uint8 { return d.version }

// AcceptStrided lets the Decoder return strided ZERO runs (FlagStrided)
// of cells of cell pages, one of every every; a strided run with another
// stride, or any strided run before this call, is an error. The caller
// still checks that each run's first cell is one it owns.
func (d *Decoder) AcceptStrided(cell, every uint16) {
	d.stride = Run{Cell: cell, Every: every}
}

// NewDecoder returns a Decoder reading from r through a buffer of its own.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, readBufferSize)}
}

// Buffered is how many bytes the Decoder has read ahead and not yet decoded.
func (d *Decoder) Buffered() int { return d.r.Buffered() }

// Next reads the next frame. A clean end of stream before a header
// returns io.EOF; an end inside a frame returns ErrTruncated; a frame
// that breaks the format returns an error wrapping ErrProtocol (and the
// Decoder must not be used further). Errors of the underlying reader are
// returned wrapped. Page data of a PAGES frame is left for ReadPages; if
// the caller calls Next instead, Next discards it.
func (d *Decoder) Next() (Frame, error) {
	if d.pending > 0 {
		n, err := d.r.Discard(d.pending)
		d.pending -= n
		if err != nil {
			return Frame{}, readErr("PAGES data", err)
		}
	}
	if _, err := io.ReadFull(d.r, d.hdr[:HeaderSize]); err != nil {
		if err == io.EOF {
			return Frame{}, io.EOF
		}
		return Frame{}, readErr("frame header", err)
	}
	h, err := ParseHeader(d.hdr[:HeaderSize])
	if err != nil {
		return Frame{}, err
	}
	if d.version == 0 {
		d.version = h.Version
	} else if h.Version != d.version {
		return Frame{}, fmt.Errorf("%w %d on a stream that began in version %d", ErrBadVersion, h.Version, d.version)
	}
	f := Frame{Header: h}
	switch h.Type {
	case TypePages, TypeZero:
		err = d.run(&f)
	case TypeAck:
	case TypeHello:
		var b []byte
		if b, err = d.payload(int(h.Length)); err == nil {
			f.Hello, err = parseHello(b, h.Version, h.Flags&FlagUrgent != 0)
		}
	case TypeMsg:
		err = d.msg(&f)
	case TypeBye, TypeAbort:
		err = d.reason(&f)
	}
	if err != nil {
		return Frame{}, err
	}
	return f, nil
}

// run decodes the run of a PAGES or ZERO frame.
func (d *Decoder) run(f *Frame) error {
	b := d.hdr[HeaderSize:]
	if _, err := io.ReadFull(d.r, b); err != nil {
		return readErr(f.Type.String()+" run", err)
	}
	f.Run = Run{First: binary.BigEndian.Uint64(b), Count: binary.BigEndian.Uint32(b[8:])}
	limit := uint32(MaxZeroPages)
	if f.Type == TypePages {
		limit = MaxPagesPerFrame
	}
	strided := f.Flags&FlagStrided != 0
	if strided {
		f.Run.Cell, f.Run.Every = binary.BigEndian.Uint16(b[12:]), binary.BigEndian.Uint16(b[14:])
	}
	switch {
	case !strided && binary.BigEndian.Uint32(b[12:]) != 0:
		return fmt.Errorf("%w: reserved word of %v run is %#x", ErrMalformed, f.Type, binary.BigEndian.Uint32(b[12:]))
	case strided && d.stride.Every == 0:
		return fmt.Errorf("%w: strided ZERO run on a stream that takes none", ErrMalformed)
	case strided && (f.Run.Cell != d.stride.Cell || f.Run.Every != d.stride.Every):
		return fmt.Errorf("%w: ZERO run strided by %d cells of %d pages, this stream takes %d of %d",
			ErrMalformed, f.Run.Every, f.Run.Cell, d.stride.Every, d.stride.Cell)
	case f.Run.Count == 0 || f.Run.Count > limit:
		return fmt.Errorf("%w: %v run of %d pages (allowed 1..%d)", ErrTooLong, f.Type, f.Run.Count, limit)
	case f.Run.First+uint64(f.Run.Count) < f.Run.First:
		return fmt.Errorf("%w: %v run %d+%d wraps around", ErrMalformed, f.Type, f.Run.First, f.Run.Count)
	}
	if f.Type == TypeZero {
		return nil
	}
	f.DataLen = int(f.Length) - RunSize
	raw := int(f.Run.Count) * PageSize
	d.compressed = f.Flags&FlagCompressed != 0
	if (!d.compressed && f.DataLen != raw) || (d.compressed && f.DataLen > raw) {
		return fmt.Errorf("%w: PAGES of %d pages with %d bytes of data (compressed %v)", ErrMalformed, f.Run.Count, f.DataLen, d.compressed)
	}
	d.pending, d.pages = f.DataLen, int(f.Run.Count)
	return nil
}

// msg decodes a MSG payload into a slice of its own.
func (d *Decoder) msg(f *Frame) error {
	var k [msgFixed]byte
	if _, err := io.ReadFull(d.r, k[:]); err != nil {
		return readErr("MSG kind", err)
	}
	if f.Kind = binary.BigEndian.Uint32(k[:]); f.Kind == 0 {
		return fmt.Errorf("%w: MSG of kind 0", ErrMalformed)
	}
	b, err := readGrow(d.r, nil, int(f.Length)-msgFixed)
	if err != nil {
		return readErr("MSG payload", err)
	}
	f.Payload = b
	return nil
}

// reason decodes a BYE or ABORT payload.
func (d *Decoder) reason(f *Frame) error {
	b, err := d.payload(int(f.Length))
	if err != nil {
		return err
	}
	if f.Type == TypeAbort {
		if f.Code = Code(binary.BigEndian.Uint32(b)); f.Code == 0 {
			return fmt.Errorf("%w: ABORT with code 0", ErrMalformed)
		}
		b = b[abortFixed:]
	}
	f.Reason = string(b)
	return nil
}

// payload reads n bytes into the scratch buffer.
func (d *Decoder) payload(n int) ([]byte, error) {
	b, err := readGrow(d.r, d.scratch[:0], n)
	d.scratch = b[:0]
	if err != nil {
		return nil, readErr("payload", err)
	}
	return b, nil
}

// ReadPages reads the page data of the PAGES frame Next just returned
// into dst, which must be exactly Run.Count pages long, decompressing it
// if it is compressed. dst is only written inside its bounds; on an
// error its contents are undefined.
func (d *Decoder) ReadPages(dst []byte) error {
	if d.pending == 0 || len(dst) != d.pages*PageSize {
		return fmt.Errorf("wire: ReadPages of %d bytes, the current frame has %d pages of data (%d bytes unread)", len(dst), d.pages, d.pending)
	}
	n := d.pending
	d.pending = 0
	if !d.compressed {
		if _, err := io.ReadFull(d.r, dst); err != nil {
			return readErr("PAGES data", err)
		}
		return nil
	}
	src, err := d.payload(n)
	if err != nil {
		return err
	}
	got, err := lz4.UncompressBlock(src, dst)
	if err != nil || got != len(dst) {
		return fmt.Errorf("%w: lz4 block of %d bytes decodes to %d of %d bytes (%v)", ErrMalformed, len(src), got, len(dst), err)
	}
	return nil
}

// readGrow appends n bytes from r to buf, growing buf only as the bytes
// arrive.
func readGrow(r io.Reader, buf []byte, n int) ([]byte, error) {
	for n > 0 {
		if len(buf) == cap(buf) {
			// Never beyond what the frame claims: cap stays <= len + n.
			nb := make([]byte, len(buf), len(buf)+min(n, max(len(buf), growStep)))
			copy(nb, buf)
			buf = nb
		}
		m := min(n, cap(buf)-len(buf))
		k, err := io.ReadFull(r, buf[len(buf):len(buf)+m])
		buf, n = buf[:len(buf)+k], n-k
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// readErr turns an end of input inside a frame into ErrTruncated and
// wraps other read errors with what was being read.
func readErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: input ends inside the %s", ErrTruncated, what)
	}
	return fmt.Errorf("read %s: %w", what, err)
}
