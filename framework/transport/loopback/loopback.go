package loopback

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

// Version is the implementation version Info reports.
const Version = "1.0.0"

var errNotOpen = errors.New("loopback: no open session")

// common attributes of both flavours.
var commonSchema = schema.Schema{
	{Name: "hello_timeout", Type: schema.TypeDuration, Default: int64(10 * time.Second),
		Doc: "how long Open waits for the peer's HELLO once connected"},
	{Name: "queue", Type: schema.TypeSize, Default: int64(64 << 20),
		Doc: "bytes of received messages held until RecvMessage takes them; more ends the session"},
	{Name: "zero_punch", Type: schema.TypeBool, Default: false,
		Doc: "zero pages by punching holes in the destination's RAM files instead of writing zeros"},
}

// options is a decoded configuration block.
type options struct {
	socket       string
	helloTimeout time.Duration
	queue        int
	punch        bool
}

// Transport is a loopback transport; see New and NewPipe.
type Transport struct {
	info   transport.Info
	schema schema.Schema
	dial   func(ctx context.Context, o options) (net.Conn, error) // RoleSend
	listen func(o options) (listener, error)                      // RoleReceive

	mu   sync.Mutex
	s    *session
	last transport.Stats // the last session's, after Close
}

var _ transport.Transport = (*Transport)(nil)

// New returns a transport that connects two processes through the unix
// socket named by the "socket" attribute.
func New() *Transport {
	schema := append(schema.Schema{{Name: "socket", Type: schema.TypeString, Required: true,
		Doc: "path of the unix socket: the receiver listens there, the sender dials it"}}, commonSchema...)
	return &Transport{info: transport.Info{Name: "loopback", Version: Version}, schema: schema, dial: dialSocket, listen: listenSocket}
}

// NewPipe returns two transports connected in process: whichever is
// opened with RoleReceive waits for the other, opened with RoleSend.
func NewPipe() (send, recv *Transport) {
	rv := make(chan net.Conn)
	dial := func(ctx context.Context, _ options) (net.Conn, error) { return dialPipe(ctx, rv) }
	listen := func(options) (listener, error) { return pipeListener{rv}, nil }
	info := transport.Info{Name: "pipe", Version: Version}
	return &Transport{info: info, schema: commonSchema, dial: dial, listen: listen},
		&Transport{info: info, schema: commonSchema, dial: dial, listen: listen}
}

// Info implements transport.Transport.Info.
func (t *Transport) Info(context.Context) (transport.Info, error) { return t.info, nil }

// Schema implements transport.Transport.Schema.
func (t *Transport) Schema(context.Context) (schema.Schema, error) {
	return append(schema.Schema(nil), t.schema...), nil
}

// Open implements transport.Transport.Open.
func (t *Transport) Open(ctx context.Context, req transport.OpenRequest) error {
	if t.session() != nil {
		return errors.New("loopback: already open; Close first")
	}
	if req.Role != transport.RoleSend && req.Role != transport.RoleReceive {
		return fmt.Errorf("%w: role %d", transport.ErrBadConfig, int(req.Role))
	}
	o, err := t.options(req.Config)
	if err != nil {
		return err
	}
	tlsCfg, err := req.Credentials.TLSConfig(req.Role)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	r, err := newRAM(req, o.punch)
	if err != nil {
		return err
	}
	connect := t.connectSend
	if req.Role == transport.RoleReceive {
		connect = t.connectReceive
	}
	conn, err := connect(ctx, req, tlsCfg, o)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.s = newSession(req.Role, conn, r, o.queue)
	t.mu.Unlock()
	return nil
}

func (t *Transport) options(c schema.Config) (options, error) {
	c, err := schema.Coerce(t.schema, c)
	if err != nil {
		return options{}, err
	}
	o := options{helloTimeout: time.Duration(c["hello_timeout"].(int64)), punch: c["zero_punch"].(bool)}
	o.socket, _ = c["socket"].(string)
	q := c["queue"].(int64)
	if q < transport.MaxMessage || q > 1<<40 || o.helloTimeout <= 0 {
		return options{}, fmt.Errorf("%w: queue must hold one message (%d bytes) and hello_timeout be positive", transport.ErrBadConfig, transport.MaxMessage)
	}
	o.queue = int(q)
	return o, nil
}

func (t *Transport) session() *session {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.s
}

