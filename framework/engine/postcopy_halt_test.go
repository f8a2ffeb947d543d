package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// haltFails is a destination VM whose Halt fails, as a VMM's does when
// it cannot be sure its vCPUs and device threads stopped (the reference
// VMM's, when a vCPU stays inside KVM_RUN): nothing of the VM is
// stopped.
type haltFails struct {
	*vmtest.VM
	err   error // Halt's error; errHaltInjected when nil
	halts atomic.Int32
	unset atomic.Int32 // Postcopy(nil) calls
}

// Postcopy implements framework.PostcopyTarget.
func (h *haltFails) Postcopy(t framework.Toucher) {
	if t == nil {
		h.unset.Add(1)
	}
	h.VM.Postcopy(t)
}

var errHaltInjected = errors.New("injected: vCPU 0 still runs")

// Halt implements framework.PostcopyTarget.
func (h *haltFails) Halt() error {
	h.halts.Add(1)
	if h.err != nil {
		return h.err
	}
	return errHaltInjected
}

// releaseNotHalted closes the userfaultfds kept open for guests that
// could not be halted (keepOpen), for a test that is done with its
// guest: the threads waiting on them wake, onto zeros.
func releaseNotHalted() {
	notHalted.mu.Lock()
	defer notHalted.mu.Unlock()
	for _, u := range notHalted.fds {
		u.Close()
	}
	notHalted.fds = nil
}

// TestPostcopyHaltFails: the source goes away after RUNNING and never
// comes back, while a thread of the destination's guest waits on a page
// only the source holds; post-copy breaks for good (reconnect_timeout)
// and the VMM's Halt fails. The waiting thread must go on waiting: it
// must not read the page as zeros (or as an older copy), as it would
// once the userfaultfd closed; Receive says the VM could not be halted
// and what to do (ErrNotHalted), and the userfaultfd stays open after it
// returned. Before, the failed Halt was only logged and the userfaultfd
// closed: the thread went on with a zero page where the guest's data
// was. A thread that first reaches a page the destination holds, once
// Receive returned, waits too: the fault loop that mapped held pages on
// their first touch is stopped, so only pages mapped before run on (what
// ErrNotHalted's error and docs/POSTCOPY.md say).
func TestPostcopyHaltFails(t *testing.T) {
	before := uffdOpen()
	s, vm, rcv, opt := pcSetup(t, vmtest.Options{})
	dst := &haltFails{VM: vm}
	opt.ReconnectTimeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := receiveAsync(ctx, dst, rcv, opt)
	never, stale := pcPages(s)
	const p = 10   // never sent, not free: only the source holds it
	const held = 1 // sent in the bulk pass, not stale, not free, not touched
	read, heldRead := make(chan []byte, 1), make(chan []byte, 1)
	heldStarted := false
	defer func() {
		releaseNotHalted() // the readers wake (onto zeros: the test is done with the guest)
		for _, c := range []struct {
			ch      chan []byte
			started bool
		}{{read, true}, {heldRead, heldStarted}} {
			if !c.started {
				continue
			}
			select {
			case <-c.ch:
			case <-time.After(10 * time.Second):
				t.Error("a reader still waits after the userfaultfd was closed")
			}
		}
	}()
	failed := runScript(func() {
		s.precopy(ctx, never, stale, false)
		s.send(ctx, msgCommit, nil)
		s.recv(ctx, msgRunning)
		go func() { read <- vm.Page(p) }() // a device thread reaching the page: Touch, then read
		// Its fault reached the fault service: the page is asked for
		// (and never answered here).
		for asked := false; !asked; {
			m, err := s.tr.RecvUrgent(ctx)
			if err != nil || m.Kind != msgRequest {
				t.Errorf("script: want REQUEST, got %s: %v", msgName(m.Kind), err)
				panic(errScript)
			}
			runs, _, _, err := decodeRuns(nil, m.Payload, s.pages, 0)
			must(t, err)
			for _, r := range runs {
				asked = asked || r.First <= p && p < r.First+r.Count
			}
		}
		s.tr.Close() // the source goes away for good
	})
	rep, err := wait()
	if failed {
		t.Fatalf("script failed; Receive: %v", err)
	}
	t.Logf("destination: %v", err)
	if dst.halts.Load() != 1 {
		t.Fatalf("Halt called %d times: the test did not test it", dst.halts.Load())
	}
	select {
	case got := <-read:
		read <- got // for the deferred wait
		t.Errorf("the thread waiting on page %d went on once post-copy broke and Halt failed, reading zeros: %v, "+
			"the source's bytes: %v: the guest ran on memory that is not its own", p,
			bytes.Equal(got, make([]byte, framework.PageSize)), bytes.Equal(got, s.src.Page(p)))
	case <-time.After(2 * time.Second): // it woke at once when it did (before Receive returned)
	}
	if !errors.Is(err, ErrPostcopyBroken) || !errors.Is(err, ErrNotHalted) || !strings.Contains(fmt.Sprint(err), errHaltInjected.Error()) ||
		rep.Status != StatusPostcopyBroken || rep.Handover != HandoverPostcopyBroken {
		t.Errorf("Receive: %v, status %s, handover %s; want postcopy-broken, wrapping ErrNotHalted and saying Halt's error",
			err, rep.Status, rep.Handover)
	}
	for _, want := range []string{"could not be halted", "end this destination VMM's process"} {
		if !strings.Contains(rep.Error, want) {
			t.Errorf("Report.Error %q does not say %q", rep.Error, want)
		}
	}
	if n := uffdOpen(); n != before+1 {
		t.Errorf("%d userfaultfds open after Receive, %d before; want the guest's kept open", n, before)
	}
	if n := dst.unset.Load(); n != 0 {
		t.Errorf("the Toucher was taken back (%d Postcopy(nil) calls): device code would reach missing pages "+
			"in user mode", n)
	}
	heldStarted = true
	go func() { heldRead <- vm.Page(held) }()
	select {
	case got := <-heldRead:
		heldRead <- got // for the deferred wait
		t.Errorf("a thread that first reached page %d (held here, never touched) after Halt failed went on "+
			"(the source's bytes: %v): only pages mapped before may run on", held, bytes.Equal(got, s.src.Page(held)))
	case <-time.After(time.Second): // a page mapped on the spot returns at once
	}
}

