package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// goldenStride is the stride of the strided golden ZERO frame; the
// tests' decoders take it (newDecoder).
const goldenCell, goldenEvery = 256, 2

// newDecoder is a Decoder that takes the golden strided ZERO runs.
func newDecoder(b []byte) *Decoder {
	d := NewDecoder(bytes.NewReader(b))
	d.AcceptStrided(goldenCell, goldenEvery)
	return d
}

// frameWith returns a valid frame of type t with header bytes patched by fix.
func frameWith(t *testing.T, typ Type, fix func(b []byte)) []byte {
	t.Helper()
	var b []byte
	for _, g := range goldenFrames() {
		if g.want.Type == typ {
			b = bytes.Clone(g.bytes)
			break
		}
	}
	if fix != nil {
		fix(b)
	}
	return b
}

func setLen(n uint32) func([]byte) { return func(b []byte) { binary.BigEndian.PutUint32(b[8:], n) } }

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name  string
		input []byte
		want  error
	}{
		{"bad magic", frameWith(t, TypeAck, func(b []byte) { copy(b, "QEVM") }), ErrBadMagic},
		{"bad version", frameWith(t, TypeAck, func(b []byte) { b[4] = Version + 1 }), ErrBadVersion},
		{"version 0", frameWith(t, TypeAck, func(b []byte) { b[4] = 0 }), ErrBadVersion},
		{"type 0 reserved", frameWith(t, TypeAck, func(b []byte) { b[5] = 0 }), ErrBadType},
		{"unknown type", frameWith(t, TypeAck, func(b []byte) { b[5] = 8 }), ErrBadType},
		{"reserved byte", frameWith(t, TypeAck, func(b []byte) { b[7] = 1 }), ErrMalformed},
		{"flag on ACK", frameWith(t, TypeAck, func(b []byte) { b[6] = 1 }), ErrMalformed},
		{"unknown PAGES flag", frameWith(t, TypePages, func(b []byte) { b[6] = 2 }), ErrMalformed},
		{"oversized PAGES", frameWith(t, TypePages, setLen(MaxPayload+1)), ErrTooLong},
		{"huge length", frameWith(t, TypePages, setLen(0xffffffff)), ErrTooLong},
		{"oversized MSG", frameWith(t, TypeMsg, setLen(4+MaxMessage+1)), ErrTooLong},
		{"oversized HELLO", frameWith(t, TypeHello, setLen(maxHello+16)), ErrTooLong},
		{"oversized BYE", frameWith(t, TypeBye, setLen(MaxReason+1)), ErrTooLong},
		{"ACK with payload", frameWith(t, TypeAck, setLen(1)), ErrTooLong},
		{"ZERO too short", frameWith(t, TypeZero, setLen(RunSize-1)), ErrTooLong},
		{"PAGES without data", frameWith(t, TypePages, setLen(RunSize)), ErrTooLong},
		{"PAGES count 0", frameWith(t, TypePages, func(b []byte) { binary.BigEndian.PutUint32(b[28:], 0) }), ErrTooLong},
		{"PAGES count over limit", frameWith(t, TypePages, func(b []byte) { binary.BigEndian.PutUint32(b[28:], MaxPagesPerFrame+1) }), ErrTooLong},
		{"PAGES raw size mismatch", frameWith(t, TypePages, func(b []byte) { binary.BigEndian.PutUint32(b[28:], 2) }), ErrMalformed},
		{"PAGES run reserved", frameWith(t, TypePages, func(b []byte) { b[35] = 1 }), ErrMalformed},
		{"PAGES wraps", frameWith(t, TypePages, func(b []byte) { binary.BigEndian.PutUint64(b[20:], ^uint64(0)) }), ErrMalformed},
		{"unknown ZERO flag", frameWith(t, TypeZero, func(b []byte) { b[6] = byte(FlagCompressed) }), ErrMalformed},
		{"ZERO run reserved", frameWith(t, TypeZero, func(b []byte) { b[35] = 1 }), ErrMalformed},
		{"strided ZERO, other cell", stridedWith(t, func(b []byte) { binary.BigEndian.PutUint16(b[32:], 128) }), ErrMalformed},
		{"strided ZERO, other every", stridedWith(t, func(b []byte) { binary.BigEndian.PutUint16(b[34:], 3) }), ErrMalformed},
		{"strided ZERO, every 0", stridedWith(t, func(b []byte) { binary.BigEndian.PutUint16(b[34:], 0) }), ErrMalformed},
		{"ZERO count over limit", frameWith(t, TypeZero, func(b []byte) { binary.BigEndian.PutUint32(b[28:], MaxZeroPages+1) }), ErrTooLong},
		{"MSG kind 0", frameWith(t, TypeMsg, func(b []byte) { binary.BigEndian.PutUint32(b[20:], 0) }), ErrMalformed},
		{"ABORT code 0", frameWith(t, TypeAbort, func(b []byte) { binary.BigEndian.PutUint32(b[20:], 0) }), ErrMalformed},
		{"HELLO region count", frameWith(t, TypeHello, func(b []byte) { binary.BigEndian.PutUint32(b[20+40:], 3) }), ErrMalformed},
		// A version-2 HELLO relabelled version 1: read without a tag, its
		// fields no longer add up.
		{"HELLO of version 2 as 1", frameWith(t, TypeHello, func(b []byte) { b[4] = 1 }), ErrMalformed},
		{"HELLO stream >= streams", frameWith(t, TypeHello, func(b []byte) { binary.BigEndian.PutUint16(b[20+32:], 2) }), ErrMalformed},
		{"HELLO zero streams", frameWith(t, TypeHello, func(b []byte) {
			binary.BigEndian.PutUint16(b[20+32:], 0)
			binary.BigEndian.PutUint16(b[20+34:], 0)
		}), ErrMalformed},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrBadMagic},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeAll(c.input)
			if !errors.Is(err, c.want) || !errors.Is(err, ErrProtocol) {
				t.Fatalf("got %v, want %v (and ErrProtocol)", err, c.want)
			}
		})
	}
}

