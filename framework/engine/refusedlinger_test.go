package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// landWrongAtCommit is the destination's transport spoiling a page owed
// at the switch that lands after the page check took every hash and
// before COMMIT is acted on: as COMMIT comes it touches the guest's
// pages in order, as a device thread of the paused VM would, until one
// is asked of the source; that page it spoils in the memfd before it
// reports it landed. The touch returns once the page is mapped, after
// the land check compared it; only then is COMMIT handed on, and the
// destination refuses it (receiver.commitRefused).
type landWrongAtCommit struct {
	transport.Transport
	ram     func() framework.Layout
	touch   func(p uint64)
	pages   uint64
	armed   atomic.Bool   // COMMIT came: spoil the next data run
	spoiled atomic.Uint64 // the page spoiled, +1 (0: none yet)
}

// RecvMessage implements transport.Transport.RecvMessage.
func (l *landWrongAtCommit) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := l.Transport.RecvMessage(ctx)
	if err != nil || m.Kind != msgCommit || !l.armed.CompareAndSwap(false, true) {
		return m, err
	}
	for p := uint64(0); p < l.pages && l.spoiled.Load() == 0 && ctx.Err() == nil; p++ {
		l.touch(p)
	}
	return m, nil
}

// Landed implements transport.Transport.Landed; the landed lane alone
// calls it.
func (l *landWrongAtCommit) Landed(ctx context.Context) ([]transport.PageRun, error) {
	runs, err := l.Transport.Landed(ctx)
	if err != nil || !l.armed.Load() || l.spoiled.Load() != 0 {
		return runs, err
	}
	for _, r := range runs {
		if r.Kind != transport.KindData || r.Count == 0 {
			continue
		}
		reg, off, _ := l.ram().Locate(r.First)
		b := make([]byte, 1)
		at := int64(reg.Offset+off) + 100
		if _, err := unix.Pread(reg.Fd, b, at); err != nil {
			return nil, err
		}
		b[0] ^= 0xff
		if _, err := unix.Pwrite(reg.Fd, b, at); err != nil {
			return nil, err
		}
		l.spoiled.Store(r.First + 1)
		break
	}
	return runs, err
}

// loseAbortAfterCommit is the source's transport whose connection dies
// with the destination's first ABORT after COMMIT in it: the ABORT is
// never read, and the source reconnects (recommit).
type loseAbortAfterCommit struct {
	transport.Transport
	committed, lost atomic.Bool
}

// SendMessage implements transport.Transport.SendMessage.
func (l *loseAbortAfterCommit) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgCommit {
		l.committed.Store(true)
	}
	return l.Transport.SendMessage(ctx, m)
}

// RecvMessage implements transport.Transport.RecvMessage.
func (l *loseAbortAfterCommit) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := l.Transport.RecvMessage(ctx)
	if err == nil && m.Kind == msgAbort && l.committed.Load() && l.lost.CompareAndSwap(false, true) {
		l.Transport.Close() // the connection dies with ABORT in it
		return transport.Message{}, transport.ErrClosed
	}
	return m, err
}

// TestPostcopyRefusedCommitAbortLost: both engines in post-copy with the
// page check; an owed page lands wrong on the destination after the
// check and before COMMIT is acted on, so the destination refuses
// COMMIT and answers ABORT, and that ABORT is lost with the connection.
// The destination, unanswered, listens for the source's RESUME and
// answers it with ABORT, as a destination that never got COMMIT does
// (pcRecv.uncommitted): the source resumes the VM at once, and the
// destination never ran it. Before, the destination sent its ABORT once
// and quit, and the source reconnected to nobody for its
// reconnect_timeout and ended handover-unknown, its copy paused.
func TestPostcopyRefusedCommitAbortLost(t *testing.T) {
	const reconnect = 10 * time.Second
	str := &loseAbortAfterCommit{}
	var lw *landWrongAtCommit
	var src *vmtest.VM
	start := time.Now()
	r, dst := bothEnginesWrappedOn(t,
		func(tr transport.Transport, v *vmtest.VM) transport.Transport { str.Transport, src = tr, v; return str },
		func(tr transport.Transport, dst *vmtest.VM) transport.Transport {
			lw = &landWrongAtCommit{Transport: tr, ram: dst.RAM, touch: func(p uint64) { dst.Page(p) }, pages: dst.Pages()}
			return lw
		},
		func(sopt, dopt *Options) { sopt.ReconnectTimeout, sopt.VerifyPages = reconnect, true })
	took := time.Since(start)
	t.Logf("source: %s (%s) %v\ndestination: %s (%s) %v", r.srep.Status, r.srep.Handover, r.serr, r.drep.Status,
		r.drep.Handover, r.derr)
	if lw.spoiled.Load() == 0 || !str.lost.Load() {
		t.Fatalf("page spoiled %v, ABORT after COMMIT lost %v: the test did not test it", lw.spoiled.Load() != 0, str.lost.Load())
	}
	if !errors.Is(r.derr, errCommitRefused) {
		t.Errorf("destination: %v; want COMMIT refused", r.derr)
	}
	if errors.Is(r.serr, ErrHandoverUnknown) {
		t.Errorf("source: %v; it never heard the refusal", r.serr)
	}
	abortHeard(t, r, dst, took, reconnect)
	if src.State() != vmtest.StateRunning || src.Counters().Resumes != 1 {
		t.Errorf("source VM %v (%+v): want running, resumed once", src.State(), src.Counters())
	}
}
