package engine

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// sessionWire is a destination's transport that counts each session's
// traffic on its own, as a real transport does (the fake pipe's
// counters span every session and count pages only): its Stats are the
// current session's pages plus 8 bytes of framing and the payload of
// each message either way; after Close, the closed session's totals.
// It keeps every closed session's totals (closed).
type sessionWire struct {
	transport.Transport
	mu     sync.Mutex
	base   transport.Stats // the pipe's counters when the session opened
	msgs   uint64          // message bytes of the session
	open   bool
	last   transport.Stats // the last closed session's totals
	closed []uint64        // BytesWire of each closed session, in order
}

func (w *sessionWire) Open(ctx context.Context, req transport.OpenRequest) error {
	if err := w.Transport.Open(ctx, req); err != nil {
		return err
	}
	st, err := w.Transport.Stats(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.base, w.msgs, w.open = st, 0, true
	return err
}

func (w *sessionWire) count(m transport.Message) {
	w.mu.Lock()
	w.msgs += 8 + uint64(len(m.Payload))
	w.mu.Unlock()
}

func (w *sessionWire) SendMessage(ctx context.Context, m transport.Message) error {
	err := w.Transport.SendMessage(ctx, m)
	if err == nil {
		w.count(m)
	}
	return err
}

func (w *sessionWire) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := w.Transport.RecvMessage(ctx)
	if err == nil {
		w.count(m)
	}
	return m, err
}

func (w *sessionWire) Stats(ctx context.Context) (transport.Stats, error) {
	st, err := w.Transport.Stats(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.open {
		return w.last, nil
	}
	return transport.Stats{BytesWire: st.BytesWire - w.base.BytesWire + w.msgs,
		PagesData: st.PagesData - w.base.PagesData, PagesZero: st.PagesZero - w.base.PagesZero}, err
}

func (w *sessionWire) Close() error {
	st, _ := w.Stats(context.Background())
	w.mu.Lock()
	if w.open {
		w.last, w.open = st, false
		w.closed = append(w.closed, st.BytesWire)
	}
	w.mu.Unlock()
	return w.Transport.Close()
}

func (w *sessionWire) sessions() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]uint64(nil), w.closed...)
}

// TestRefusedSessionWire: a destination that refuses another
// migration's session (its HELLO, through a transport that let it open)
// and then migrates its own source's reports the refused session's
// traffic as bytes_wire_refused, and bytes_wire as its own source's
// session alone, the figure the source reports too (and QEMU's for one
// migration). Before, the refused session's bytes were dropped: in
// neither figure.
func TestRefusedSessionWire(t *testing.T) {
	src, dst := twoRegions(t)
	for p := uint64(0); p < src.layout.Pages(); p += 5 {
		src.write(p, 0x55)
	}
	s, r := newPipe(src, dst)
	w := &sessionWire{Transport: r}
	d := newReopens(w)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rcv := startReceive(ctx, dst, d, Options{MigrationID: "job-a", Log: testLogger(t)})
	if _, err := Send(ctx, src, s, Options{MigrationID: "job-b"}); err == nil {
		t.Fatal("another migration's Send succeeded")
	}
	if err := d.listening(ctx, rcv.done); err != nil {
		_, rerr := rcv.wait()
		t.Fatalf("after another migration's HELLO: %v (Receive: %v)", err, rerr)
	}
	if _, err := Send(ctx, src, s, Options{MigrationID: "job-a"}); err != nil {
		t.Fatalf("its own source: %v", err)
	}
	rep, err := rcv.wait()
	if err != nil || rep.Status != StatusCompleted {
		t.Fatalf("Receive: %v (%s)", err, rep.Status)
	}
	each := w.sessions()
	t.Logf("sessions' bytes %v; report: bytes_wire %d, bytes_wire_refused %d", each, rep.BytesWire, rep.BytesWireRefused)
	if len(each) != 2 || each[0] == 0 {
		t.Fatalf("sessions' bytes %v: want the refused one's, then its own source's", each)
	}
	if rep.BytesWireRefused != each[0] {
		t.Errorf("bytes_wire_refused %d, want the refused session's %d", rep.BytesWireRefused, each[0])
	}
	if rep.BytesWire != each[1] {
		t.Errorf("bytes_wire %d, want its own source's session's %d alone", rep.BytesWire, each[1])
	}
}

// TestRefusedSessionWireFailed: a destination that refused another
// migration's session which wrote pages before its HELLO fails
// (waitAgain: its RAM may hold another guest's bytes) and reports that
// session's traffic once, as bytes_wire_refused: bytes_wire is this
// migration's alone, and no session of it ever opened. Before, the
// report asked the closed session's Stats again and counted its bytes
// in bytes_wire too.
func TestRefusedSessionWireFailed(t *testing.T) {
	src, dst := strangerGuests(t)
	s, r := newPipe(src, dst)
	w := &sessionWire{Transport: r}
	o := &openedOnce{Transport: w, opened: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rcv := startReceive(ctx, dst, o, Options{MigrationID: "job-a", Log: testLogger(t)})
	select { // the session's counters start at its Open: the stranger writes in it
	case <-o.opened:
	case <-ctx.Done():
		t.Fatal("the destination never opened its transport")
	}
	strangerWritesFirst(ctx, t, s, src.layout)
	failedOnStranger(t, rcv, dst)
	rep, _ := rcv.wait()
	each := w.sessions()
	t.Logf("sessions' bytes %v; report: bytes_wire %d, bytes_wire_refused %d", each, rep.BytesWire, rep.BytesWireRefused)
	if len(each) != 1 || each[0] == 0 {
		t.Fatalf("sessions' bytes %v: want the refused one's alone", each)
	}
	if rep.BytesWireRefused != each[0] {
		t.Errorf("bytes_wire_refused %d, want the refused session's %d", rep.BytesWireRefused, each[0])
	}
	if rep.BytesWire != 0 {
		t.Errorf("bytes_wire %d, want 0: no session of this migration opened (the refused one's %d counted twice)", rep.BytesWire, each[0])
	}
}

// openedOnce is a transport that closes opened once its first Open
// returned.
type openedOnce struct {
	transport.Transport
	once   sync.Once
	opened chan struct{}
}

func (o *openedOnce) Open(ctx context.Context, req transport.OpenRequest) error {
	err := o.Transport.Open(ctx, req)
	o.once.Do(func() { close(o.opened) })
	return err
}