// decodeAll decodes every frame of b, reading page data, until an error.
func decodeAll(b []byte) ([]Frame, error) {
	d := newDecoder(b)
	var fs []Frame
	for {
		f, err := d.Next()
		if err != nil {
			return fs, err
		}
		if f.Type == TypePages {
			if err := d.ReadPages(make([]byte, int(f.Run.Count)*PageSize)); err != nil {
				return fs, err
			}
		}
		fs = append(fs, f)
	}
}

// TestTruncated cuts a stream of every frame type at every byte: each cut
// inside a frame is ErrTruncated, each cut between frames a clean EOF.
func TestTruncated(t *testing.T) {
	var all []byte
	ends := map[int]bool{0: true}
	for _, g := range goldenFrames() {
		all = append(all, g.bytes...)
		ends[len(all)] = true
	}
	for cut := 0; cut <= len(all); cut++ {
		fs, err := decodeAll(all[:cut])
		if ends[cut] {
			if err != io.EOF {
				t.Fatalf("cut at frame boundary %d: %v, want EOF", cut, err)
			}
			continue
		}
		if !errors.Is(err, ErrTruncated) || !errors.Is(err, ErrProtocol) {
			t.Fatalf("cut at %d (after %d frames): %v, want ErrTruncated", cut, len(fs), err)
		}
	}
}

func TestCorruptLZ4(t *testing.T) {
	b := frameWith(t, TypePages, nil)
	for _, g := range goldenFrames() {
		if g.name == "pages_lz4" {
			b = bytes.Clone(g.bytes)
		}
	}
	b[HeaderSize+RunSize] = 0xff // first lz4 token: literal length runs past the input
	b[len(b)-1] ^= 0x55
	if _, err := decodeAll(b); !errors.Is(err, ErrMalformed) {
		t.Fatalf("corrupt lz4: %v, want ErrMalformed", err)
	}
}

// TestClaimCostsLittle: a frame that claims 16 MiB of compressed pages
// and sends 100 bytes makes the decoder hold a buffer of about what
// arrived, not what was claimed.
func TestClaimCostsLittle(t *testing.T) {
	b, err := AppendPagesHeader(nil, 1, Run{First: 0, Count: MaxPagesPerFrame}, true, MaxPagesPerFrame*PageSize-1)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, make([]byte, 100)...)
	d := newDecoder(b)
	f, err := d.Next()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ReadPages(make([]byte, int(f.Run.Count)*PageSize)); !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v, want ErrTruncated", err)
	}
	if c := cap(d.scratch); c > growStep {
		t.Fatalf("decoder holds %d bytes for a 100-byte frame body", c)
	}
}

