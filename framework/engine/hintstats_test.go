package engine

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/hint"
)

// TestHintStatuses: the report says what each provider did (hintstats.go):
// a provider that only returns when its deadline ends it is hung, never
// "ok" with no late requests; one that answers after its deadline is
// late; a crash carries its exit status and last error line.
func TestHintStatuses(t *testing.T) {
	waitCtx := func(ctx context.Context, _ hint.Request, _ func([]hint.Range) error) error {
		<-ctx.Done()
		return ctx.Err()
	}
	ignore := func(context.Context, hint.Request, func([]hint.Range) error) error {
		time.Sleep(10 * time.Second) // past the migration's end, however loaded the machine
		return nil
	}
	var lateCalls atomic.Int32
	late := func(context.Context, hint.Request, func([]hint.Range) error) error {
		if lateCalls.Add(1) == 1 {
			time.Sleep(120 * time.Millisecond) // deadline 50 ms
		}
		return nil
	}
	crash := func(context.Context, hint.Request, func([]hint.Range) error) error {
		return &hint.ExitError{Status: "exit status 3", LastError: "exiting on purpose in=Hints", Err: hint.ErrPluginGone}
	}
	quick := func(_ context.Context, _ hint.Request, emit func([]hint.Range) error) error {
		return emit([]hint.Range{{First: 0, Count: 4}})
	}
	for _, tc := range []struct {
		name  string
		hints func(context.Context, hint.Request, func([]hint.Range) error) error
		check func(t *testing.T, st HintStats)
	}{
		{"hung, honouring its context", waitCtx, func(t *testing.T, st HintStats) {
			if st.Status != HintHung || st.Hung == 0 || st.Hung+st.Cancelled != st.Requests || st.Late != 0 || st.Stage != StageHints || st.DeadlineMS != 50 {
				t.Errorf("%+v", st)
			}
		}},
		{"hung, ignoring its context", ignore, func(t *testing.T, st HintStats) {
			if st.Status != HintHung || st.Hung == 0 || st.Late != 0 {
				t.Errorf("%+v", st)
			}
		}},
		{"late", late, func(t *testing.T, st HintStats) {
			// The first answer is late; a loaded machine may make a later,
			// quick one late too (the deadline is 50 ms of wall clock).
			if st.Status != HintLate || st.Late < 1 || st.Late > st.Requests || st.Hung != 0 || st.SlowestMS < 120 {
				t.Errorf("%+v", st)
			}
		}},
		{"crashed", crash, func(t *testing.T, st HintStats) {
			if st.Status != HintCrashed || st.Stage != StageHints || st.ExitStatus != "exit status 3" ||
				st.LastError != "exiting on purpose in=Hints" || st.Requests != 1 || st.Hung != 0 {
				t.Errorf("%+v", st)
			}
		}},
		{"ok", quick, func(t *testing.T, st HintStats) {
			if st.Status != HintOK || st.Hung != 0 || st.Late != 0 || st.Stage != "" {
				t.Errorf("%+v", st)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := twoRegions(t)
			for p := uint64(0); p < src.layout.Pages(); p += 2 {
				src.write(p, 0x66)
			}
			other := &funcProvider{hints: quick}
			// Quick answers are on time, however late a loaded machine
			// runs them, only with a deadline well past 50 ms.
			deadline := 50 * time.Millisecond
			if tc.name == "ok" {
				deadline = 5 * time.Second
			}
			// 16 MiB/s: the bulk pass (3 MiB, ~190 ms) outlasts the 50 ms
			// deadline and the late answer (120 ms), so those calls end by
			// their deadline or their answer, not by the migration's end;
			// the quick answers under a 5 s deadline end by their answer.
			srep, serr, _, rerr := migrate(t, src, dst, Options{MaxPasses: 3, MaxDowntime: time.Nanosecond, VerifyPages: true, Bandwidth: 16 << 20,
				Hints: []HintSource{source("p", &funcProvider{hints: tc.hints}, deadline),
					source("other", other, 5*time.Second)}}, nil)
			if serr != nil || rerr != nil {
				t.Fatalf("send %v / receive %v", serr, rerr)
			}
			if st := srep.Hints[0]; st.Requests == 0 {
				t.Fatalf("never asked: %+v", st)
			}
			tc.check(t, srep.Hints[0])
			if st := srep.Hints[1]; st.Status != HintOK {
				t.Errorf("the other provider: %+v", st)
			}
		})
	}
}

// TestStrictCatchesFreeLie: a provider calls pages with data "free". The
// ordinary page check trusts it (the pages arrive as zeros and are not
// compared); the strict check compares them with the paused source, fails
// before COMMIT, and the source resumes while the destination never runs.
func TestStrictCatchesFreeLie(t *testing.T) {
	for _, strict := range []bool{false, true} {
		src, dst := twoRegions(t)
		for p := uint64(0); p < src.layout.Pages(); p++ {
			src.write(p, 0x55)
		}
		liar := &funcProvider{hints: func(ctx context.Context, req hint.Request, emit func([]hint.Range) error) error {
			return emit([]hint.Range{{First: 10, Count: 20}})
		}}
		srep, serr, _, rerr := migrate(t, src, dst, Options{VerifyPages: true, VerifyFree: strict, HintHold: time.Second,
			Hints: []HintSource{source("liar", liar, 100*time.Millisecond)}}, nil)
		if !strict {
			if serr != nil || rerr != nil || srep.PagesFree != 20 || srep.VerifyStrict {
				t.Fatalf("trusting check: send %v / receive %v, %+v", serr, rerr, srep)
			}
			if dst.mem[10*4096] != 0 {
				t.Fatal("a page skipped as free arrived with data")
			}
			continue
		}
		if serr == nil || rerr == nil || !strings.Contains(serr.Error(), "20 pages differ") ||
			!strings.Contains(serr.Error(), "first: page 10") || !strings.Contains(serr.Error(), "skipped on a free hint") {
			t.Fatalf("strict check: send %v / receive %v", serr, rerr)
		}
		if !srep.VerifyStrict || src.paused || src.resumed == 0 || dst.resumed != 0 {
			t.Errorf("strict: report %+v; source paused %v resumed %d; destination resumed %d",
				srep, src.paused, src.resumed, dst.resumed)
		}
	}
}
