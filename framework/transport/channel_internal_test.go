package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/internal/errclass"
	"github.com/ferryvm/ferry/framework/internal/plugproc"
)

// chanPair is both ends of an urgent channel over impl, without gRPC:
// open starts a session on both ends as Open would.
type chanPair struct {
	c    *chanClient
	s    *chanServer
	exit chan struct{} // closing it is the plugin process exiting
}

func newTestChannel(t *testing.T, impl Transport) *chanPair {
	t.Helper()
	hc, pc := connPair(t)
	p := &chanPair{s: newChanServer(impl, pc), exit: make(chan struct{})}
	p.c = newChanClient(hc, errclass.NewProcess(p.exit, ErrPluginGone, classes), nil)
	go p.s.serve()
	return p
}

// connPair is a new channel's two ends as connections, closed when the
// test ends.
func connPair(t *testing.T) (host, plugin *net.UnixConn) {
	t.Helper()
	hostEnd, plugEnd, err := NewChannelPair()
	if err != nil {
		t.Fatal(err)
	}
	defer hostEnd.Close()
	defer plugEnd.Close()
	hc, err := channelConn(hostEnd)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := channelConn(plugEnd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hc.Close()
		pc.Close()
	})
	return hc, pc
}

func (p *chanPair) open(session uint64) {
	p.c.newSession(session)
	p.s.open(session)
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestChannelFrames: every frame type survives encoding and decoding.
func TestChannelFrames(t *testing.T) {
	runs := []PageRun{{First: 1 << 40, Count: 3, Kind: KindData}, {First: 7, Count: 1, Kind: KindZero}}
	for _, f := range []chanFrame{
		{Type: fSend, Tag: 1, Msg: Message{Kind: 5, Payload: []byte("page 42")}},
		{Type: fSend, Tag: 2, Msg: Message{Kind: 5, Payload: []byte{}}},
		{Type: fSendPages, Tag: 3, Runs: runs},
		{Type: fCancel, Tag: 4},
		{Type: fCredit, Tag: 9, Lane: laneLanded, N: chanWindow},
		{Type: fReply, Tag: 5, Code: 10, Text: "session closed by the peer"},
		{Type: fReply, Tag: 6},
		{Type: fUrgent, Tag: 9, Msg: Message{Kind: 7, Payload: bytes.Repeat([]byte{1}, MaxMessage)}},
		{Type: fLanded, Tag: 9, Runs: runs},
		{Type: fEnd, Tag: 9, Lane: laneUrgent, Code: 10, Text: "gone"},
		{Type: fAnswer, Tag: 10, Msg: Message{Kind: 11}, Pages: 1 << 33},
		{Type: fHold, Text: "[::]:7000"},
	} {
		got, err := newChanReader(bytes.NewReader(appendChanFrame(nil, f))).next()
		if err != nil {
			t.Fatalf("%+v: %v", f.Type, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(f) {
			t.Errorf("frame type %d: decoded %+v", f.Type, got)
		}
	}
}

// TestChannelRefusesMalformed: a header of another version, a body over
// the bound, a run list that is not whole runs, an unknown type: each
// is ErrProtocol, never a panic or a huge allocation.
func TestChannelRefusesMalformed(t *testing.T) {
	good := appendChanFrame(nil, chanFrame{Type: fLanded, Tag: 1, Runs: []PageRun{{1, 1, KindData}}})
	for name, mutate := range map[string]func(b []byte) []byte{
		"version":       func(b []byte) []byte { b[4] = chanVersion + 1; return b },
		"old version":   func(b []byte) []byte { b[4] = chanVersion - 1; return b }, // a version-6 plugin's
		"reserved":      func(b []byte) []byte { b[6] = 1; return b },
		"too long":      func(b []byte) []byte { b[0], b[1], b[2], b[3] = 0xff, 0xff, 0xff, 0x7f; return b },
		"runs":          func(b []byte) []byte { b[0]--; return b[:len(b)-1] },
		"type":          func(b []byte) []byte { b[5] = 99; return b },
		"lane":          func([]byte) []byte { return appendChanFrame(nil, chanFrame{Type: fCredit, Lane: numLanes}) },
		"truncated":     func(b []byte) []byte { return b[:len(b)-3] },
		"hold, no name": func([]byte) []byte { return appendChanFrame(nil, chanFrame{Type: fHold}) },
		"hold, tagged":  func([]byte) []byte { return appendChanFrame(nil, chanFrame{Type: fHold, Tag: 1, Text: "a:1"}) },
		"hold, long name": func([]byte) []byte {
			return appendChanFrame(nil, chanFrame{Type: fHold, Text: strings.Repeat("a", plugproc.MaxHeldName+1)})
		},
	} {
		_, err := newChanReader(bytes.NewReader(mutate(bytes.Clone(good)))).next()
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
}

// FuzzChannelFrame: whatever the bytes, next returns a frame or an
// error, and a frame it returns encodes back to the same bytes.
func FuzzChannelFrame(f *testing.F) {
	f.Add(appendChanFrame(nil, chanFrame{Type: fSend, Tag: 1, Msg: Message{Kind: 1, Payload: []byte("x")}}))
	f.Add(appendChanFrame(nil, chanFrame{Type: fLanded, Tag: 2, Runs: []PageRun{{1, 2, KindZero}}}))
	f.Add(appendChanFrame(nil, chanFrame{Type: fEnd, Tag: 3, Lane: laneLanded, Code: 14, Text: "gone"}))
	f.Add(appendChanFrame(nil, chanFrame{Type: fHold, Text: "127.0.0.1:7000"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := newChanReader(bytes.NewReader(b)).next()
		if err != nil {
			return
		}
		if enc := appendChanFrame(nil, fr); !bytes.Equal(enc, b[:len(enc)]) {
			t.Errorf("%x decoded to %+v, which encodes to %x", b, fr, enc)
		}
	})
}

// TestChannelCancelledLandedLosesNothing: a Landed call whose context
// ends returns, and the runs that arrive after it wait for the next.
func TestChannelCancelledLandedLosesNothing(t *testing.T) {
	release := make(chan []PageRun)
	p := newTestChannel(t, &Mock{LandedFunc: func(ctx context.Context) ([]PageRun, error) {
		select {
		case r := <-release:
			return r, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}})
	p.open(1)
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.c.landed(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Landed with nothing landed: %v", err)
	}
	want := []PageRun{{First: 9, Count: 2, Kind: KindData}}
	release <- want
	got, err := p.c.landed(tctx(t))
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Landed after a cancelled call: %v, %v; want %v", got, err, want)
	}
}

// TestChannelCredit: the plugin takes at most chanWindow answers off its
// transport that the host has not consumed, and more as it consumes.
func TestChannelCredit(t *testing.T) {
	var taken atomic.Int64
	p := newTestChannel(t, &Mock{RecvUrgentFunc: func(context.Context) (Message, error) {
		return Message{Kind: uint32(taken.Add(1))}, nil
	}})
	p.open(1)
	if m, err := p.c.recvUrgent(tctx(t)); err != nil || m.Kind != 1 {
		t.Fatalf("first RecvUrgent: %+v, %v", m, err)
	}
	// The plugin fills the window (a loaded machine may take a while),
	// then has 100 ms to take more than it may.
	for deadline := time.Now().Add(10 * time.Second); taken.Load() < chanWindow && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := taken.Load(); n != chanWindow {
		t.Fatalf("the plugin took %d messages with one consumed, want the window of %d", n, chanWindow)
	}
	for i := 2; i <= 3*chanWindow; i++ {
		m, err := p.c.recvUrgent(tctx(t))
		if err != nil || m.Kind != uint32(i) {
			t.Fatalf("RecvUrgent %d: %+v, %v", i, m, err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := taken.Load(); n > 4*chanWindow {
		t.Fatalf("the plugin took %d messages with %d consumed", n, 3*chanWindow)
	}
}

// TestChannelSessions: what an earlier session pushed is dropped, a new
// session starts unarmed, and a call waiting across the change returns.
func TestChannelSessions(t *testing.T) {
	var mu sync.Mutex
	kind := uint32(1)
	p := newTestChannel(t, &Mock{RecvUrgentFunc: func(ctx context.Context) (Message, error) {
		mu.Lock()
		k := kind
		mu.Unlock()
		if k == 1 {
			return Message{Kind: 1}, nil // session 1: a stream of 1s
		}
		<-ctx.Done()
		return Message{}, ctx.Err()
	}})
	p.open(1)
	if m, err := p.c.recvUrgent(tctx(t)); err != nil || m.Kind != 1 {
		t.Fatalf("session 1: %+v, %v", m, err)
	}
	mu.Lock()
	kind = 2
	mu.Unlock()
	p.open(2)
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if m, err := p.c.recvUrgent(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("session 2 returned %+v, %v: session 1's pushes leaked into it", m, err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := p.c.recvUrgent(tctx(t))
		waiting <- err
	}()
	time.Sleep(20 * time.Millisecond)
	p.c.newSession(0)
	select {
	case err := <-waiting:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("RecvUrgent across Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RecvUrgent blocked across Close")
	}
}

// TestChannelCallCancel: a SendUrgent the host gives up on is cancelled
// in the plugin, and the next call runs after it.
func TestChannelCallCancel(t *testing.T) {
	var calls atomic.Int64
	cancelled := make(chan struct{})
	p := newTestChannel(t, &Mock{SendUrgentFunc: func(ctx context.Context, m Message) error {
		if calls.Add(1) == 1 {
			<-ctx.Done()
			close(cancelled)
			return ctx.Err()
		}
		return nil
	}})
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.c.call(short, chanFrame{Type: fSend, Msg: Message{Kind: 1}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked SendUrgent: %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the plugin's SendUrgent was never cancelled")
	}
	if err := p.c.call(tctx(t), chanFrame{Type: fSend, Msg: Message{Kind: 2}}); err != nil {
		t.Fatalf("the next SendUrgent: %v", err)
	}
}

// TestChannelCallsOverlap: while call 1 runs, call 2 (sent after it)
// waits for it, and the cancel of call 1 that comes after call 2 is still
// read and applied; the calls run in the order they came. (A plugin that
// ran calls on the goroutine reading the channel, to save a hand-off,
// would fail here unless it handed reading on first.)
func TestChannelCallsOverlap(t *testing.T) {
	started := make(chan struct{})
	var mu sync.Mutex
	var ran []uint32
	p := newTestChannel(t, &Mock{SendUrgentFunc: func(ctx context.Context, m Message) error {
		if m.Kind == 1 {
			close(started)
			<-ctx.Done()
		}
		mu.Lock()
		ran = append(ran, m.Kind)
		mu.Unlock()
		return ctx.Err()
	}})
	first, cancel := context.WithCancel(tctx(t))
	firstErr := make(chan error, 1)
	go func() { firstErr <- p.c.call(first, chanFrame{Type: fSend, Msg: Message{Kind: 1}}) }()
	<-started
	secondErr := make(chan error, 1)
	go func() { secondErr <- p.c.call(tctx(t), chanFrame{Type: fSend, Msg: Message{Kind: 2}}) }()
	time.Sleep(50 * time.Millisecond) // call 2's frame goes out before the cancel
	cancel()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("call 1: %v", err)
	}
	select {
	case err := <-secondErr:
		if err != nil {
			t.Fatalf("call 2: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("call 2 never ran: the cancel of call 1 was not read while call 2 waited")
	}
	if err := p.c.call(tctx(t), chanFrame{Type: fSend, Msg: Message{Kind: 3}}); err != nil {
		t.Fatalf("call 3: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(ran, []uint32{1, 2, 3}) {
		t.Errorf("calls ran in the order %v, want [1 2 3]", ran)
	}
}

// TestChannelErrorClasses: an error keeps its class across the channel,
// on a call and at a lane's end.
func TestChannelErrorClasses(t *testing.T) {
	p := newTestChannel(t, &Mock{
		SendPagesUrgentFunc: func(context.Context, []PageRun) error { return fmt.Errorf("%w: runs outside RAM", ErrProtocol) },
		LandedFunc:          func(context.Context) ([]PageRun, error) { return nil, fmt.Errorf("%w: peer left", ErrClosed) },
	})
	p.open(1)
	if err := p.c.call(tctx(t), chanFrame{Type: fSendPages, Runs: []PageRun{{1, 1, KindData}}}); !errors.Is(err, ErrProtocol) {
		t.Errorf("SendPagesUrgent: %v, want ErrProtocol", err)
	}
	if _, err := p.c.landed(tctx(t)); !errors.Is(err, ErrClosed) || err.Error() != "transport session closed by the peer: peer left" {
		t.Errorf("Landed: %v, want ErrClosed with the plugin's text", err)
	}
}

// TestChannelPluginGone: when the plugin process exits, calls waiting on
// the channel return ErrPluginGone.
func TestChannelPluginGone(t *testing.T) {
	p := newTestChannel(t, &Mock{
		RecvUrgentFunc: func(ctx context.Context) (Message, error) { <-ctx.Done(); return Message{}, ctx.Err() },
		SendUrgentFunc: func(ctx context.Context, m Message) error { <-ctx.Done(); return ctx.Err() },
	})
	p.open(1)
	errs := make(chan error, 2)
	go func() { _, err := p.c.recvUrgent(tctx(t)); errs <- err }()
	go func() { errs <- p.c.call(tctx(t), chanFrame{Type: fSend, Msg: Message{Kind: 1}}) }()
	time.Sleep(20 * time.Millisecond)
	close(p.exit)
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrPluginGone) {
				t.Errorf("a call waiting when the plugin exited: %v, want ErrPluginGone", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a call still waits after the plugin exited")
		}
	}
}

// TestChannelCreditEnforced: a plugin that pushes beyond the credit it
// was granted breaks the channel (ErrProtocol) instead of growing the
// host's queue.
func TestChannelCreditEnforced(t *testing.T) {
	hc, pc := connPair(t)
	c := newChanClient(hc, errclass.NewProcess(make(chan struct{}), ErrPluginGone, classes), nil)
	c.newSession(1)
	go c.recvUrgent(tctx(t)) // grants the window
	f, err := newChanReader(pc).next()
	if err != nil || f.Type != fCredit || f.N != chanWindow {
		t.Fatalf("first frame from the host: %+v, %v; want a credit of %d", f, err, chanWindow)
	}
	w := chanWriter{conn: pc}
	for i := range chanWindow + 2 {
		if w.write(chanFrame{Type: fUrgent, Tag: 1, Msg: Message{Kind: uint32(i + 1)}}) != nil {
			break // the host hung up
		}
	}
	select {
	case <-c.dead:
		if !errors.Is(c.derr, ErrProtocol) {
			t.Errorf("channel ended with %v, want ErrProtocol", c.derr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the host took pushes beyond its credit")
	}
}

// pushMock is a Transport that pushes (Pusher): the test holds the sinks
// the channel armed and plays the transport's receiving goroutines.
type pushMock struct {
	Mock
	mu     sync.Mutex
	urgent []func(Message) error // one per PushUrgent, in order
	landed []func([]PageRun)
	ends   []func(error)
	armed  chan struct{} // a lane was armed

	pullLanded bool // PushLanded says ErrNotSupported: Landed is called
}

func newPushMock() *pushMock { return &pushMock{armed: make(chan struct{}, 8)} }

func (m *pushMock) PushUrgent(urgent func(Message) error, ended func(error)) error {
	m.mu.Lock()
	m.urgent, m.ends = append(m.urgent, urgent), append(m.ends, ended)
	m.mu.Unlock()
	m.armed <- struct{}{}
	return nil
}

func (m *pushMock) PushLanded(landed func([]PageRun), ended func(error)) error {
	if m.pullLanded {
		return ErrNotSupported
	}
	m.mu.Lock()
	m.landed, m.ends = append(m.landed, landed), append(m.ends, ended)
	m.mu.Unlock()
	m.armed <- struct{}{}
	return nil
}

// landedSink, urgentSink and endSink return the i-th sink the channel
// armed (another session may arm one meanwhile: read under mu).
func (m *pushMock) landedSink(i int) func([]PageRun) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.landed[i]
}

func (m *pushMock) urgentSink(i int) func(Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.urgent[i]
}

func (m *pushMock) endSink(i int) func(error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ends[i]
}

func (m *pushMock) waitArmed(t *testing.T) {
	t.Helper()
	select {
	case <-m.armed:
	case <-time.After(5 * time.Second):
		t.Fatal("the channel did not arm the lane")
	}
}

// TestChannelPushOrderAndCredit: with a pushing transport, what it hands
// over before and beyond the host's credit reaches the host in order,
// none of it lost and never past the credit (the host would end the
// channel), and the end comes after the last message.
func TestChannelPushOrderAndCredit(t *testing.T) {
	impl := newPushMock()
	p := newTestChannel(t, impl)
	p.open(1)
	first := make(chan Message, 1)
	go func() {
		m, _ := p.c.recvUrgent(tctx(t)) // the first call arms the lane
		first <- m
	}()
	impl.waitArmed(t)
	const n = 5 * chanWindow
	for i := 1; i <= n; i++ { // far more than the window, before the host takes more
		if err := impl.urgentSink(0)(Message{Kind: uint32(i)}); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	impl.endSink(0)(ErrClosed)
	if m := <-first; m.Kind != 1 {
		t.Fatalf("first message: kind %d, want 1", m.Kind)
	}
	for i := 2; i <= n; i++ {
		m, err := p.c.recvUrgent(tctx(t))
		if err != nil || m.Kind != uint32(i) {
			t.Fatalf("RecvUrgent %d: %+v, %v", i, m, err)
		}
	}
	if _, err := p.c.recvUrgent(tctx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("RecvUrgent after the last message: %v, want ErrClosed", err)
	}
}

// TestChannelPushLandedMerges: landed runs waiting for credit or for the
// writer go out merged, in order, and nothing of a closed session does.
func TestChannelPushLandedMerges(t *testing.T) {
	impl := newPushMock()
	p := newTestChannel(t, impl)
	p.open(1)
	got := make(chan []PageRun, 1)
	go func() {
		runs, _ := p.c.landed(tctx(t))
		got <- runs
	}()
	impl.waitArmed(t)
	var want []PageRun
	for i := range uint64(3 * chanWindow) {
		impl.landedSink(0)([]PageRun{{First: 10 + i, Count: 1, Kind: KindData}})
	}
	want = append(want, PageRun{First: 10, Count: 3 * chanWindow, Kind: KindData})
	impl.landedSink(0)([]PageRun{{First: 5, Count: 2, Kind: KindZero}})
	want = append(want, PageRun{First: 5, Count: 2, Kind: KindZero})
	var all []PageRun
	all = append(all, <-got...)
	for pages(all) < pages(want) {
		runs, err := p.c.landed(tctx(t))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, runs...)
	}
	if fmt.Sprint(merge(all)) != fmt.Sprint(want) {
		t.Fatalf("landed %v, want %v", merge(all), want)
	}
	// The window's worth may go one by one (the host takes them as they
	// come); what waits for credit goes merged.
	if len(all) > chanWindow+2 {
		t.Errorf("%d runs for %d pushes of adjacent pages: waiting runs were not merged", len(all), 3*chanWindow+1)
	}

	p.open(2) // session 1's sinks now go nowhere
	impl.landedSink(0)([]PageRun{{First: 99, Count: 1, Kind: KindData}})
	go func() {
		runs, _ := p.c.landed(tctx(t))
		got <- runs
	}()
	impl.waitArmed(t)
	impl.landedSink(1)([]PageRun{{First: 7, Count: 1, Kind: KindData}})
	if runs := <-got; fmt.Sprint(runs) != fmt.Sprint([]PageRun{{First: 7, Count: 1, Kind: KindData}}) {
		t.Fatalf("session 2's landed: %v; session 1's run must not leak into it", runs)
	}
}

func pages(runs []PageRun) (n uint64) {
	for _, r := range runs {
		n += r.Count
	}
	return n
}

// merge joins adjacent runs of one kind.
func merge(runs []PageRun) []PageRun {
	var out []PageRun
	for _, r := range runs {
		if n := len(out); n > 0 && out[n-1].Kind == r.Kind && out[n-1].First+out[n-1].Count == r.First {
			out[n-1].Count += r.Count
			continue
		}
		out = append(out, r)
	}
	return out
}

// TestChannelPushFlood: a peer that floods urgent messages the host does
// not take is refused (the transport then fails the session) once the
// waiting ones pass the bound.
func TestChannelPushFlood(t *testing.T) {
	impl := newPushMock()
	p := newTestChannel(t, impl)
	p.open(1)
	go p.c.recvUrgent(tctx(t))
	impl.waitArmed(t)
	var err error
	for i := 0; i < chanWindow+pushMaxMsgs+1 && err == nil; i++ {
		err = impl.urgentSink(0)(Message{Kind: 1})
	}
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("flooding pushes: %v, want ErrProtocol", err)
	}
}

// TestChannelPushOneLane: a transport that pushes one lane and not the
// other (ErrNotSupported) has the other pumped, as without a Pusher.
func TestChannelPushOneLane(t *testing.T) {
	impl := newPushMock()
	impl.pullLanded = true
	impl.LandedFunc = func(ctx context.Context) ([]PageRun, error) {
		return []PageRun{{First: 3, Count: 1, Kind: KindZero}}, nil
	}
	p := newTestChannel(t, impl)
	p.open(1)
	runs, err := p.c.landed(tctx(t))
	if err != nil || fmt.Sprint(runs) != fmt.Sprint([]PageRun{{First: 3, Count: 1, Kind: KindZero}}) {
		t.Fatalf("Landed of a transport that pushes only urgent messages: %v, %v", runs, err)
	}
	got := make(chan Message, 1)
	go func() {
		m, _ := p.c.recvUrgent(tctx(t))
		got <- m
	}()
	impl.waitArmed(t)
	if err := impl.urgentSink(0)(Message{Kind: 4}); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m.Kind != 4 {
		t.Fatalf("pushed message: %+v", m)
	}
}

// answerMock is a Mock that answers page requests itself.
type answerMock struct {
	Mock
	got chan *Owed
}

func (m *answerMock) Answer(_ context.Context, kind uint32, owed *Owed) error {
	if kind != 11 {
		return fmt.Errorf("kind %d", kind)
	}
	m.got <- owed
	return nil
}

// TestChannelAnswer: Answer sends the owed set's file along; the plugin
// maps the same memory (a page the host makes owed, the plugin takes,
// once), and the set ends with the session. A transport that does not
// answer says ErrNotSupported.
func TestChannelAnswer(t *testing.T) {
	m := &answerMock{got: make(chan *Owed, 1)}
	p := newTestChannel(t, m)
	p.open(1)
	host, err := NewOwed(1000)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	if err := p.c.callWith(tctx(t), chanFrame{Type: fAnswer, Msg: Message{Kind: 11}, Pages: 1000}, host.File()); err != nil {
		t.Fatalf("Answer over the channel: %v", err)
	}
	plug := <-m.got
	host.Set(500, 3)
	if got := plug.Take(0, 1000, nil); len(got) != 1 || got[0] != (PageRun{First: 500, Count: 3}) {
		t.Fatalf("the plugin took %v, want [500+3]", got)
	}
	if n := host.Count(); n != 0 {
		t.Fatalf("the host still sees %d pages owed", n)
	}
	p.open(2) // the next session: the plugin's mapping is closed
	host.Set(7, 1)
	if got := plug.Take(0, 1000, nil); len(got) != 0 {
		t.Fatalf("an ended session's set took %v", got)
	}
	if err := p.c.callWith(tctx(t), chanFrame{Type: fAnswer, Msg: Message{Kind: 11}, Pages: 999}, host.File()); !errors.Is(err, ErrProtocol) {
		t.Errorf("an owed set of another guest size: %v, want ErrProtocol", err)
	}

	q := newTestChannel(t, &Mock{})
	q.open(1)
	if err := q.c.callWith(tctx(t), chanFrame{Type: fAnswer, Msg: Message{Kind: 11}, Pages: 1000}, host.File()); !errors.Is(err, ErrNotSupported) {
		t.Errorf("Answer to a transport without it: %v, want ErrNotSupported", err)
	}
}
