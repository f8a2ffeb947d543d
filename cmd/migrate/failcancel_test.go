package main

import (
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// The cancel of a failing destination after the resume of a
// handover-unknown source beside it (plan: the steps of
// verdictCancelDst): the resolve's bounds and guards around it.

// failingCase is a source handover-unknown in migration "a" beside a
// destination whose migration "a" still runs with its handover failed.
func failingCase(t *testing.T) *runCase {
	rc := newRunCase(t)
	rc.src.id, rc.dst.id = "a", "a"
	rc.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
	rc.dst.finishWith(-1, "", "")
	rc.dst.progress = engine.Progress{Phase: engine.PhaseState, Handover: engine.HandoverFailed}
	return rc
}

// TestResolveFailingPastWait: the resolve's wait has run out by the
// time it resumes the source (it waited beside a loaded destination,
// which then failed: an operator's cancel after LOADED; wait 0 here).
// The guest runs on the source and never on the failing destination,
// so the verdict is source, and the cancel is still sent, once: before,
// the resolve ended manual once the source ran (no cancel, "cannot be
// resolved", the running source's resume offered). A cancel that does
// not take is said, with the destination's reason.
func TestResolveFailingPastWait(t *testing.T) {
	for _, refused := range []bool{false, true} {
		t.Run(map[bool]string{false: "cancel taken", true: "cancel refused"}[refused], func(t *testing.T) {
			rc := failingCase(t)
			rc.dst.postcopy = refused // migrate-cancel is refused (held in post-copy)
			var out strings.Builder
			r := newResolver(fakeJob(rc.src, rc.dst), &out)
			r.wait = 0
			v, err := r.resolve()
			t.Logf("verdict %d, err %v, calls %s\n%s", v, err, rc.callList(), out.String())
			if v != verdictSource || err != nil || strings.Contains(out.String(), "cannot be resolved") {
				t.Errorf("verdict %d, err %v: want source, no manual resolution", v, err)
			}
			if got := strings.Join(rc.resolutions(), ","); got != "send resolve resume" {
				t.Errorf("resolutions %q: want the source resumed, once", got)
			}
			if !refused {
				rc.resumedThenCancelled(t)
				return
			}
			if got := strings.Join(rc.dst.actIDs(), ","); got != "migrate-cancel a" {
				t.Errorf("destination acts %q: want one cancel naming a", got)
			}
			if !strings.Contains(out.String(), "post-copy cannot be cancelled") || !strings.Contains(out.String(), "it never runs the guest") {
				t.Errorf("output does not say the cancel did not take, and why, or that the destination never runs the guest:\n%s", out.String())
			}
		})
	}
}

// TestResolveResumesSourceOnce: a source that answered its resume with
// running and still says handover-unknown when asked again (a VMM that
// does not keep what it confirmed) is resumed once, not in a loop
// without bound, and the failing destination beside it is not
// cancelled: the source was never seen running. Before, the resolve
// resumed it again at every query, with no wait and no deadline.
func TestResolveResumesSourceOnce(t *testing.T) {
	rc := failingCase(t)
	rc.src.resumeNotKept = true
	queries, loops := 0, make(chan struct{})
	rc.src.looked = func(*fakeVMM) { // under rc.src.mu
		if queries++; queries == 3 { // asked after a second resume
			close(loops)
		}
	}
	var out strings.Builder
	type result struct {
		v   verdict
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := newResolver(fakeJob(rc.src, rc.dst), &out).resolve()
		done <- result{v, err}
	}()
	select {
	case res := <-done:
		t.Logf("verdict %d, err %v, calls %s\n%s", res.v, res.err, rc.callList(), out.String())
		if res.v != verdictManual || res.err == nil {
			t.Errorf("verdict %d, err %v: want manual", res.v, res.err)
		}
	case <-loops:
		rc.src.kill() // the resolve then ends: the source cannot be asked
		rc.dst.kill()
		<-done
		t.Errorf("the source was resumed again after it confirmed: resolutions %q", rc.resolutions())
	}
	if got := strings.Join(rc.resolutions(), ","); got != "send resolve resume" || len(rc.dst.actIDs()) != 0 {
		t.Errorf("resolutions %q, destination acts %q: want the source resumed once, the destination not cancelled", got, rc.dst.actIDs())
	}
}

// TestResolveFailingReplacedAfterResume: between the query that found
// the destination failing and the one after the source's resume, the
// VMM at the destination's socket moved on to another migration (x,
// loaded: it may still act on its COMMIT). It is sent nothing, and the
// verdict is source: the guest runs there, confirmed. migrate names the
// migration it follows (run) or learns it from both sides
// (-resolve); before, -resolve then ended manual ("two different
// migrations ... resume neither by hand") though it had resumed the
// source.
func TestResolveFailingReplacedAfterResume(t *testing.T) {
	for _, id := range []string{"a", ""} {
		t.Run(map[string]string{"a": "run", "": "-resolve"}[id], func(t *testing.T) {
			rc := failingCase(t)
			rc.dst.looked = func(f *fakeVMM) { // after the first query, under f.mu
				f.id, f.progress.Handover = "x", engine.HandoverLoaded
			}
			var out strings.Builder
			r := newResolver(fakeJob(rc.src, rc.dst), &out)
			r.id = id
			v, err := r.resolve()
			t.Logf("verdict %d, err %v, calls %s\n%s", v, err, rc.callList(), out.String())
			if v != verdictSource || err != nil {
				t.Errorf("verdict %d, err %v: want source", v, err)
			}
			if got := strings.Join(rc.resolutions(), ","); got != "send resolve resume" || len(rc.dst.actIDs()) != 0 {
				t.Errorf("resolutions %q, destination acts %q: want the source resumed, nothing sent to the destination",
					got, rc.dst.actIDs())
			}
			if !strings.Contains(out.String(), "takes part in another migration (id x") {
				t.Errorf("output does not say the destination's VMM holds another migration, left alone:\n%s", out.String())
			}
		})
	}
}

// TestResolveConfirmedResumeIsSourceRan: a source that migrate resumed
// and that confirmed it (answered running) ran the guest after the
// migration began, as one a query found running did: when it says
// handover-unknown when asked again (a VMM that does not keep what it
// confirmed), beside the failing destination or beside one that no
// longer answers (a failed destination's VMM exits), manual says never
// to run the destination, and prints no resume for it. Before, the
// resume was not remembered: manual offered the destination's resume
// "only if ... the source never ran the guest after it paused", a
// condition migrate knew false, leaving the operator to notice the
// "now running" line above it.
func TestResolveConfirmedResumeIsSourceRan(t *testing.T) {
	for _, id := range []string{"a", ""} {
		for _, dstGone := range []bool{false, true} {
			name := map[string]string{"a": "run", "": "-resolve"}[id] + map[bool]string{false: "/destination failing", true: "/destination gone"}[dstGone]
			t.Run(name, func(t *testing.T) {
				rc := failingCase(t)
				rc.src.resumeNotKept = true
				if dstGone {
					rc.dst.looked = afterFirstLook(func(f *fakeVMM) { f.resolveDown = true })
				}
				var out strings.Builder
				r := newResolver(fakeJob(rc.src, rc.dst), &out)
				r.id = id
				v, err := r.resolve()
				t.Logf("verdict %d, err %v, calls %s\n%s", v, err, rc.callList(), out.String())
				if v != verdictManual || err == nil {
					t.Fatalf("verdict %d, err %v: want manual", v, err)
				}
				if got := strings.Join(rc.resolutions(), ","); got != "send resolve resume" {
					t.Errorf("resolutions %q: want the source resumed once", got)
				}
				wantSays(t, out.String(), "Never run the destination")
				wantSaysNone(t, out.String(), "run the destination with")
			})
		}
	}
}

// TestResolveResumesSourceOnceBesideFailed: as
// TestResolveResumesSourceOnce, but the failing destination has failed
// by the next look (as it does once it told its source): a source that
// confirmed its resume and says handover-unknown again is not resumed
// again beside it either (its row's own step is the source's resume),
// and the resolve ends manual. Before, the resume was sent again, and
// the verdict was source, exit 0, beside a source that had not kept
// the first.
func TestResolveResumesSourceOnceBesideFailed(t *testing.T) {
	for _, id := range []string{"a", ""} {
		t.Run(map[string]string{"a": "run", "": "-resolve"}[id], func(t *testing.T) {
			rc := failingCase(t)
			rc.src.resumeNotKept = true
			rc.dst.looked = afterFirstLook(func(f *fakeVMM) { f.done, f.status, f.side = true, engine.StatusFailed, api.SideFailed })
			var out strings.Builder
			r := newResolver(fakeJob(rc.src, rc.dst), &out)
			r.id = id
			v, err := r.resolve()
			t.Logf("verdict %d, err %v, calls %s\n%s", v, err, rc.callList(), out.String())
			if got := strings.Join(rc.resolutions(), ","); got != "send resolve resume" {
				t.Errorf("resolutions %q: want the source resumed once", got)
			}
			if v != verdictManual || err == nil {
				t.Fatalf("verdict %d, err %v: want manual", v, err)
			}
			wantSays(t, err.Error(), "it is not resumed twice")
		})
	}
}
