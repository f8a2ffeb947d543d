package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// A post-copy source whose COMMIT went out but whose RUNNING never came
// asks, by reconnecting, whether its destination got COMMIT. Only the
// ABORT that answers its RESUME, from a destination of this migration
// that never got COMMIT (pcRecv.uncommitted), lets it resume its copy:
// any other ABORT comes from a destination that does not know whether
// COMMIT arrived (a fresh one at the same address), and resuming on it
// could run an older copy of a guest that already ran elsewhere.

// lateResume is a source's transport whose first RESUME reaches the
// destination too late: it goes out only once the destination sent its
// ABORT on that session (said), and is lost with the session the
// destination then closes (a RESUME read later than the destination's
// wait for a first message).
type lateResume struct {
	transport.Transport
	said <-chan struct{}
	done atomic.Bool
}

// SendMessage implements transport.Transport.SendMessage.
func (l *lateResume) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgResume && l.done.CompareAndSwap(false, true) {
		select {
		case <-l.said:
			return nil // written, never read: the destination closed first
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return l.Transport.SendMessage(ctx, m)
}

// abortSays is a destination's transport that closes said once it sent
// an ABORT, and keeps that ABORT's payload.
type abortSays struct {
	transport.Transport
	once    sync.Once
	said    chan struct{}
	payload []byte
}

// SendMessage implements transport.Transport.SendMessage.
func (a *abortSays) SendMessage(ctx context.Context, m transport.Message) error {
	err := a.Transport.SendMessage(ctx, m)
	if m.Kind == msgAbort {
		a.once.Do(func() { a.payload = m.Payload; close(a.said) })
	}
	return err
}

// TestPostcopyFreshDestinationAbortNotResumed: COMMIT reaches the
// destination, which runs the guest and dies before RUNNING goes out. A
// fresh destination (the engine's Receive, no migration ID, a transport
// that lets any authenticated source in) listens at the same address;
// the source's RESUME reaches it later than its switchover_timeout, so
// it closes the session as silent with an ABORT (waitAgain). That ABORT
// does not answer the RESUME: the source must not resume its paused copy
// (the guest ran on the dead destination) and ends handover-unknown
// after reconnect_timeout. Before, it took that ABORT for "never got
// COMMIT" and resumed the guest here: rewound.
func TestPostcopyFreshDestinationAbortNotResumed(t *testing.T) {
	src := dataGuest(t, 8*mib)
	allDirtyAfterBulk(src)
	said := &abortSays{said: make(chan struct{})}
	fresh := newFakeVM(t, regionsOf(src.layout)...)
	var freshErr error
	opt := Options{Postcopy: PostcopyAlways, SwitchoverTimeout: 5 * time.Second, ReconnectTimeout: 2 * time.Second}
	d, r := runPostcopy(t, src, opt, func(d *scriptDst) {
		d.wrapSrc = func(tr transport.Transport) transport.Transport { return &lateResume{Transport: tr, said: said.said} }
		d.freshRun = func(ctx context.Context) error {
			said.Transport = d.tr
			_, freshErr = Receive(ctx, fresh, said, Options{Credentials: d.req.Credentials, SwitchoverTimeout: 300 * time.Millisecond,
				Log: testLogger(t)})
			return nil
		}
	})
	select {
	case <-said.said:
	default:
		t.Fatalf("the fresh destination sent no ABORT: the test did not test it; send %v (%s), fresh destination %v", r.serr, r.srep.Status, freshErr)
	}
	if !strings.Contains(string(said.payload), "heard no HELLO") {
		t.Fatalf("the fresh destination's ABORT said %q, want its silent-session reason", said.payload)
	}
	if !errors.Is(r.serr, ErrHandoverUnknown) || r.srep.Handover != HandoverUnknown || r.srep.Status != StatusHandoverUnknown {
		t.Errorf("source: %v, handover %v, status %q; want handover-unknown", r.serr, r.srep.Handover, r.srep.Status)
	}
	if !src.paused || src.resumed != 0 {
		t.Errorf("source paused %v, resumed %d: it resumed a copy the destination that got COMMIT ran past", src.paused, src.resumed)
	}
	if d.vm.resumed != 1 || fresh.resumed != 0 {
		t.Errorf("the destination that got COMMIT ran the guest %d times, the fresh one %d", d.vm.resumed, fresh.resumed)
	}
}
