package transport

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/ferryvm/ferry/framework/internal/plugproc"
	"golang.org/x/sys/unix"
)

// The urgent channel (transport API 4) carries the urgent path between
// the host and a plugin process: SendUrgent, RecvUrgent, SendPagesUrgent
// and Landed. It is one Unix stream socket per plugin process, created
// by the host (NewChannelPair) and handed to the plugin at start as the
// descriptor after the RAM files, so it is as private as they are.
//
// Why not gRPC, as for the other calls: a post-copy fault crosses the
// host/plugin boundary four times (the destination's request out, the
// source's request in, its page out, the destination's landed report
// in), and each gRPC call between two processes cost 100-180 µs on the
// reference machine against 27 µs for one write and one read on a
// socket pair (docs/BENCHMARKS.md, "Where a network fault's time goes").
// Here a call is one frame each way, and what the plugin receives is
// pushed to the host as it arrives instead of being long-polled.
//
// Frames, little endian: a 16-byte header, then the body.
//
//	0  u32  body length, at most chanMaxBody
//	4  u8   chanVersion
//	5  u8   type
//	6  u16  zero
//	8  u64  tag: a call's id (fSend, fSendPages, fCancel, fReply) or a
//	        session (fCredit, fUrgent, fLanded, fEnd)
//
// Host to plugin:
//
//	fSend       u32 message kind, payload          SendUrgent call
//	fSendPages  runs (below)                       SendPagesUrgent call
//	fCancel     empty                              the host gave up call tag
//	fCredit     u8 lane, u32 n                     n more pushes wanted on lane
//	fAnswer     u32 kind, u64 pages; the owed      Answer call (API 5)
//	            set's file rides along (SCM_RIGHTS)
//
// Plugin to host:
//
//	fReply      u32 status code (0: ok), text      the end of call tag
//	fUrgent     u32 message kind, payload          what RecvUrgent returns
//	fLanded     runs                               what Landed returns
//	fEnd        u8 lane, u32 status code, text     the lane's session ended
//	fHold       name (1 to MaxHeldName bytes)      keep this listening socket
//	            (API 7); the socket rides along     for the next process (Listen)
//	            (SCM_RIGHTS); tag 0
//
// A run is u64 first, u64 count, u32 kind (chanRunSize bytes). Status
// codes are the gRPC codes of the transport's error classes (classes),
// so an error means the same over the channel as over gRPC.
//
// Flow control: the plugin pushes on a lane (fUrgent or fLanded) only
// while it holds credit; the host's first call on a lane in a session
// grants chanWindow pushes, and it grants more as its callers consume
// them. So the host holds at most chanWindow unconsumed pushes per lane,
// and the plugin takes nothing off its transport that the host did not
// ask for: Landed records from the first call on, as the contract says.
const (
	chanVersion    = 3
	chanHeaderSize = 16
	chanRunSize    = 20
	// chanMaxBody bounds a frame's body: a full message plus its kind,
	// or a reply's text.
	chanMaxBody = MaxMessage + 4
	// chanMaxRuns bounds the runs of one frame (fSendPages, fLanded).
	chanMaxRuns = MaxLanded
	// chanWindow is how many pushes per lane the host lets the plugin
	// have outstanding.
	chanWindow = 64
	// chanMaxText bounds an error's text in fReply and fEnd.
	chanMaxText = 4 << 10
)

// chanType is a frame's type.
type chanType uint8

const (
	fSend chanType = 1 + iota
	fSendPages
	fCancel
	fCredit
	fReply
	fUrgent
	fLanded
	fEnd
	fAnswer
	fHold
)

// chanLane is a lane the plugin pushes on.
type chanLane uint8

const (
	laneUrgent chanLane = 0 // fUrgent: RecvUrgent
	laneLanded chanLane = 1 // fLanded: Landed
	numLanes            = 2
)

func (l chanLane) String() string {
	if l == laneUrgent {
		return "RecvUrgent"
	}
	return "Landed"
}

// chanFrame is one decoded frame; which fields are set depends on Type.
type chanFrame struct {
	Type chanType
	Tag  uint64
	Msg  Message   // fSend, fUrgent
	Runs []PageRun // fSendPages, fLanded
	Lane chanLane  // fCredit, fEnd
	N    uint32    // fCredit: pushes granted
	Code uint32    // fReply, fEnd: status code, 0 for none
	Text string    // fReply, fEnd: the error's text

	Pages uint64   // fAnswer: the guest's pages (Msg.Kind is the request kind)
	File  *os.File // fAnswer, fHold, as read: the descriptor that rode along, not encoded
}

