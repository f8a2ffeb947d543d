package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/bitmap"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

// memfdRAM is guest RAM in a memfd, mapped, for fakes.
func memfdRAM(t testing.TB, size int) (int, []byte) {
	fd, err := unix.MemfdCreate("test-ram", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m); unix.Close(fd) })
	return fd, m
}

// fakeVM is a Source or Target over memfd RAM with a software dirty log:
// the test's "guest" writes through Write, which marks pages.
type fakeVM struct {
	t      testing.TB
	layout framework.Layout
	mem    []byte // whole memfd; regions are contiguous in it

	mu         sync.Mutex
	logging    bool
	dirty      *bitmap.Bitmap
	paused     bool
	resumed    int
	state      []byte
	loaded     []byte
	failSave   error
	failLoad   error
	failResume error       // the destination's vCPUs will not run
	onResume   func()      // runs after a Resume that succeeded
	onSync     func(n int) // called after each SyncDirtyLog (n-th)
	onPause    func()      // called in Pause, before the VM counts as paused
	onSave     func()      // called in SaveState, before it returns
	onLoad     func()      // called in LoadState, before it returns
	syncs      int
}

func newFakeVM(t testing.TB, regions ...[2]uint64) *fakeVM {
	var total uint64
	for _, r := range regions {
		total += r[1]
	}
	fd, m := memfdRAM(t, int(total))
	v := &fakeVM{t: t, mem: m, state: []byte("fake-state-v1")}
	var off uint64
	for _, r := range regions {
		v.layout = append(v.layout, framework.Region{GPA: r[0], Size: r[1], Fd: fd, Offset: off})
		off += r[1]
	}
	v.dirty = bitmap.New(v.layout.Pages())
	return v
}

func (v *fakeVM) RAM() framework.Layout { return v.layout }
func (v *fakeVM) Memory(i int) []byte {
	r := v.layout[i]
	return v.mem[r.Offset : r.Offset+r.Size]
}
func (v *fakeVM) StartDirtyLog() error { v.mu.Lock(); v.logging = true; v.mu.Unlock(); return nil }
func (v *fakeVM) StopDirtyLog() error  { v.mu.Lock(); v.logging = false; v.mu.Unlock(); return nil }
func (v *fakeVM) SyncDirtyLog(dst *bitmap.Bitmap) error {
	v.mu.Lock()
	dst.Or(v.dirty)
	v.dirty.ClearAll()
	v.syncs++
	n, hook := v.syncs, v.onSync
	v.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return nil
}
func (v *fakeVM) Pause(context.Context) error {
	if v.onPause != nil {
		v.onPause()
	}
	v.mu.Lock()
	v.paused = true
	v.mu.Unlock()
	return nil
}
func (v *fakeVM) Resume() error {
	v.mu.Lock()
	if v.failResume != nil {
		v.mu.Unlock()
		return v.failResume
	}
	v.paused = false
	v.resumed++
	onResume := v.onResume
	v.mu.Unlock()
	if onResume != nil {
		onResume()
	}
	return nil
}
func (v *fakeVM) SaveState(context.Context) ([]byte, error) {
	if v.onSave != nil {
		v.onSave()
	}
	return v.state, v.failSave
}
func (v *fakeVM) LoadState(_ context.Context, b []byte) error {
	if v.onLoad != nil {
		v.onLoad()
	}
	if v.failLoad != nil {
		return v.failLoad
	}
	v.loaded = append([]byte(nil), b...)
	return nil
}

// write is a guest write of fill to page p (page index), logged if on.
// A paused guest writes nothing.
func (v *fakeVM) write(p uint64, fill byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.paused {
		return
	}
	pg := v.mem[p*framework.PageSize : (p+1)*framework.PageSize]
	for i := range pg {
		pg[i] = fill
	}
	pg[0] = byte(p) // distinguishes pages with the same fill
	if v.logging {
		v.dirty.Set(p)
	}
}

// pipe is an in-process transport pair over channels: the receiving half
// writes pages straight into the destination's memory.
type pipe struct {
	toDst, toSrc chan transport.Message
	src, dst     *fakeVM
	mu           sync.Mutex
	stats        transport.Stats
	statsCalls   atomic.Int64                         // Stats calls, both ends
	failPages    func(runs []transport.PageRun) error // injected failure
	// filter sees every message before it travels (toDst: source →
	// destination); drop loses it, cut then breaks the connection.
	filter     func(toDst bool, m transport.Message) (drop, cut bool)
	sendErr    func(toDst bool, m transport.Message) error // non-nil: that send fails, nothing travels
	delivered  func(toDst bool, m transport.Message)       // runs as m is read, before its reader has it
	stallFlush func() bool                                 // true: this Flush blocks until its ctx ends
	slowFlush  func()                                      // runs inside every Flush (a transport still writing)
	stallOpen  bool                                        // the receiving Open waits for a source that never comes
	broken     chan struct{}                               // closed when the connection is cut
	cutOnce    sync.Once
}

