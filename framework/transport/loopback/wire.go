package loopback

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
)

// Frame types; 0 is invalid.
const (
	frameHello  = 1
	framePages  = 2
	frameFlush  = 3
	frameAck    = 4
	frameMsg    = 5
	frameBye    = 6
	frameUMsg   = 7 // an urgent message
	frameUPage  = 8 // urgent pages: after u64, then a PAGES body
	frameRefuse = 9 // the receiver waits for another migration (empty)
)

const (
	magic         = "FLBK"
	version       = 3   // 2: the urgent frames (transport API 3); 3: HELLO's tag and REFUSE (API 8)
	headerLen     = 5   // type u8, length u32
	pagesHeader   = 17  // first u64, count u64, kind u8
	pagesPerFrame = 256 // data pages in one frame: 1 MiB
	maxBody       = 8 + pagesHeader + pagesPerFrame*framework.PageSize
	helloFixed    = 11 + transport.TagSize      // magic, version, role, tag, regions
	maxRegions    = (maxBody - helloFixed) / 16 // regions in one HELLO
	frameBufSize  = headerLen + maxBody         // the largest frame
)

// readFrame reads one frame into buf (at least maxBody bytes) and returns
// its type and body, a slice of buf.
func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxBody {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes (limit %d)", transport.ErrProtocol, n, maxBody)
	}
	body := buf[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return h[0], body, nil
}

// appendHeader starts a frame in b; finish patches its length.
func appendHeader(b []byte, typ byte) []byte {
	return append(b, typ, 0, 0, 0, 0)
}

func finish(b []byte) []byte {
	binary.BigEndian.PutUint32(b[1:headerLen], uint32(len(b)-headerLen))
	return b
}

// hello is what each side says first.
type hello struct {
	role    transport.Role
	tag     transport.Tag // the sender's OpenRequest.Tag; the receiver answers with it
	regions [][2]uint64   // gpa, size
}

func appendHello(b []byte, h hello) []byte {
	b = appendHeader(b, frameHello)
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint16(b, version)
	b = append(b, byte(h.role))
	b = append(b, h.tag[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(h.regions)))
	for _, r := range h.regions {
		b = binary.BigEndian.AppendUint64(b, r[0])
		b = binary.BigEndian.AppendUint64(b, r[1])
	}
	return finish(b)
}

var errBadHello = fmt.Errorf("%w: bad HELLO", transport.ErrProtocol)

func parseHello(typ byte, body []byte) (hello, error) {
	if typ != frameHello || len(body) < 6 || string(body[:4]) != magic {
		return hello{}, fmt.Errorf("%w: the peer is not a loopback transport", errBadHello)
	}
	if v := binary.BigEndian.Uint16(body[4:]); v != version {
		return hello{}, fmt.Errorf("%w: version %d, want %d", errBadHello, v, version)
	}
	if len(body) < helloFixed {
		return hello{}, fmt.Errorf("%w: %d bytes", errBadHello, len(body))
	}
	h := hello{role: transport.Role(body[6])}
	copy(h.tag[:], body[7:])
	n := binary.BigEndian.Uint32(body[7+transport.TagSize:])
	if uint64(len(body)-helloFixed) != uint64(n)*16 {
		return hello{}, fmt.Errorf("%w: %d regions in %d bytes", errBadHello, n, len(body)-helloFixed)
	}
	for p := body[helloFixed:]; len(p) > 0; p = p[16:] {
		h.regions = append(h.regions, [2]uint64{binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:])})
	}
	return h, nil
}

func appendSeq(b []byte, typ byte, seq uint64) []byte {
	return finish(binary.BigEndian.AppendUint64(appendHeader(b, typ), seq))
}

func parseSeq(body []byte) (uint64, error) {
	if len(body) != 8 {
		return 0, fmt.Errorf("%w: FLUSH/ACK of %d bytes", transport.ErrProtocol, len(body))
	}
	return binary.BigEndian.Uint64(body), nil
}

// appendRunFields appends the run of a PAGES body; data pages follow.
func appendRunFields(b []byte, r transport.PageRun) []byte {
	b = binary.BigEndian.AppendUint64(b, r.First)
	b = binary.BigEndian.AppendUint64(b, r.Count)
	return append(b, byte(r.Kind))
}

// parsePages checks a PAGES body against a guest of pages pages.
func parsePages(body []byte, pages uint64) (transport.PageRun, []byte, error) {
	if len(body) < pagesHeader {
		return transport.PageRun{}, nil, fmt.Errorf("%w: PAGES of %d bytes", transport.ErrProtocol, len(body))
	}
	r := transport.PageRun{First: binary.BigEndian.Uint64(body), Count: binary.BigEndian.Uint64(body[8:]), Kind: transport.Kind(body[16])}
	data := body[pagesHeader:]
	if err := r.Check(pages); err != nil {
		return r, nil, fmt.Errorf("%w: %v", transport.ErrProtocol, err)
	}
	want := uint64(0)
	if r.Kind == transport.KindData {
		want = r.Count * framework.PageSize
	}
	if uint64(len(data)) != want || r.Count > pagesPerFrame && r.Kind == transport.KindData {
		return r, nil, fmt.Errorf("%w: PAGES %d+%d %v with %d bytes", transport.ErrProtocol, r.First, r.Count, r.Kind, len(data))
	}
	return r, data, nil
}

func appendMsg(b []byte, m transport.Message) []byte {
	return appendMsgOf(b, frameMsg, m)
}

func appendMsgOf(b []byte, typ byte, m transport.Message) []byte {
	b = binary.BigEndian.AppendUint32(appendHeader(b, typ), m.Kind)
	return finish(append(b, m.Payload...))
}

func parseMsg(body []byte) (transport.Message, error) {
	if len(body) < 4 || len(body)-4 > transport.MaxMessage || binary.BigEndian.Uint32(body) == 0 {
		return transport.Message{}, fmt.Errorf("%w: malformed MSG of %d bytes", transport.ErrProtocol, len(body))
	}
	return transport.Message{Kind: binary.BigEndian.Uint32(body), Payload: append([]byte(nil), body[4:]...)}, nil
}
