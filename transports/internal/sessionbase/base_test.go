package sessionbase

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
)

// TestAbortCode: only the peer's protocol error is its protocol
// violation; anything found here is this side's failure.
func TestAbortCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		want wire.Code
	}{
		{fmt.Errorf("read: %w", transport.ErrProtocol), wire.CodeProtocol},
		{errors.New("the host's urgent channel broke"), wire.CodeFailed},
		{fmt.Errorf("stream 1 lost: %w", transport.ErrClosed), wire.CodeFailed},
	} {
		if got := AbortCode(c.err); got != c.want {
			t.Errorf("AbortCode(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestEndFirstWins: the first End's error is the session's; Done closes
// once; a later End changes nothing.
func TestEndFirstWins(t *testing.T) {
	b := New(transport.RoleReceive)
	if b.Err() != nil {
		t.Fatalf("Err before End = %v", b.Err())
	}
	first, second := errors.New("first"), errors.New("second")
	if !b.End(first) {
		t.Fatal("the first End reported the session ended already")
	}
	if b.End(second) {
		t.Fatal("a second End reported it ended the session")
	}
	select {
	case <-b.Done():
	default:
		t.Fatal("Done open after End")
	}
	if b.Err() != first {
		t.Fatalf("Err = %v, want the first End's", b.Err())
	}
}

// TestEndTellsPushersOutsideLock: a pusher's ended hears the end once,
// and may ask Err from there (End holds no lock of Base's then).
func TestEndTellsPushersOutsideLock(t *testing.T) {
	b := New(transport.RoleReceive)
	end := errors.New("end")
	var heard []error
	if err := b.PushLanded("test transport", func([]transport.PageRun) {}, func(err error) { heard = append(heard, b.Err(), err) }); err != nil {
		t.Fatal(err)
	}
	if err := b.Umsgs.Attach(func(transport.Message) error { return nil }, func(err error) { heard = append(heard, b.Err(), err) }); err != nil {
		t.Fatal(err)
	}
	b.End(end)
	b.End(errors.New("later"))
	if len(heard) != 4 {
		t.Fatalf("pushers heard %v, want the end twice, once each", heard)
	}
	for _, err := range heard {
		if err != end {
			t.Fatalf("pushers heard %v, want %v", heard, end)
		}
	}
}

// TestRecvAfterEnd: messages received before the end are delivered,
// then the session's error.
func TestRecvAfterEnd(t *testing.T) {
	b := New(transport.RoleSend)
	for _, push := range []func(transport.Message) error{b.Msgs.Push, b.Umsgs.Push} {
		if err := push(transport.Message{Kind: 7}); err != nil {
			t.Fatal(err)
		}
	}
	end := errors.New("end")
	b.End(end)
	for _, recv := range []func(context.Context) (transport.Message, error){b.RecvMessage, b.RecvUrgent} {
		if m, err := recv(ctxT(t)); err != nil || m.Kind != 7 {
			t.Fatalf("first receive = %v, %v; want the message", m, err)
		}
		if _, err := recv(ctxT(t)); err != end {
			t.Fatalf("second receive = %v, want the session's error", err)
		}
	}
}

// TestLandedOnSender: Landed and PushLanded are the destination's.
func TestLandedOnSender(t *testing.T) {
	b := New(transport.RoleSend)
	want := "test transport: Landed on the sending side: " + transport.ErrNotSupported.Error()
	if _, err := b.WaitLanded(ctxT(t), "test transport"); !errors.Is(err, transport.ErrNotSupported) || err.Error() != want {
		t.Fatalf("WaitLanded = %v, want %q", err, want)
	}
	if err := b.PushLanded("test transport", nil, nil); !errors.Is(err, transport.ErrNotSupported) {
		t.Fatalf("PushLanded = %v, want ErrNotSupported", err)
	}
}

func TestSlot(t *testing.T) {
	sl := NewSlot[int]("test transport")
	if _, err := sl.Get(); err == nil || err.Error() != "test transport: no session is open" {
		t.Fatalf("Get of an empty slot = %v", err)
	}
	if _, err := sl.Sender("Flush"); err == nil || errors.Is(err, transport.ErrNotSupported) {
		t.Fatalf("Sender of an empty slot = %v, want Get's error", err)
	}
	if err := sl.CheckOpen(transport.RoleSend); err != nil || sl.Take() != nil {
		t.Fatalf("an empty slot: CheckOpen = %v, or it held something", err)
	}
	if err := sl.CheckOpen(transport.Role(9)); err == nil || err.Error() != "test transport: open with role "+transport.Role(9).String() {
		t.Fatalf("CheckOpen of role 9 = %v", err)
	}
	s := new(int)
	sl.Put(s, transport.RoleReceive)
	if got, err := sl.Get(); got != s || err != nil {
		t.Fatalf("Get = %p, %v; want %p", got, err, s)
	}
	if err := sl.CheckOpen(transport.RoleSend); err == nil || err.Error() != "test transport: a session is already open; Close it first" {
		t.Fatalf("CheckOpen with a session open = %v", err)
	}
	want := "test transport: Flush on the receiving side: " + transport.ErrNotSupported.Error()
	if _, err := sl.Sender("Flush"); !errors.Is(err, transport.ErrNotSupported) || err.Error() != want {
		t.Fatalf("Sender on a receiving session = %v, want %q", err, want)
	}
	if sl.Take() != s || sl.CheckOpen(transport.RoleSend) != nil || sl.Take() != nil {
		t.Fatal("Take did not empty the slot once")
	}
	sl.Put(s, transport.RoleSend)
	if got, err := sl.Sender("Flush"); got != s || err != nil {
		t.Fatalf("Sender on a sending session = %p, %v", got, err)
	}
}

func TestMsgHeader(t *testing.T) {
	hdr, err := MsgHeader("send message", transport.Message{Kind: 3, Payload: make([]byte, 5)})
	if err != nil || len(hdr) == 0 {
		t.Fatalf("MsgHeader = %x, %v", hdr, err)
	}
	if _, err := MsgHeader("send urgent", transport.Message{}); err == nil || !strings.HasPrefix(err.Error(), "send urgent: ") {
		t.Fatalf("MsgHeader of kind 0 = %v, want an error led by what", err)
	}
}