func TestSkipUnreadPages(t *testing.T) {
	var b []byte
	for _, g := range goldenFrames() {
		b = append(b, g.bytes...)
	}
	d := newDecoder(b)
	var types []string
	for {
		f, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, f.Type.String())
	}
	if got := strings.Join(types, " "); got != "HELLO HELLO PAGES PAGES ZERO ZERO ACK MSG BYE ABORT" {
		t.Fatalf("frames %q", got)
	}
}

func TestReadPagesMisuse(t *testing.T) {
	d := NewDecoder(bytes.NewReader(AppendAck(nil, 1)))
	if _, err := d.Next(); err != nil {
		t.Fatal(err)
	}
	if err := d.ReadPages(make([]byte, PageSize)); err == nil {
		t.Fatal("ReadPages after ACK succeeded")
	}
	d = NewDecoder(bytes.NewReader(frameWith(t, TypePages, nil)))
	if _, err := d.Next(); err != nil {
		t.Fatal(err)
	}
	if err := d.ReadPages(make([]byte, 2*PageSize)); err == nil {
		t.Fatal("ReadPages into a buffer of the wrong size succeeded")
	}
}

func TestEncoderLimits(t *testing.T) {
	if _, err := AppendMsg(nil, 1, make([]byte, MaxMessage+1)); err == nil {
		t.Error("AppendMsg over MaxMessage")
	}
	if _, err := AppendMsg(nil, 0, nil); err == nil {
		t.Error("AppendMsg of kind 0")
	}
	if _, err := AppendPagesHeader(nil, 1, Run{First: 0, Count: MaxPagesPerFrame + 1}, false, (MaxPagesPerFrame+1)*PageSize); err == nil {
		t.Error("AppendPagesHeader over MaxPagesPerFrame")
	}
	if _, err := AppendPagesHeader(nil, 1, Run{First: 0, Count: 1}, false, 100); err == nil {
		t.Error("AppendPagesHeader with short raw data")
	}
	if _, err := AppendZero(nil, 1, Run{First: ^uint64(0), Count: 2}); err == nil {
		t.Error("AppendZero wrapping")
	}
	if _, err := AppendZero(nil, 1, Run{First: 0, Count: 512, Cell: 256}); err == nil {
		t.Error("AppendZero strided with Every 0")
	}
	if _, err := AppendPagesHeader(nil, 1, Run{First: 0, Count: 1, Cell: 256, Every: 2}, false, PageSize); err == nil {
		t.Error("AppendPagesHeader strided")
	}
	if _, err := AppendHello(nil, Hello{Streams: 1, RAM: make([]Region, MaxRegions+1)}); err == nil {
		t.Error("AppendHello over MaxRegions")
	}
	long := strings.Repeat("é", MaxReason) // 2 bytes a rune: the cut falls inside one
	fs, err := decodeAll(AppendAbort(nil, 0, long))
	if err != io.EOF || len(fs) != 1 || len(fs[0].Reason) > MaxReason || !strings.HasPrefix(long, fs[0].Reason) || fs[0].Code != CodeFailed {
		t.Fatalf("long reason: %v %+v", err, fs)
	}
}

