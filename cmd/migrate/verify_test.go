package main

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
)

// TestVerifyFlag: -verify-pages alone is the trusting check, =strict the
// strict one; anything else is refused.
func TestVerifyFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want verifyMode
		ok   bool
	}{
		{nil, verifyOff, true},
		{[]string{"-verify-pages"}, verifyOn, true},
		{[]string{"-verify-pages=true"}, verifyOn, true},
		{[]string{"-verify-pages=strict"}, verifyStrict, true},
		{[]string{"-verify-pages=false"}, verifyOff, true},
		{[]string{"-verify-pages=sometimes"}, verifyOff, false},
	} {
		fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var v verifyMode
		fs.Var(&v, "verify-pages", "")
		err := fs.Parse(tc.args)
		if (err == nil) != tc.ok || v != tc.want {
			t.Errorf("%q: %v (%v), want %v (ok %v)", tc.args, v.String(), err, tc.want, tc.ok)
		}
	}
}

// TestPrintHint: a hung provider never reads "ok"; a crash shows how the
// process ended and its last error line.
func TestPrintHint(t *testing.T) {
	var b strings.Builder
	printReport(&b, report{Report: engine.Report{PagesChecked: 10, PagesFree: 4, VerifyStrict: true, Hints: []engine.HintStats{
		{Name: "example-hang", Status: engine.HintHung, Stage: engine.StageHints, Requests: 3, Hung: 3, DeadlineMS: 100, SlowestMS: 101},
		{Name: "example-crash", Status: engine.HintCrashed, Stage: engine.StageConfigure, ExitStatus: "exit status 3",
			LastError: "exiting on purpose in=Configure status=3"},
	}}})
	for _, want := range []string{
		"hint example-hang hung in hints: 0 pages skipped, 0 ranges (0 stale, 0 invalid, 0 pages wrong), 3 requests (3 hung, 0 late; deadline 100 ms), slowest 101 ms\n",
		"hint example-crash crashed in configure: ",
		`process: exit status 3; last error: "exiting on purpose in=Configure status=3"`,
		"page check    10 pages equal; 4 free at switch-over: compared too (strict)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
