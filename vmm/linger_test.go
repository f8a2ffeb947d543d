package vmm

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/api"
)

// A post-copy destination whose post-copy ended here (SETTLED, or BROKEN
// with the VM halted) only waits to tell its source how (linger.go).
// These tests drive the VMM's side of it through the Target calls the
// engine makes (migrationVM's Resume, Postcopy, Halt), with the
// migration's context cancel counted: the engine's own following of
// that cancel is proven in framework/engine
// (TestPostcopySettledLingerCancelled, TestPostcopyBrokenLingerCancelled).

// heldDestination is a destination VM whose state is loaded and whose
// incoming post-copy migration held (engine.Cancel refuses it:
// post-copy), as at COMMIT, before the engine's Resume: m is the VM as
// its engine sees it.
func heldDestination(t *testing.T) (v *VM, mg *migration, m migrationVM) {
	t.Helper()
	v = bareVM(StatePaused) // LoadState done
	v.ram = &guestRAM{}
	mg = &migration{}
	v.mig = mg
	own, err := v.claim(t.Context(), mg, transport.RoleReceive.String(), "", func() (bool, bool) { return false, true },
		func(State) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return v, mg, migrationVM{v: v, own: own}
}

// lingeringDestination is a heldDestination whose guest runs here (the
// engine's Resume at COMMIT); ends counts the cancels of the context its
// engine runs under.
func lingeringDestination(t *testing.T) (*VM, *migration, migrationVM, *atomic.Int32) {
	v, mg, m := heldDestination(t)
	var ends atomic.Int32
	m.own.linger.setEnd(func() { ends.Add(1) })
	if err := m.Resume(); err != nil { // COMMIT
		t.Fatal(err)
	}
	mg.progress(engine.Progress{Phase: engine.PhasePostcopy, Mode: engine.ModePostcopy, Handover: engine.HandoverPostcopy})
	return v, mg, m, &ends
}

// TestCancelEndsLingerAfterPostcopy: migrate-cancel on a post-copy
// destination still owed pages cancels nothing and says post-copy
// cannot be cancelled (as before); once post-copy ended here (every page
// arrived: Postcopy(nil); or it broke: Halt) it ends the engine's wait
// to tell the source, the migration's context, and says so. Before,
// engine.Cancel refused it and nothing ended that wait: the VMM refused
// migrate-incoming, and its exit waited, for up to about 6 minutes.
func TestCancelEndsLingerAfterPostcopy(t *testing.T) {
	for _, how := range []string{"settled", "broken"} {
		_, mg, m, ends := lingeringDestination(t)
		res, err := mg.cancelRunning(api.IDArgs{})
		if err != nil || res.Cancelled || !res.Postcopy || res.Why != errPostcopyNoCancel || ends.Load() != 0 {
			t.Fatalf("%s, pages still owed: %+v, %v, %d cancels; want refused, post-copy, nothing cancelled", how, res, err, ends.Load())
		}
		if how == "settled" {
			m.Postcopy(nil) // every page arrived; SETTLED goes out next
		} else {
			m.Halt() // post-copy broke for good; BROKEN goes out next
		}
		res, err = mg.cancelRunning(api.IDArgs{})
		if err != nil || res.Cancelled || !res.Postcopy || !strings.Contains(res.Why, "that wait is ended") {
			t.Errorf("%s: %+v, %v; want not cancelled, the wait to tell the source ended", how, res, err)
		}
		if ends.Load() != 1 {
			t.Errorf("%s: the migration's context was cancelled %d times, want once", how, ends.Load())
		}
	}
}

// TestShutdownEndsLingerAfterPostcopy: the VMM's shutdown stops a
// post-copy destination whose guest runs here, as before, and cuts the
// engine's wait to tell the source how post-copy ended: at once if it
// already ended, else only once it ends (nothing that still decides the
// guest's fate is cancelled). Before, nothing cut it: VM.Close, which
// waits for the migration, waited it out (up to about 6 minutes).
func TestShutdownEndsLingerAfterPostcopy(t *testing.T) {
	for _, ended := range []bool{true, false} {
		v, _, m, ends := lingeringDestination(t)
		v.state = StateRunning
		if ended {
			m.Postcopy(nil)
		}
		done := make(chan struct{})
		go func() { v.shutdown(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("ended %v: the shutdown did not stop the destination", ended)
		}
		if st := v.Status().State; st != StateStopped {
			t.Errorf("ended %v: VM %s after the shutdown, want stopped", ended, st)
		}
		want := int32(0)
		if ended {
			want = 1
		}
		if n := ends.Load(); n != want {
			t.Fatalf("ended %v: the migration's context was cancelled %d times by the shutdown, want %d", ended, n, want)
		}
		if !ended {
			m.Postcopy(nil) // post-copy ends after the shutdown: the telling is cut then
			if n := ends.Load(); n != 1 {
				t.Errorf("post-copy ended after the shutdown: the migration's context was cancelled %d times, want once", n)
			}
		}
	}
}

// TestLingerNotEndedBeforeCommit: a Postcopy(nil) before the guest ran
// here (a migration that failed before COMMIT) is no post-copy end: a
// migrate-cancel then is engine.Cancel's alone.
func TestLingerNotEndedBeforeCommit(t *testing.T) {
	var l lingerEnd
	n := 0
	l.setEnd(func() { n++ })
	l.postcopyUnset()
	if l.endNow() || n != 0 {
		t.Errorf("ended before the guest ran here (%d cancels)", n)
	}
}

// TestCloseEndsLingerAfterPostcopy: a post-copy destination whose VM
// ended by itself once its post-copy ended here (it broke: Halt stopped
// the VM; or every page arrived and the guest then powered off) is
// closed (VM.Close, as ferry-vmm does once Run returned) without
// waiting out the engine's telling of the source: Close ends it. Before,
// nothing did: Close waited for the migration, and the VMM did not exit
// for up to about 6 minutes, its control socket already closed.
func TestCloseEndsLingerAfterPostcopy(t *testing.T) {
	for _, how := range []string{"broken", "settled"} {
		v, _, m, _ := lingeringDestination(t)
		telling, endTelling := context.WithCancel(context.Background())
		t.Cleanup(endTelling)
		m.own.linger.setEnd(endTelling)
		v.plugins.Add(1) // the migration's goroutine, which Close waits for
		go func() {
			defer v.plugins.Done()
			<-telling.Done() // lingerToTell: until the source answers, or about 6 minutes
		}()
		if how == "broken" {
			m.Halt() // post-copy broke for good: the VM stops, Run returns
		} else {
			m.Postcopy(nil) // every page arrived
			v.Stop()        // the guest powered off
		}
		closed := make(chan error, 1)
		go func() { closed <- v.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("%s: Close: %v", how, err)
			}
		case <-time.After(5 * time.Second):
			endTelling()
			<-closed
			t.Fatalf("%s: Close had not returned 5 s after the VM stopped: it waited for the engine's telling of the source", how)
		}
	}
}

// TestCloseEndsTellingAfterFailedResume: a post-copy destination whose
// engine's Resume at COMMIT failed (the VM stopped, or the VMM's
// shutdown had cancelled the incoming migration) only tells its source
// ABORT, and VM.Close, as an embedder calls it, does not wait that out:
// it ends the migration's context, whether the Resume failed before
// Close or while Close waited. Before, the cut waited for a post-copy
// end that a guest that never ran here never has, and Close waited for
// the engine's telling (up to about 6 minutes).
func TestCloseEndsTellingAfterFailedResume(t *testing.T) {
	for _, tc := range []struct {
		name        string
		fail        func(v *VM)
		beforeClose bool // the Resume fails before Close, else while Close waits
	}{
		{"stopped, then Close", func(v *VM) { v.Stop() }, true},
		{"shutdown cancelled, then Close", func(v *VM) { v.incomingCancelled = true }, true},
		{"Close, then the Resume", func(v *VM) { v.Stop() }, false},
	} {
		v, mg, m := heldDestination(t)
		mg.progress(engine.Progress{Phase: engine.PhaseState, Mode: engine.ModePostcopy, Handover: engine.HandoverLoaded})
		telling, endTelling := context.WithCancel(context.Background())
		t.Cleanup(endTelling)
		m.own.linger.setEnd(endTelling)
		v.plugins.Add(1) // the migration's goroutine, which Close waits for
		go func() {
			defer v.plugins.Done()
			<-telling.Done() // tellAborted's lingerToTell: until the source answers, or about 6 minutes
		}()
		tc.fail(v)
		resume := func() {
			if err := m.Resume(); err == nil { // COMMIT
				t.Fatalf("%s: the engine's Resume at COMMIT succeeded", tc.name)
			}
		}
		if tc.beforeClose {
			resume()
		}
		closed := make(chan error, 1)
		go func() { closed <- v.Close() }()
		if !tc.beforeClose {
			awaitCut(t, &m.own.linger) // Close asked the cut, and waits for the migration
			select {
			case err := <-closed:
				t.Fatalf("%s: Close returned (%v) before the engine's Resume, with the migration still going", tc.name, err)
			default:
			}
			resume()
		}
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("%s: Close: %v", tc.name, err)
			}
		case <-time.After(5 * time.Second):
			endTelling()
			<-closed
			t.Fatalf("%s: Close had not returned 5 s after the failed Resume: it waited for the engine's telling of the source", tc.name)
		}
		// migrate-cancel still answers as before: the guest never ran here.
		if res, _ := mg.cancelRunning(api.IDArgs{}); res.Why != errResumeFailedNoCancel {
			t.Errorf("%s: migrate-cancel after the failed Resume: %+v", tc.name, res)
		}
	}
}

// awaitCut waits, at most 5 s, until a cut of l's telling was asked.
func awaitCut(t *testing.T, l *lingerEnd) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		cut := l.cut
		l.mu.Unlock()
		if cut {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no cut of the telling was asked within 5 s")
		}
	}
}