// TestUrgentFlag: FlagUrgent is valid on HELLO alone, and an urgent HELLO
// names stream 0.
func TestUrgentFlag(t *testing.T) {
	h := Header{Type: TypeHello, Flags: FlagUrgent, Length: helloFixed}
	var b [HeaderSize]byte
	h.Put(b[:])
	if _, err := ParseHeader(b[:]); err != nil {
		t.Fatalf("urgent HELLO header: %v", err)
	}
	for _, bad := range []Header{
		{Type: TypeHello, Flags: FlagCompressed, Length: helloFixed},
		{Type: TypeHello, Flags: FlagUrgent | FlagCompressed, Length: helloFixed},
		{Type: TypePages, Flags: FlagUrgent, Length: RunSize + 1},
		{Type: TypeMsg, Flags: FlagUrgent, Length: msgFixed},
	} {
		bad.Put(b[:])
		if _, err := ParseHeader(b[:]); !errors.Is(err, ErrMalformed) {
			t.Errorf("%v with flags %#x: %v, want ErrMalformed", bad.Type, uint8(bad.Flags), err)
		}
	}
	if _, err := AppendHello(nil, Hello{Stream: 1, Streams: 2, Urgent: true}); !errors.Is(err, ErrMalformed) {
		t.Errorf("urgent HELLO for stream 1: %v, want ErrMalformed", err)
	}
}

// stridedWith returns the golden strided ZERO frame with bytes patched by fix.
func stridedWith(t *testing.T, fix func(b []byte)) []byte {
	t.Helper()
	b := mustFrame(AppendZero(nil, 1, Run{First: 0, Count: 1024, Cell: goldenCell, Every: goldenEvery}))
	fix(b)
	return b
}

// TestStridedNotTaken: a reader that did not say which stride it takes
// (AcceptStrided) refuses every strided run, so none is ever applied as
// a contiguous one.
func TestStridedNotTaken(t *testing.T) {
	_, err := NewDecoder(bytes.NewReader(stridedWith(t, func([]byte) {}))).Next()
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "takes none") {
		t.Fatalf("got %v, want ErrMalformed: takes none", err)
	}
}

// TestRunPages checks Run.Pages and Run.Next against a page-by-page walk
// of what a strided run covers.
func TestRunPages(t *testing.T) {
	covers := func(r Run, p uint64) bool {
		if p < r.First || p >= r.End() {
			return false
		}
		return !r.Strided() || (p/uint64(r.Cell))%uint64(r.Every) == (r.First/uint64(r.Cell))%uint64(r.Every)
	}
	runs := []Run{
		{First: 5, Count: 10},
		{First: 0, Count: 1024, Cell: 256, Every: 2},
		{First: 300, Count: 2000, Cell: 256, Every: 2},
		{First: 511, Count: 1, Cell: 256, Every: 2},
		{First: 511, Count: 2, Cell: 256, Every: 2},
		{First: 7, Count: 100, Cell: 4, Every: 3},
		{First: 1 << 40, Count: 777, Cell: 16, Every: 1},
		{First: 64, Count: 1000, Cell: 64, Every: 64},
	}
	for _, r := range runs {
		var want uint64
		for p := r.First; p < r.End(); p++ {
			if covers(r, p) {
				want++
			}
		}
		if got := r.Pages(); got != want {
			t.Errorf("%+v: Pages %d, want %d", r, got, want)
		}
		for p := r.First - min(r.First, 3); p <= r.End()+1; p++ {
			first, end := r.Next(p)
			w := min(max(p, r.First), r.End())
			for w < r.End() && !covers(r, w) {
				w++
			}
			if first != w {
				t.Fatalf("%+v: Next(%d) starts at %d, want %d", r, p, first, w)
			}
			we := w
			for we < r.End() && covers(r, we) && (!r.Strided() || we == w || we%uint64(r.Cell) != 0) {
				we++
			}
			if end != we {
				t.Fatalf("%+v: Next(%d) ends at %d, want %d", r, p, end, we)
			}
		}
		// Stretches over a window visits exactly the covered pages in it.
		from, to := r.First+uint64(r.Count)/3, r.End()-uint64(r.Count)/5
		var got []uint64
		r.Stretches(from, to, func(first, end uint64) {
			if first >= end || len(got) > 0 && first <= got[len(got)-1] {
				t.Fatalf("%+v: stretch [%d, %d) after page %v", r, first, end, got)
			}
			for p := first; p < end; p++ {
				got = append(got, p)
			}
		})
		var wantPages []uint64
		for p := from; p < to; p++ {
			if covers(r, p) {
				wantPages = append(wantPages, p)
			}
		}
		if !slices.Equal(got, wantPages) {
			t.Errorf("%+v: Stretches(%d, %d) visited %d pages, want %d", r, from, to, len(got), len(wantPages))
		}
	}
}
