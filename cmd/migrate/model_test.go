package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The SPIN model of the handover and post-copy recovery
// (docs/model/handover.pml, docs/model/README.md) checked exhaustively:
// never two running copies, never lost unless the loss is one the design
// accepts, the source never resuming on its own after the destination may
// have acted on COMMIT, never after the destination ran the guest, a
// silent session never keeping the source's next reconnect out, a cancel
// of the source never leaving the handover unknown, with the page
// check (-DCHECK) a copy that the check found wrong never running, and a
// post-copy source never left handover-unknown by breaks alone or by its
// destination's own failures (its destination tells it ABORT, SETTLED or
// BROKEN until it answers). It
// lives beside plan because it transcribes plan, and a change to one
// should show in the other. Each mutant reintroduces a known-bad transition, and the model
// must then fail on the property the mutant names: the properties have
// teeth.

// modelFile is the model, from this package's directory.
const modelFile = "../../docs/model/handover.pml"

// modelRun is one verification: spin's -D flags and, for a mutant, the
// property it must violate.
type modelRun struct {
	name    string
	defines []string
	cflags  []string // pan's compile options (besides -DSAFETY, -DNOCLAIM, -DMEMLIM: see verify); -O2 for the long runs
	panArgs []string
	// violates is a mutant's: the property, "a" to "j"
	// (docs/model/README.md, "Properties"), whose check pan's first
	// error must be, as the model marks each check on its line
	// ("/* property (a) */"). Empty for the model itself, which must
	// verify.
	violates string
}

// panMemoryMiB caps pan's memory (-DMEMLIM): the machines that run
// this share their RAM; the largest run here (post-copy, 2 breaks,
// p_two) needs about 2.5 GiB.
const panMemoryMiB = 8000

// modelTools returns the paths of spin and gcc, or skips loudly.
func modelTools(t *testing.T) (spin, gcc string) {
	t.Helper()
	var missing []string
	spin, err := exec.LookPath("spin")
	if err != nil {
		missing = append(missing, "spin (apt-get install spin)")
	}
	gcc, err = exec.LookPath("gcc")
	if err != nil {
		missing = append(missing, "gcc")
	}
	if len(missing) > 0 {
		t.Skipf("MODEL NOT CHECKED: %s not on PATH: %s was not verified, and its mutants were not run",
			strings.Join(missing, " and "), modelFile)
	}
	return spin, gcc
}

var (
	panErrors = regexp.MustCompile(`errors: (\d+)`)
	panStates = regexp.MustCompile(`(\d+) states, stored`)
)

// verify runs spin -a, gcc and pan for r in a directory of its own and
// returns pan's output, its error count and the directory (the model,
// and the trail pan wrote for an error).
func verify(t *testing.T, spin, gcc string, r modelRun) (string, int, string) {
	t.Helper()
	src, err := os.ReadFile(modelFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "handover.pml"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string { return runIn(t, dir, name, args...) }
	run(spin, append(append([]string{}, r.defines...), "-a", "handover.pml")...)
	// gcc's default -O0: pan.c compiles in a quarter of -O2's time, and
	// the search runs 1.3 to 1.6 times as long, so -O0 is cheaper up to
	// about 10 M states (TestModel, the mutants: 48 s of CPU instead of
	// 87 s here); TestModelDeep's runs ask for -O2.
	cflags := append([]string{fmt.Sprintf("-DMEMLIM=%d", panMemoryMiB)}, r.cflags...)
	if !containsArg(r.panArgs, "-a") {
		// A safety run: assertions and, for the model itself, invalid
		// end states, which pan checks only without the never claim
		// (p_two has its own run with -a). A mutant keeps the claim:
		// it must fail on whichever property catches it.
		cflags = append(cflags, "-DSAFETY")
		if r.violates == "" {
			cflags = append(cflags, "-DNOCLAIM")
		}
	}
	run(gcc, append(cflags, "-o", "pan", "pan.c")...)
	start := time.Now()
	out := run("./pan", r.panArgs...)
	m := panErrors.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s: pan did not report its errors:\n%s", r.name, out)
	}
	var n int
	fmt.Sscan(m[1], &n)
	states := "?"
	if s := panStates.FindStringSubmatch(out); s != nil {
		states = s[1]
	}
	t.Logf("%s: %s states, %d errors, %v", r.name, states, n, time.Since(start).Round(time.Millisecond))
	if strings.Contains(out, "max search depth too small") {
		t.Errorf("%s: pan's -m is too small: the search was cut\n%s", r.name, out)
	}
	if strings.Contains(out, "out of memory") {
		t.Errorf("%s: pan ran out of its %d MiB (-DMEMLIM): the search is incomplete\n%s", r.name, panMemoryMiB, out)
	}
	if r.violates == "" && !strings.Contains(out, "invalid end states\t+") && !containsArg(r.panArgs, "-a") {
		t.Errorf("%s: pan did not check invalid end states\n%s", r.name, out)
	}
	return out, n, dir
}