func newPipe(src, dst *fakeVM) (*pipeEnd, *pipeEnd) {
	p := &pipe{toDst: make(chan transport.Message, 64), toSrc: make(chan transport.Message, 64), src: src, dst: dst,
		broken: make(chan struct{})}
	return &pipeEnd{p: p, send: true}, &pipeEnd{p: p}
}

// cut breaks the connection: every Send and Recv fails from now on.
func (p *pipe) cut() { p.cutOnce.Do(func() { close(p.broken) }) }

type pipeEnd struct {
	p      *pipe
	send   bool
	closed bool
}

func (e *pipeEnd) Info(context.Context) (transport.Info, error) {
	return transport.Info{Name: "pipe"}, nil
}
func (e *pipeEnd) Schema(context.Context) (schema.Schema, error) { return nil, nil }
func (e *pipeEnd) Open(ctx context.Context, req transport.OpenRequest) error {
	if (req.Role == transport.RoleSend) != e.send || len(req.Files) == 0 {
		return fmt.Errorf("pipe: bad open %+v", req.Role)
	}
	if !e.send && e.p.stallOpen {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}
func (e *pipeEnd) SendPages(_ context.Context, runs []transport.PageRun) error {
	p := e.p
	if p.failPages != nil {
		if err := p.failPages(runs); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range runs {
		lo, hi := r.First*framework.PageSize, (r.First+r.Count)*framework.PageSize
		if r.Kind == transport.KindZero {
			clear(p.dst.mem[lo:hi])
			p.stats.PagesZero += r.Count
			continue
		}
		copy(p.dst.mem[lo:hi], p.src.mem[lo:hi])
		p.stats.PagesData += r.Count
		p.stats.BytesWire += hi - lo
	}
	return nil
}
func (e *pipeEnd) Flush(ctx context.Context) error {
	if e.p.slowFlush != nil {
		e.p.slowFlush()
	}
	if e.p.stallFlush != nil && e.p.stallFlush() {
		<-ctx.Done() // a destination that stopped reading
		return ctx.Err()
	}
	return nil
}
func (e *pipeEnd) SendMessage(ctx context.Context, m transport.Message) error {
	ch := e.p.toSrc
	if e.send {
		ch = e.p.toDst
	}
	if e.p.sendErr != nil {
		if err := e.p.sendErr(e.send, m); err != nil {
			return err
		}
	}
	if e.p.filter != nil {
		if drop, cut := e.p.filter(e.send, m); drop {
			if cut {
				e.p.cut()
			}
			return nil // written, as far as the sender can tell
		}
	}
	select {
	case <-e.p.broken:
		return transport.ErrClosed
	default:
	}
	// A real transport has the payload on its way (or copied) when
	// SendMessage returns: the caller may reuse it (sendHashes does).
	m.Payload = bytes.Clone(m.Payload)
	select {
	case ch <- m:
		return nil
	case <-e.p.broken:
		return transport.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (e *pipeEnd) RecvMessage(ctx context.Context) (transport.Message, error) {
	ch := e.p.toDst
	if e.send {
		ch = e.p.toSrc
	}
	select {
	case <-e.p.broken:
		return transport.Message{}, transport.ErrClosed
	default:
	}
	select {
	case m := <-ch:
		if e.p.delivered != nil {
			e.p.delivered(!e.send, m)
		}
		return m, nil
	case <-e.p.broken:
		return transport.Message{}, transport.ErrClosed
	case <-ctx.Done():
		return transport.Message{}, ctx.Err()
	}
}
func (e *pipeEnd) Stats(context.Context) (transport.Stats, error) {
	e.p.statsCalls.Add(1)
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	return e.p.stats, nil
}
func (e *pipeEnd) Close() error { e.closed = true; return nil }

var errInjected = errors.New("injected failure")

// The urgent path (transport API 3) is post-copy's; the engine does not
// use it yet.
func (e *pipeEnd) SendUrgent(context.Context, transport.Message) error {
	return transport.ErrNotSupported
}
func (e *pipeEnd) RecvUrgent(context.Context) (transport.Message, error) {
	return transport.Message{}, transport.ErrNotSupported
}
func (e *pipeEnd) SendPagesUrgent(context.Context, []transport.PageRun) error {
	return transport.ErrNotSupported
}
func (e *pipeEnd) Landed(context.Context) ([]transport.PageRun, error) {
	return nil, transport.ErrNotSupported
}
