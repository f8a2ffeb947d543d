package vmtest_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
	"github.com/ferryvm/ferry/transports/tcp"
)

// landWrongBeforeCommit is the destination's transport spoiling a page
// owed at the switch that lands after the page check took every hash
// and before COMMIT is acted on: as COMMIT comes (the source wrote it
// on a clean VERIFIED), it touches the guest's pages in order, as a
// device thread of the paused VM would, until one goes over the network;
// that page it spoils in the memfd before it reports it. The touch
// returns once the page is mapped, after the page check compared it;
// only then is COMMIT handed on.
type landWrongBeforeCommit struct {
	transport.Transport
	ram     func() framework.Layout
	touch   func(p uint64)
	pages   uint64
	armed   atomic.Bool   // COMMIT came: spoil the next data run
	spoiled atomic.Uint64 // the page spoiled, +1 (0: none yet)
}

func (l *landWrongBeforeCommit) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := l.Transport.RecvMessage(ctx)
	if err != nil || m.Kind != engine.MsgCommit {
		return m, err
	}
	l.armed.Store(true)
	for p := uint64(0); p < l.pages && l.spoiled.Load() == 0 && ctx.Err() == nil; p++ {
		l.touch(p)
	}
	return m, nil
}

// Landed is called by the destination's landed lane alone.
func (l *landWrongBeforeCommit) Landed(ctx context.Context) ([]transport.PageRun, error) {
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

// TestEmbedPostcopyCommitRefusedResumesSource: with the page check on,
// a page owed at the switch lands wrong on the destination (its
// transport spoils it) after the check took its hash and before
// COMMIT is acted on. The destination refuses COMMIT and answers ABORT;
// the source, which committed on a clean VERIFIED, resumes the guest: it
// runs on the source alone, never on the destination, and is never lost
// (both sides failed, the source's VM running, resumed once).
func TestEmbedPostcopyCommitRefusedResumesSource(t *testing.T) {
	needUffd(t)
	src := newVM(t, vmtest.Options{Free: free, WriteEvery: time.Millisecond, WriteBatch: 16})
	dst := newVM(t, vmtest.Options{Incoming: true, WriteEvery: time.Millisecond})
	sspec, dspec := postcopySpecs(t, engine.PostcopyAlways, 8<<20)
	lw := &landWrongBeforeCommit{Transport: tcp.New(nil), ram: dst.RAM, touch: func(p uint64) { dst.Page(p) }, pages: dst.Pages()}
	dspec.TransportInProcess, dspec.Transport.Path = lw, ""
	srep, serr, drep, derr := run(src, dst, sspec, dspec)
	t.Logf("source: %s %v\ndestination: %s %v", srep.Status, serr, drep.Status, derr)
	if lw.spoiled.Load() == 0 {
		t.Fatal("no page went over the network between COMMIT's arrival and its handling: nothing spoiled")
	}
	if derr == nil || !strings.Contains(derr.Error(), "COMMIT refused") || drep.Status != engine.StatusFailed {
		t.Fatalf("destination: %s %v; want failed, COMMIT refused", drep.Status, derr)
	}
	if dst.State() == vmtest.StateRunning || dst.Counters().Resumes != 0 {
		t.Errorf("destination VM %s (%+v): it ran", dst.State(), dst.Counters())
	}
	if serr == nil || errors.Is(serr, engine.ErrHandoverUnknown) || srep.Status != engine.StatusFailed ||
		!strings.Contains(serr.Error(), "runs here again") {
		t.Fatalf("source: %s %v; want failed, the VM resumed here", srep.Status, serr)
	}
	if src.State() != vmtest.StateRunning || src.Counters().Resumes != 1 {
		t.Errorf("source VM %s (%+v): want running, resumed once", src.State(), src.Counters())
	}
}