// runIn runs name with args in dir and returns what it printed; it
// fails t if the command fails, but for pan, which exits 0 even with
// errors (a crash shows in what verify looks for).
func runIn(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil && name != "./pan" {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func containsArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

// TestModel verifies the model in pre-copy (two connection breaks) and
// in post-copy (one break, and none), each with a safety run
// (assertions and invalid end states) and a run of the LTL invariant
// p_two (never two running copies) with ./pan -a; and, with the page
// check (-DCHECK), pre-copy and post-copy with one break, safety runs
// only: their p_two runs would add over a minute (TestModelDeep runs
// them), and the safety runs assert (a) at every step that makes a copy
// run (src_runs, dst_runs). Post-copy with two and three breaks is
// TestModelDeep (make model).
func TestModel(t *testing.T) {
	spin, gcc := modelTools(t)
	if testing.Short() {
		t.Skip("-short: the SPIN model takes about half a minute")
	}
	verifyAll(t, spin, gcc, []modelRun{
		// The page check: HASHES, VERIFIED (clean or not), the
		// destination's rules while it is open (docs/model/README.md,
		// "The page check"). The longest run first: the parallel runs
		// start about in this order, two at a time on two cores, and
		// the others run beside it instead of after it.
		{name: "post-copy 1 break check", defines: []string{"-DCHECK", "-DPC=1", "-DBREAKS=1"}, panArgs: []string{"-m10000"}},
		{name: "pre-copy check", defines: []string{"-DCHECK", "-DPC=0"}, panArgs: []string{"-m10000"}},
		{name: "pre-copy", defines: []string{"-DPC=0"}, panArgs: []string{"-m10000"}},
		{name: "pre-copy LTL p_two", defines: []string{"-DPC=0"}, panArgs: []string{"-a", "-m10000"}},
		// Post-copy without connection breaks: crashes, the fault
		// service failing, cancels and operators.
		{name: "post-copy", defines: []string{"-DPC=1", "-DBREAKS=0"}, panArgs: []string{"-m10000"}},
		{name: "post-copy LTL p_two", defines: []string{"-DPC=1", "-DBREAKS=0"}, panArgs: []string{"-a", "-m10000"}},
		// With one break: the reconnects, uncommitted's ABORT, SETTLED
		// and BROKEN told after a break (docs/model/README.md).
		{name: "post-copy 1 break", defines: []string{"-DPC=1", "-DBREAKS=1"}, panArgs: []string{"-m10000"}},
		{name: "post-copy 1 break LTL p_two", defines: []string{"-DPC=1", "-DBREAKS=1"}, panArgs: []string{"-a", "-m10000"}},
	})
}

// TestModelDeep verifies post-copy with two and three connection
// breaks, and with the page check p_two in pre-copy and in post-copy
// with one break and post-copy with two breaks: about five minutes of
// pan and 2.6 GiB at most per run, so only when FERRY_MODEL_DEEP is set
// (make model).
func TestModelDeep(t *testing.T) {
	if os.Getenv("FERRY_MODEL_DEEP") == "" {
		t.Skip("FERRY_MODEL_DEEP is not set: post-copy with 2 and 3 breaks takes minutes (make model)")
	}
	spin, gcc := modelTools(t)
	verifyAll(t, spin, gcc, []modelRun{
		{name: "post-copy 2 breaks", defines: []string{"-DPC=1", "-DBREAKS=2"}, cflags: []string{"-O2"}, panArgs: []string{"-m10000"}},
		{name: "post-copy 2 breaks LTL p_two", defines: []string{"-DPC=1", "-DBREAKS=2"}, cflags: []string{"-O2"}, panArgs: []string{"-a", "-m10000"}},
		// Without the silent session (1 and 2 breaks have it): with it,
		// 43 M states and twice the time (docs/model/README.md).
		{name: "post-copy 3 breaks", defines: []string{"-DPC=1", "-DBREAKS=3", "-DSILENT=0"}, cflags: []string{"-O2", "-DCOLLAPSE"}, panArgs: []string{"-m10000"}},
		// The page check: p_two beside TestModel's safety runs, and
		// post-copy with two breaks.
		{name: "pre-copy check LTL p_two", defines: []string{"-DCHECK", "-DPC=0"}, cflags: []string{"-O2"}, panArgs: []string{"-a", "-m10000"}},
		{name: "post-copy 1 break check LTL p_two", defines: []string{"-DCHECK", "-DPC=1", "-DBREAKS=1"}, cflags: []string{"-O2"}, panArgs: []string{"-a", "-m10000"}},
		{name: "post-copy 2 breaks check", defines: []string{"-DCHECK", "-DPC=1", "-DBREAKS=2"}, cflags: []string{"-O2", "-DCOLLAPSE"}, panArgs: []string{"-m10000"}},
	})
}

// verifyAll runs each of runs (in parallel) and fails the ones that do
// not verify.
func verifyAll(t *testing.T, spin, gcc string, runs []modelRun) {
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			out, n, _ := verify(t, spin, gcc, r)
			if n != 0 || strings.Contains(out, "violated") {
				t.Errorf("%s: the model does not verify (replay the trail with spin -t -p):\n%s", r.name, out)
			}
		})
	}
}