// TestPostcopyHaltErrorNotClassified: post-copy breaks for good (the
// source goes away after RUNNING) and the VMM's Halt fails with an error
// that wraps one of the engine's sentinels (a VMM that returns an error
// it got from the engine before, say). Receive's error says Halt's
// error, but does not wrap it: the migration is postcopy-broken, not
// what that error happens to wrap. Before, Halt's error was wrapped
// (%w), and status, which looks for ErrPostcopyCheck and
// ErrHandoverUnknown before ErrPostcopyBroken, reported the migration
// completed (a guest that lacks pages, perhaps still running) or
// handover-unknown.
func TestPostcopyHaltErrorNotClassified(t *testing.T) {
	defer releaseNotHalted()
	for _, inner := range []error{ErrPostcopyCheck, ErrHandoverUnknown} {
		t.Run(inner.Error(), func(t *testing.T) {
			s, vm, rcv, opt := pcSetup(t, vmtest.Options{})
			dst := &haltFails{VM: vm, err: fmt.Errorf("vmm: an earlier migration's end: %w", inner)}
			opt.ReconnectTimeout = 300 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			wait := receiveAsync(ctx, dst, rcv, opt)
			never, stale := pcPages(s)
			failed := runScript(func() {
				s.precopy(ctx, never, stale, false)
				s.send(ctx, msgCommit, nil)
				s.recv(ctx, msgRunning)
				s.tr.Close() // the source goes away for good
			})
			rep, err := wait()
			if failed {
				t.Fatalf("script failed; Receive: %v", err)
			}
			t.Logf("destination: %v", err)
			if dst.halts.Load() != 1 {
				t.Fatalf("Halt called %d times: the test did not test it", dst.halts.Load())
			}
			if rep.Status != StatusPostcopyBroken || rep.Handover != HandoverPostcopyBroken || errors.Is(err, inner) ||
				!errors.Is(err, ErrNotHalted) || !strings.Contains(rep.Error, "an earlier migration's end") {
				t.Errorf("status %s, handover %s, Receive: %v; want postcopy-broken, ErrNotHalted, Halt's error said "+
					"but not wrapped", rep.Status, rep.Handover, err)
			}
		})
	}
}