// SendPages implements transport.Transport.SendPages: it reads the data
// pages and writes them to the connection before it returns.
func (t *Transport) SendPages(ctx context.Context, runs []transport.PageRun) error {
	s := t.session()
	if s == nil {
		return errNotOpen
	}
	if s.role != transport.RoleSend {
		return fmt.Errorf("%w: SendPages on the receiving side", transport.ErrNotSupported)
	}
	for _, r := range runs {
		if err := r.Check(s.ram.pages); err != nil {
			return err
		}
	}
	for _, r := range runs {
		step := r.Count
		if r.Kind == transport.KindData {
			step = pagesPerFrame
		}
		for first, left := r.First, r.Count; left > 0; {
			n := min(left, step)
			chunk := transport.PageRun{First: first, Count: n, Kind: r.Kind}
			if err := s.send(ctx, func(b []byte) ([]byte, error) { return s.appendRun(b, chunk) }); err != nil {
				return err
			}
			// A frame counts as queued once written (see urgent.go).
			s.bulkQueued.Add(1)
			first, left = first+n, left-n
		}
	}
	return nil
}

// appendRun builds the PAGES frame of one chunk, reading data pages.
func (s *session) appendRun(b []byte, r transport.PageRun) ([]byte, error) {
	b, err := s.appendRunBody(appendHeader(b, framePages), r)
	if err != nil {
		return nil, err
	}
	return finish(b), nil
}

// appendRunBody appends a PAGES body (of a PAGES or UPAGES frame),
// reading data pages.
func (s *session) appendRunBody(b []byte, r transport.PageRun) ([]byte, error) {
	b = appendRunFields(b, r)
	if r.Kind == transport.KindZero {
		s.pagesZero.Add(r.Count)
		return b, nil
	}
	n, size := len(b), int(r.Count*framework.PageSize)
	b = slices.Grow(b, size)[:n+size]
	if err := s.ram.read(r.First, b[n:]); err != nil {
		return nil, err
	}
	s.pagesData.Add(r.Count)
	return b, nil
}

// Flush implements transport.Transport.Flush.
func (t *Transport) Flush(ctx context.Context) error {
	s := t.session()
	if s == nil {
		return errNotOpen
	}
	if s.role != transport.RoleSend {
		return fmt.Errorf("%w: Flush on the receiving side", transport.ErrNotSupported)
	}
	s.flushSeq++
	seq := s.flushSeq
	start := time.Now()
	if err := s.send(ctx, func(b []byte) ([]byte, error) { return appendSeq(b, frameFlush, seq), nil }); err != nil {
		return err
	}
	if err := s.wait(ctx, func() bool { return s.acked >= seq }); err != nil {
		return err
	}
	s.mu.Unlock()
	s.rtt.Store(int64(time.Since(start)))
	return nil
}

// SendMessage implements transport.Transport.SendMessage.
func (t *Transport) SendMessage(ctx context.Context, m transport.Message) error {
	s := t.session()
	if err := sendable(s, m, "message"); err != nil {
		return err
	}
	return s.send(ctx, func(b []byte) ([]byte, error) { return appendMsg(b, m), nil })
}

// sendable checks m for SendMessage and SendUrgent; what names it in errors.
func sendable(s *session, m transport.Message, what string) error {
	switch {
	case s == nil:
		return errNotOpen
	case m.Kind == 0:
		return errors.New("loopback: message kind 0 is invalid")
	case len(m.Payload) > transport.MaxMessage:
		return fmt.Errorf("loopback: %s of %d bytes exceeds transport.MaxMessage (%d)", what, len(m.Payload), transport.MaxMessage)
	}
	return nil
}

// RecvMessage implements transport.Transport.RecvMessage. Messages that
// arrived before the session ended are still returned.
func (t *Transport) RecvMessage(ctx context.Context) (transport.Message, error) {
	s := t.session()
	if s == nil {
		return transport.Message{}, errNotOpen
	}
	return s.recvFrom(ctx, &s.msgs)
}

// recvFrom takes the oldest message of q (s.msgs or s.umsgs), waiting
// until there is one or the session ended.
func (s *session) recvFrom(ctx context.Context, q *[]transport.Message) (transport.Message, error) {
	if err := s.wait(ctx, func() bool { return len(*q) > 0 }); err != nil {
		return transport.Message{}, err
	}
	defer s.mu.Unlock()
	m := (*q)[0]
	(*q)[0] = transport.Message{}
	*q = (*q)[1:]
	s.queued -= len(m.Payload)
	return m, nil
}

// Stats implements transport.Transport.Stats; after Close it reports the
// last session's totals.
func (t *Transport) Stats(context.Context) (transport.Stats, error) {
	t.mu.Lock()
	s, last := t.s, t.last
	t.mu.Unlock()
	if s == nil {
		return last, nil
	}
	return s.stats(), nil
}

// Close implements transport.Transport.Close.
func (t *Transport) Close() error {
	t.mu.Lock()
	s := t.s
	t.s = nil
	t.mu.Unlock()
	if s == nil {
		return nil
	}
	s.close()
	t.mu.Lock()
	t.last = s.stats()
	t.mu.Unlock()
	return nil
}