// TestModelMutants: each known-bad transition makes the model fail, on
// the property the mutant names (docs/model/README.md, the table after
// "Properties"). A
// mutant that failed on another check (a deadlock it brings in, another
// property, the model's own assertion) would no longer show that its
// property catches the bug, so pan's first error is replayed and must
// be that property's.
func TestModelMutants(t *testing.T) {
	spin, gcc := modelTools(t)
	if testing.Short() {
		t.Skip("-short: the SPIN model takes about a minute")
	}
	for _, r := range []modelRun{
		// Pre-copy: COMMIT reached, the destination runs the guest,
		// RUNNING lost; the source resumes beside it.
		{name: "1 source resumes when RUNNING does not come", defines: []string{"-DMUTANT=1", "-DPC=0"}, violates: "a"},
		// The same with (a) and (d) left out at the source's resume
		// (-DNO_AD; the never claim and dst_runs keep (a)): (c) alone
		// catches it, at the resume, before the claim sees two copies.
		// (c) never fails first otherwise: src_runs checks (a) and (d)
		// before it, and the destination acts on COMMIT only as it runs
		// the guest (docs/model/README.md, "Properties").
		{name: "1 with (a) and (d) left out: (c)", defines: []string{"-DMUTANT=1", "-DPC=0", "-DNO_AD"}, violates: "c"},
		// The destination ran the guest and died: the source's copy is older.
		{name: "2 plan resumes the source beside an unreachable destination", defines: []string{"-DMUTANT=2", "-DPC=0"}, violates: "d"},
		{name: "3 resume not refused while a migration owns the VM", defines: []string{"-DMUTANT=3", "-DPC=0"}, violates: "a"},
		// 4 and 7 need a break: both sides alive, the connection gone.
		// The destination that ran the guest gives it up, the source
		// ends postcopy-broken: lost.
		{name: "4 post-copy destination answers RESUME after COMMIT with ABORT", defines: []string{"-DMUTANT=4", "-DPC=1", "-DBREAKS=1"}, violates: "b"},
		{name: "5 resolve resumes a post-copy destination that lacks pages", defines: []string{"-DMUTANT=5", "-DPC=1", "-DBREAKS=0"}, violates: "e"},
		// The source died after LOADED; the cancel gives up the only copy.
		{name: "6 plan cancels a destination beside an unreachable source", defines: []string{"-DMUTANT=6", "-DPC=0"}, violates: "b"},
		{name: "7 post-copy destination answers RESUME before COMMIT with MISSING", defines: []string{"-DMUTANT=7", "-DPC=1", "-DBREAKS=1"}, violates: "b"},
		// Caught only since ACCEPTED takes a destination's failure for
		// an accepted loss only on the source's word (d_word).
		{name: "8 destination gives the state up on its own after LOADED", defines: []string{"-DMUTANT=8", "-DPC=0"}, violates: "b"},
		// Caught only by property (f): the guest runs, with pages missing.
		{name: "9 post-copy destination completes without every page", defines: []string{"-DMUTANT=9", "-DPC=1", "-DBREAKS=0"}, violates: "f"},
		// The cancel alone, without a connection break, in either mode.
		{name: "10 source resumes on a cancel after COMMIT went out (pre-copy)", defines: []string{"-DMUTANT=10", "-DPC=0", "-DBREAKS=0"}, violates: "a"},
		{name: "10 source resumes on a cancel after COMMIT went out (post-copy, no heldCtx)", defines: []string{"-DMUTANT=10", "-DPC=1", "-DBREAKS=0"}, violates: "a"},
		// A silent session needs a reconnect: after a break, or the
		// destination's BROKEN. The source stays in its reconnect; (b)
		// fails too when it was recommitting, and the Judge checks (g)
		// first.
		{name: "11 destination waits on a silent session", defines: []string{"-DMUTANT=11", "-DPC=1", "-DBREAKS=1"}, violates: "g"},
		{name: "12 source waits for MISSING on a silent session", defines: []string{"-DMUTANT=12", "-DPC=1", "-DBREAKS=1"}, violates: "g"},
		// Pre-copy's hold (c565680): taken only after the COMMIT write,
		// caught by (a); not taken at all, the code before it, caught
		// only by (h).
		{name: "13 pre-copy source holds only after writing COMMIT", defines: []string{"-DMUTANT=13", "-DPC=0", "-DBREAKS=0"}, violates: "a"},
		{name: "14 pre-copy source without the hold: a cancel leaves it handover-unknown", defines: []string{"-DMUTANT=14", "-DPC=0", "-DBREAKS=0"}, violates: "h"},
		// dstSide's guard: only a failed handover is failing. Caught
		// with a break: a COMMIT delivered though its write failed
		// leaves the source handover-unknown beside a loaded
		// destination that then runs the guest.
		{name: "15 migrate takes a loaded destination for failing", defines: []string{"-DMUTANT=15", "-DPC=0", "-DBREAKS=1"}, violates: "a"},
		// Engine protocol 7's source: any ABORT after its RESUME is the
		// answer. A fresh destination at a killed one's address sends
		// one without the tag; caught by (d) without a break (the kill
		// ends the session that carried COMMIT).
		{name: "16 source resumes on a fresh destination's ABORT after COMMIT", defines: []string{"-DMUTANT=16", "-DPC=1", "-DBREAKS=0"}, violates: "d"},
		// The same source beside a destination that still runs the
		// guest (its RUNNING lost with a break, it waits for a RESUME)
		// while the source's dial reaches a fresh destination
		// elsewhere: two running copies, caught by (a) with (c) and (d)
		// left out (-DNO_CD). With a fresh destination only once the
		// destination is dead, as the model had it until 2026-12-07's
		// review, this run verifies (10.9 M states).
		{name: "16 two running copies", defines: []string{"-DMUTANT=16", "-DPC=1", "-DBREAKS=1", "-DNO_CD"}, violates: "a"},
		// The page check (-DCHECK). A destination that holds every page
		// stays handover-unknown on a break while the check is open:
		// failing there, beside a source killed during the check, gives
		// up the only copy (8 inside the window), in either mode.
		{name: "17 destination holding every page fails in the check window (pre-copy)", defines: []string{"-DCHECK", "-DMUTANT=17", "-DPC=0"}, violates: "b"},
		{name: "17 destination holding every page fails in the check window (post-copy)", defines: []string{"-DCHECK", "-DMUTANT=17", "-DPC=1", "-DBREAKS=0"}, violates: "b"},
		// And after VERIFIED began: 8 with the check, caught the same way.
		{name: "8 with the check: fails after VERIFIED", defines: []string{"-DCHECK", "-DMUTANT=8", "-DPC=0"}, violates: "b"},
		// The source commits only on a clean VERIFIED. These two take
		// the destination's guard out too (commitRefused: GUARD in the
		// model), which refuses a COMMIT after VBAD and would hide the
		// source's bug: the destination believes it, and a copy the
		// check found wrong runs: (i).
		{name: "18 source commits before VERIFIED", defines: []string{"-DCHECK", "-DMUTANT=18", "-DPC=0"}, violates: "i"},
		{name: "19 source commits on a verdict of differing pages", defines: []string{"-DCHECK", "-DMUTANT=19", "-DPC=0"}, violates: "i"},
		// A destination whose check found differing pages fails on a
		// break; handover-unknown, the manual step beside a source that
		// died runs it.
		{name: "21 destination with differing pages ends handover-unknown", defines: []string{"-DCHECK", "-DMUTANT=21", "-DPC=0"}, violates: "i"},
		// The window taken for open after VERIFIED began: the source,
		// whose COMMIT was lost, reconnects to nobody and ends
		// handover-unknown though no fault happened: (j). It verified
		// until (j) (docs/model/README.md, "The page check").
		{name: "20 destination takes the check for open after VERIFIED", defines: []string{"-DCHECK", "-DMUTANT=20", "-DPC=1", "-DBREAKS=1"}, violates: "j"},
		// The refused COMMIT (commitRefused, refuseCommit): an owed page
		// that landed differing before COMMIT is ignored, the wrong copy
		// runs: (i). Its ABORT sent once (giveUp, before aef5da6): the
		// source that read the end before it reconnects to nobody and
		// ends handover-unknown: (j).
		{name: "23 destination acts on COMMIT after an owed page landed differing", defines: []string{"-DCHECK", "-DMUTANT=23", "-DPC=1", "-DBREAKS=0"}, violates: "i"},
		{name: "24 refused COMMIT's ABORT sent once", defines: []string{"-DCHECK", "-DMUTANT=24", "-DPC=1", "-DBREAKS=1"}, violates: "j"},
		// Without the page check: LOADED lost, handover-unknown at once
		// (before lostAfterLoaded), and uncommitted's ABORT sent once
		// (before fba64a3): the source ends handover-unknown: (j).
		{name: "22 destination whose LOADED did not get out does not listen", defines: []string{"-DMUTANT=22", "-DPC=1", "-DBREAKS=1"}, violates: "j"},
		{name: "25 uncommitted's ABORT sent once", defines: []string{"-DMUTANT=25", "-DPC=1", "-DBREAKS=1"}, violates: "j"},
		// A post-copy destination that knows it will never run the VM
		// tells its ABORT and lingers, whatever made it fail (0dbff91,
		// af0ad13, c4fb038): each of these sends it once and ends, and
		// a source that read the end first reconnects to nobody and ends
		// handover-unknown. (j) no longer excuses the destination's own
		// failures (its fault service, its Resume): they verified before
		// (26, 27: the fault service excused it; 28 and 29 are new
		// transitions). No break needed: the destination's close is
		// the end the source reads.
		{name: "26 setupFailed's ABORT sent once", defines: []string{"-DMUTANT=26", "-DPC=1", "-DBREAKS=0"}, violates: "j"},
		{name: "27 failedEarly's ABORT sent once", defines: []string{"-DMUTANT=27", "-DPC=1", "-DBREAKS=0"}, violates: "j"},
		{name: "28 a failed Resume's ABORT sent once", defines: []string{"-DMUTANT=28", "-DPC=1", "-DBREAKS=0"}, violates: "j"},
		// With the page check: a VERIFIED whose send the fault service's
		// failure cut goes to uncommitted under the cut context (before
		// c4fb038): handover-unknown at once, no ABORT.
		{name: "29 VERIFIED cut by the fault service: uncommitted under the cut context", defines: []string{"-DCHECK", "-DMUTANT=29", "-DPC=1", "-DBREAKS=0"}, violates: "j"},
		// uncommitted listening under the receive loop's context, which
		// the fault service's failure cuts (before 2026-12-08: the gap
		// docs/model/README.md, "Found", names): a fault loop that ends
		// while it listens ends it at once, handover-unknown and no
		// ABORT, and the source whose COMMIT was lost with a break
		// reconnects to nobody.
		{name: "30 uncommitted listens under the loop's context", defines: []string{"-DMUTANT=30", "-DPC=1", "-DBREAKS=1"}, violates: "j"},
	} {
		r.panArgs = []string{"-m10000"}
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			out, n, dir := verify(t, spin, gcc, r)
			if n == 0 {
				t.Fatalf("mutant %s: the model still verifies: its properties miss this bug\n%s", r.name, out)
			}
			if n != 1 {
				t.Fatalf("mutant %s: pan reported %d errors, not its first alone\n%s", r.name, n, out)
			}
			got, where := violated(t, spin, dir, r, out)
			t.Logf("%s: property (%s) fails first, at %s", r.name, got, where)
			if got != r.violates {
				t.Errorf("mutant %s must violate property (%s), but pan's first error is %s, which is property %q: the mutation breaks the model in another way, or (%s) no longer catches it (replay: spin %s -t -p handover.pml)",
					r.name, r.violates, where, got, r.violates, strings.Join(r.defines, " "))
			}
		})
	}
}