// NewChannelPair returns the two ends of a new urgent channel: the host
// keeps host, and plugin is handed to the plugin process at start (and
// closed by the host once the process has it). Both are close-on-exec.
func NewChannelPair() (host, plugin *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("urgent channel: socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "urgent-channel-host"), os.NewFile(uintptr(fds[1]), "urgent-channel-plugin"), nil
}

// channelConn turns an end of the channel into a connection served by
// Go's network poller; f stays the caller's to close.
func channelConn(f *os.File) (*net.UnixConn, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("urgent channel: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("urgent channel: descriptor is a %T, not a Unix socket", c)
	}
	return uc, nil
}

// appendChanFrame appends f's encoding to b.
func appendChanFrame(b []byte, f chanFrame) []byte {
	start := len(b)
	b = append(b, make([]byte, chanHeaderSize)...)
	hdr := b[start:]
	hdr[4] = chanVersion
	hdr[5] = byte(f.Type)
	binary.LittleEndian.PutUint64(hdr[8:], f.Tag)
	switch f.Type {
	case fSend, fUrgent:
		b = binary.LittleEndian.AppendUint32(b, f.Msg.Kind)
		b = append(b, f.Msg.Payload...)
	case fSendPages, fLanded:
		for _, r := range f.Runs {
			b = binary.LittleEndian.AppendUint64(b, r.First)
			b = binary.LittleEndian.AppendUint64(b, r.Count)
			b = binary.LittleEndian.AppendUint32(b, uint32(r.Kind))
		}
	case fCredit:
		b = append(b, byte(f.Lane))
		b = binary.LittleEndian.AppendUint32(b, f.N)
	case fReply:
		b = binary.LittleEndian.AppendUint32(b, f.Code)
		b = append(b, clipText(f.Text)...)
	case fEnd:
		b = append(b, byte(f.Lane))
		b = binary.LittleEndian.AppendUint32(b, f.Code)
		b = append(b, clipText(f.Text)...)
	case fAnswer:
		b = binary.LittleEndian.AppendUint32(b, f.Msg.Kind)
		b = binary.LittleEndian.AppendUint64(b, f.Pages)
	case fHold:
		b = append(b, f.Text...)
	}
	binary.LittleEndian.PutUint32(b[start:], uint32(len(b)-start-chanHeaderSize))
	return b
}

func clipText(s string) string {
	if len(s) > chanMaxText {
		return s[:chanMaxText]
	}
	return s
}

// chanReader decodes frames from one end of the channel.
type chanReader struct {
	r   *bufio.Reader
	hdr [chanHeaderSize]byte
}

func newChanReader(r io.Reader) *chanReader { return &chanReader{r: bufio.NewReaderSize(r, 64<<10)} }

// next reads one frame. A clean end before a header is io.EOF; anything
// malformed wraps ErrProtocol, and the reader must not be used further.
func (cr *chanReader) next() (chanFrame, error) {
	if _, err := io.ReadFull(cr.r, cr.hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return chanFrame{}, fmt.Errorf("%w: urgent channel ended inside a frame header", ErrProtocol)
		}
		return chanFrame{}, err
	}
	n := binary.LittleEndian.Uint32(cr.hdr[0:])
	if v := cr.hdr[4]; v != chanVersion {
		return chanFrame{}, fmt.Errorf("%w: urgent channel frame version %d, want %d", ErrProtocol, v, chanVersion)
	}
	if binary.LittleEndian.Uint16(cr.hdr[6:]) != 0 {
		return chanFrame{}, fmt.Errorf("%w: urgent channel frame header has nonzero reserved bits", ErrProtocol)
	}
	if n > chanMaxBody {
		return chanFrame{}, fmt.Errorf("%w: urgent channel frame of %d bytes (at most %d)", ErrProtocol, n, chanMaxBody)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(cr.r, body); err != nil {
		return chanFrame{}, fmt.Errorf("%w: urgent channel ended inside a %d-byte frame: %v", ErrProtocol, n, err)
	}
	return decodeChanFrame(chanType(cr.hdr[5]), binary.LittleEndian.Uint64(cr.hdr[8:]), body)
}

// decodeChanFrame decodes a frame's body; body becomes the frame's
// payload (the caller must not reuse it).
func decodeChanFrame(t chanType, tag uint64, body []byte) (chanFrame, error) {
	f := chanFrame{Type: t, Tag: tag}
	bad := func(why string) (chanFrame, error) {
		return chanFrame{}, fmt.Errorf("%w: urgent channel frame type %d of %d bytes: %s", ErrProtocol, t, len(body), why)
	}
	switch t {
	case fSend, fUrgent:
		if len(body) < 4 {
			return bad("shorter than a message kind")
		}
		f.Msg = Message{Kind: binary.LittleEndian.Uint32(body), Payload: body[4:]}
	case fSendPages, fLanded:
		if len(body)%chanRunSize != 0 || len(body)/chanRunSize > chanMaxRuns {
			return bad(fmt.Sprintf("not a whole number of runs, or more than %d", chanMaxRuns))
		}
		f.Runs = make([]PageRun, len(body)/chanRunSize)
		for i := range f.Runs {
			r := body[i*chanRunSize:]
			f.Runs[i] = PageRun{First: binary.LittleEndian.Uint64(r), Count: binary.LittleEndian.Uint64(r[8:]),
				Kind: Kind(binary.LittleEndian.Uint32(r[16:]))}
		}
	case fCancel:
		if len(body) != 0 {
			return bad("a cancel has no body")
		}
	case fCredit:
		if len(body) != 5 || chanLane(body[0]) >= numLanes {
			return bad("want a lane and a count")
		}
		f.Lane, f.N = chanLane(body[0]), binary.LittleEndian.Uint32(body[1:])
	case fReply:
		if len(body) < 4 || len(body)-4 > chanMaxText {
			return bad("want a status code and a short text")
		}
		f.Code, f.Text = binary.LittleEndian.Uint32(body), string(body[4:])
	case fEnd:
		if len(body) < 5 || chanLane(body[0]) >= numLanes || len(body)-5 > chanMaxText {
			return bad("want a lane, a status code and a short text")
		}
		f.Lane, f.Code, f.Text = chanLane(body[0]), binary.LittleEndian.Uint32(body[1:]), string(body[5:])
	case fAnswer:
		if len(body) != 12 {
			return bad("want a message kind and a page count")
		}
		f.Msg.Kind, f.Pages = binary.LittleEndian.Uint32(body), binary.LittleEndian.Uint64(body[4:])
	case fHold:
		if len(body) == 0 || len(body) > plugproc.MaxHeldName || tag != 0 {
			return bad(fmt.Sprintf("want a name of 1 to %d bytes and tag 0", plugproc.MaxHeldName))
		}
		f.Text = string(body)
	default:
		return bad("unknown type")
	}
	return f, nil
}

// chanWriter writes frames to one end of the channel, one at a time.
type chanWriter struct {
	mu   sync.Mutex
	conn *net.UnixConn
	buf  []byte // under mu
}

// write sends one frame; an error means the other end is gone.
func (w *chanWriter) write(f chanFrame) error { return w.writeWith(f, nil) }

// writeWith sends one frame with file's descriptor attached to its first
// byte (SCM_RIGHTS) when file is not nil.
func (w *chanWriter) writeWith(f chanFrame, file *os.File) error {
	fd := -1
	if file != nil {
		fd = int(file.Fd())
	}
	return w.writeFD(f, fd)
}

// writeFD sends one frame with descriptor fd attached to its first byte
// (SCM_RIGHTS) when fd is not -1. A socket's descriptor is passed this
// way rather than through an *os.File: File.Fd would put the socket,
// which the descriptor shares with its net.Listener, in blocking mode.
func (w *chanWriter) writeFD(f chanFrame, fd int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = appendChanFrame(w.buf[:0], f)
	b := w.buf
	if cap(w.buf) > 1<<20 {
		w.buf = nil
	}
	if fd < 0 {
		_, err := w.conn.Write(b)
		return err
	}
	n, _, err := w.conn.WriteMsgUnix(b, unix.UnixRights(fd), nil)
	if err == nil && n < len(b) {
		_, err = w.conn.Write(b[n:])
	}
	return err
}

// maxChanFiles bounds the descriptors a reader holds that no frame has
// claimed yet.
const maxChanFiles = 4

// fdReader reads a channel end and keeps the descriptors that arrive
// with the bytes (fAnswer's, fHold's), in order, for the frame that claims them.
// A descriptor arrives with the first byte of its frame, so no later
// than the frame is decoded.
type fdReader struct {
	conn  *net.UnixConn
	oob   []byte
	files []*os.File
	err   error // a control message that could not be taken
}

func newFDReader(conn *net.UnixConn) *fdReader {
	return &fdReader{conn: conn, oob: make([]byte, unix.CmsgSpace(4*maxChanFiles))}
}

// Read implements io.Reader.
func (r *fdReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, oobn, flags, _, err := r.conn.ReadMsgUnix(p, r.oob)
	n = max(n, 0) // -1 with an error
	if n == 0 && err == nil {
		err = io.EOF // a stream socket's orderly end
	}
	if oobn > 0 || flags&unix.MSG_CTRUNC != 0 {
		r.take(r.oob[:oobn], flags)
	}
	if r.err != nil && n == 0 {
		return 0, r.err
	}
	return n, err
}

// take keeps the descriptors of a control message; too many, or a
// truncated message, break the channel (ErrProtocol).
func (r *fdReader) take(oob []byte, flags int) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil && flags&unix.MSG_CTRUNC != 0 {
		err = fmt.Errorf("control message truncated")
	}
	for _, m := range msgs {
		fds, ferr := unix.ParseUnixRights(&m)
		if ferr != nil {
			err = ferr
			continue
		}
		for _, fd := range fds {
			if len(r.files) >= maxChanFiles {
				unix.Close(fd)
				err = fmt.Errorf("more than %d descriptors no frame claimed", maxChanFiles)
				continue
			}
			unix.CloseOnExec(fd)
			r.files = append(r.files, os.NewFile(uintptr(fd), "urgent-channel-file"))
		}
	}
	if err != nil {
		r.err = fmt.Errorf("%w: urgent channel: %v", ErrProtocol, err)
	}
}

// file returns the oldest descriptor no frame claimed yet, nil if none.
func (r *fdReader) file() *os.File {
	if len(r.files) == 0 {
		return nil
	}
	f := r.files[0]
	r.files = r.files[1:]
	return f
}

// close closes the descriptors no frame claimed.
func (r *fdReader) close() {
	for _, f := range r.files {
		f.Close()
	}
	r.files = nil
}