var (
	// pan's first error: "pan:1: assertion violated  !(d_ran) (at depth 127)"
	panFirstError = regexp.MustCompile(`(?m)^pan:1: (.*) \(at depth \d+\)$`)
	// spin -t's replay of the trail: where the error is, and the
	// assertion that failed ("assert(!(d_ran))")
	spinErrorAt     = regexp.MustCompile(`(?m)^spin: (\S+):(\d+), Error: (.*)$`)
	spinFailedCheck = regexp.MustCompile(`(?m)^spin: text of failed assertion: assert\((.*)\)$`)
	// the model's mark on the line of a property's check, and its ltl formulas
	propertyMark = regexp.MustCompile(`/\* property \(([a-j])\) \*/`)
	ltlFormula   = regexp.MustCompile(`(?m)^ltl \w+ .*$`)
)

// violated replays the trail of pan's first error for r (spin -t, in
// dir, where verify left the model and the trail) and returns the
// property whose check failed, as the model marks it on the check's
// line, "" for a check no property marks (the model's own), and where
// the check is. A failure in the never claim is the ltl formula's: the
// model has one (with more, pan -N would have to name it, and this
// would have to learn which). It knows assertions only: a mutant run
// keeps the claim in, so pan checks no end states, and a safety run
// reports no cycles.
func violated(t *testing.T, spin, dir string, r modelRun, panOut string) (property, where string) {
	t.Helper()
	first := panFirstError.FindStringSubmatch(panOut)
	if first == nil || !strings.HasPrefix(first[1], "assertion violated") {
		t.Fatalf("%s: pan's first error is not an assertion's:\n%s", r.name, panOut)
	}
	replay := runIn(t, dir, spin, append(append([]string{}, r.defines...), "-t", "handover.pml")...)
	at, failed := spinErrorAt.FindStringSubmatch(replay), spinFailedCheck.FindStringSubmatch(replay)
	if at == nil || failed == nil {
		t.Fatalf("%s: replaying pan's trail reached no failed assertion:\n%s\npan:\n%s", r.name, replay, panOut)
	}
	noSpace := func(s string) string { return strings.Join(strings.Fields(s), "") }
	if noSpace(strings.TrimPrefix(first[1], "assertion violated")) != noSpace(failed[1]) {
		t.Fatalf("%s: the replay fails another assertion than pan:\npan: %s\nspin: %s", r.name, first[1], failed[0])
	}
	src, err := os.ReadFile(filepath.Join(dir, "handover.pml"))
	if err != nil {
		t.Fatal(err)
	}
	var line string
	switch at[1] {
	case "handover.pml":
		lines := strings.Split(string(src), "\n")
		n, err := strconv.Atoi(at[2])
		if err != nil || n < 1 || n > len(lines) {
			t.Fatalf("%s: the replay's error is at %s:%s, not a line of the model", r.name, at[1], at[2])
		}
		line, where = lines[n-1], "handover.pml:"+at[2]
	case "_spin_nvr.tmp": // spin -a's never claim, from the ltl formula
		claims := ltlFormula.FindAllString(string(src), -1)
		if len(claims) != 1 {
			t.Fatalf("%s: the never claim failed, and the model has %d ltl formulas: this test knows one", r.name, len(claims))
		}
		line, where = claims[0], "the never claim"
	default:
		t.Fatalf("%s: the replay's error is in %s, not the model:\n%s", r.name, at[1], replay)
	}
	where += " (" + strings.TrimSpace(line) + ")"
	marks := propertyMark.FindAllStringSubmatch(line, -1)
	switch len(marks) {
	case 0:
		return "", where
	case 1:
		return marks[0][1], where
	}
	t.Fatalf("%s: the failed check's line marks %d properties: %s", r.name, len(marks), where)
	return "", ""
}
