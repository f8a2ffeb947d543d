package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// startPostcopyCase is a runCase whose source sends migration "a" to
// its destination (phase dirty), as migrate-start-postcopy finds it.
func startPostcopyCase(t *testing.T) *runCase {
	c := newRunCase(t)
	c.src.running, c.src.id, c.dst.id = true, "a", "a"
	c.src.progress = engine.Progress{Phase: engine.PhaseDirty}
	return c
}

// startPostcopy runs migrate -start-postcopy for c's job.
func (c *runCase) startPostcopy(t *testing.T) (code int, stdout, stderr string) {
	var out, errb strings.Builder
	code = realMain([]string{"-start-postcopy", "-config", c.writeJob(t)}, &out, &errb)
	t.Logf("exit %d\n%s%s", code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// TestStartPostcopyMain: migrate -start-postcopy -config JOB asks the
// job's source VMM for the migration it sends (naming its id), prints
// what happened, and says so when it was asked before; a VMM without a
// running migration is exit 1 with its reason.
func TestStartPostcopyMain(t *testing.T) {
	c := startPostcopyCase(t)
	sock := c.src.sock
	for i, want := range []string{
		"post-copy requested on the source " + sock + " (phase dirty): requested: the source switches to post-copy at its next batch of pages\n",
		"nothing to do on the source " + sock + " (phase dirty): post-copy was already requested; nothing changed\n",
	} {
		code, out, errb := c.startPostcopy(t)
		if code != 0 {
			t.Fatalf("call %d: exit %d: %s %s", i+1, code, out, errb)
		}
		if out != want {
			t.Errorf("call %d printed %q, want %q", i+1, out, want)
		}
	}
	if got := strings.Join(c.src.actIDs(), ","); got != "migrate-start-postcopy a,migrate-start-postcopy a" {
		t.Errorf("calls to the source %q, want two naming migration a", got)
	}

	c = newRunCase(t) // no migration has run at the source
	if code, out, errb := c.startPostcopy(t); code != 1 || !strings.Contains(errb, "no migration has run on this VM") || out != "" {
		t.Errorf("no migration: exit %d, stdout %q, stderr %q", code, out, errb)
	}
}

// TestStartPostcopyOnlyThisJob: migrate -start-postcopy switches only
// the job's own migration. Found by audit: it asked the source to switch
// whatever it ran. A source that sends another job's migration (the
// job's destination takes part in another one, or in none, or does not
// answer) is not asked; a source that moved on to another migration
// between migrate's look and its request refuses it (the request names
// the migration looked at), and that other migration is not switched.
// A migration without an id (started by hand at both sockets) is not
// asked either: "" matches nothing, and before, a request without an id
// switched whatever the source sent by then.
func TestStartPostcopyOnlyThisJob(t *testing.T) {
	for _, tc := range []struct {
		name  string
		set   func(c *runCase)
		asked bool   // the source was asked (and refused)
		say   string // in what migrate prints
	}{
		{"destination in another migration", func(c *runCase) { c.dst.id = "b" }, false, `takes part in migration "b"`},
		{"destination unreachable", func(c *runCase) { c.dst.kill() }, false, "cannot say it receives it"},
		{"migration without an id", func(c *runCase) { c.src.id, c.dst.id = "", "" }, false,
			"holds a migration without an id (send, migrating)"},
		{"source moved on", func(c *runCase) {
			c.src.looked = func(f *fakeVMM) { f.id = "b" } // another run's migration b, once migrate looked
		}, true, `migration "a" refused: this VMM holds migration "b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startPostcopyCase(t)
			tc.set(c)
			code, out, errb := c.startPostcopy(t)
			if code != 1 || out != "" || !strings.Contains(errb, tc.say) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errb, tc.say)
			}
			c.src.mu.Lock()
			switches := c.src.switches
			c.src.mu.Unlock()
			if acts := c.src.actIDs(); switches != 0 || (len(acts) != 0) != tc.asked {
				t.Errorf("source switched %d times, asked %q; want no switch, asked %v", switches, acts, tc.asked)
			}
		})
	}
}

// TestStartPostcopyByHandNamesTag: the request -start-postcopy prints
// for a source that sends a migration without an id (it asks nothing
// itself: nothing shows the migration to be this job's) names the tag
// fingerprint the source reported, to a VMM of control version
// api.TagsHonoured or later, as every act on such a migration does
// (TestResolveNamesTag, TestManualNamesTag): run by hand on a source
// that moved on to another migration by then (tagB), the line is
// refused and switches nothing; run while it still sends tagA, it
// switches. To an older VMM, which would refuse the field by name, and
// for a source that reports no fingerprint yet (before its bulk phase),
// no request is printed, but the source's migrate-status (until
// TestPrintedCommandsNamed, a request naming nothing); so for a
// malformed one, which is not said to be "none yet" (a fingerprint
// that never becomes nameable: review C). Found in the last closing
// note: the line named nothing on every VMM.
func TestStartPostcopyByHandNamesTag(t *testing.T) {
	for _, tc := range []struct {
		name    string
		control uint16
		tag     string // the source's fingerprint
		named   bool   // the line names tagA
	}{
		{"v3", api.TagsHonoured, tagA, true},
		{"v3, no fingerprint yet", api.TagsHonoured, "", false},
		{"v3, malformed fingerprint", api.TagsHonoured, "0123456789ABCDEF", false},
		{"v2", api.TagsHonoured - 1, tagA, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startPostcopyCase(t)
			c.src.id, c.dst.id = "", ""
			c.src.controlV, c.src.tag = tc.control, tc.tag
			code, out, errb := c.startPostcopy(t)
			line := controlLine(requestJSON("migrate-status", nil), c.src.sock)
			if tc.named {
				line = controlLine(requestJSON("migrate-start-postcopy", api.IDArgs{TagFingerprint: tagA}), c.src.sock)
			}
			if n := strings.Count(errb, socatUnix(c.src.sock)); n != 1 {
				t.Errorf("%d lines for the source, want one", n)
			}
			if code != 1 || out != "" || !strings.Contains(errb, "\n    "+line+"\n") {
				t.Fatalf("exit %d, stdout %q: want 1, nothing asked, and the line\n    %s", code, out, line)
			}
			if acts := c.src.actIDs(); len(acts) != 0 {
				t.Fatalf("source asked %q: want nothing asked", acts)
			}
			// Only a source that reports none is said to report none
			// yet (a malformed one is never named: review C).
			if yet := strings.Contains(errb, "no tag fingerprint yet"); yet != (tc.tag == "" && tc.control >= api.TagsHonoured) {
				t.Errorf("says the source reports no tag fingerprint yet: %v, for fingerprint %q", yet, tc.tag)
			}
			if _, err := exec.LookPath("socat"); err != nil || !tc.named {
				return
			}
			switches := func() int { c.src.mu.Lock(); defer c.src.mu.Unlock(); return c.src.switches }
			for _, run := range []struct {
				tag  string
				want int // switches after the line ran
			}{{tagB, 0}, {tagA, 1}} {
				c.src.mu.Lock()
				c.src.tag = run.tag
				c.src.mu.Unlock()
				b, err := exec.Command("sh", "-c", line).CombinedOutput()
				t.Logf("source sends %s: %s: %v %s", run.tag, line, err, b)
				if got := switches(); err != nil || got != run.want {
					t.Errorf("the line run beside a source that sends %s: %d switches, want %d", run.tag, got, run.want)
				}
			}
		})
	}
}

// TestHelp: -h and -help are a question, not a mistake: exit 0, and the
// answer shows every command form as well as every flag. Before, they
// exited 2 and printed the flags alone. An unknown flag is still a
// usage error (2), with the same text.
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{{[]string{"-h"}, 0}, {[]string{"-help"}, 0}, {[]string{"-no-such-flag"}, 2}} {
		var out, errb strings.Builder
		code := realMain(tc.args, &out, &errb)
		for _, want := range []string{"migrate -check -config job.hcl", "migrate -start-postcopy -config job.hcl", "-verify-pages", "-plugin-dir"} {
			if !strings.Contains(errb.String(), want) {
				t.Errorf("%q: stderr lacks %q:\n%s", tc.args, want, errb.String())
			}
		}
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d", tc.args, code, tc.code)
		}
	}
}

// TestStartPostcopyFlags: the flag needs a job and is its own command.
func TestStartPostcopyFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-start-postcopy"},
		{"-start-postcopy", "-resolve", "-config", "job.hcl"},
		{"-start-postcopy", "-config", "job.hcl", "extra"},
	} {
		var out, errb strings.Builder
		if code := realMain(args, &out, &errb); code != 2 || !strings.Contains(errb.String(), "migrate -start-postcopy -config job.hcl") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and the usage", args, code, errb.String())
		}
	}
	var out, errb strings.Builder
	path := filepath.Join(t.TempDir(), "bad.hcl")
	os.WriteFile(path, []byte("source {}\n"), 0o600)
	if code := realMain([]string{"-start-postcopy", "-config", path}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "bad.hcl:1") {
		t.Errorf("bad job: exit %d, stderr %q", code, errb.String())
	}
}

// TestReportPostcopy: the text report names the post-copy keys when the
// migration switched, with the destination's fault statistics, and
// leaves them out of a pre-copy.
func TestReportPostcopy(t *testing.T) {
	r := report{Report: engine.Report{Status: engine.StatusCompleted, Mode: engine.ModePostcopy, PostcopyMS: 1234,
		PagesRequested: 17, PagesPushed: 9000, Reconnects: 1},
		Destination: &engine.Report{Mode: engine.ModePostcopy, PagesRequested: 18, PagesZeroLocal: 50000, PagesLandLocal: 300,
			FaultP50US: 45, FaultP99US: 900, FaultMaxUS: 3000, FaultNetP50US: 310, FaultNetP99US: 1200, FaultNetMaxUS: 3000}}
	var b strings.Builder
	printReport(&b, r)
	for _, want := range []string{
		"mode          postcopy: 1234 ms from the guest running on the destination to its last page, 1 reconnects\n",
		"post-copy     17 pages requested by faults, 9000 pushed in the background\n",
		"faults        18 requested, 50000 resolved as zero locally, 300 landed before the fault; latency p50 45 us, p99 900 us, max 3000 us (destination)\n",
		"              over the network: p50 310 us, p99 1200 us, max 3000 us\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	r.Destination = nil
	b.Reset()
	printReport(&b, r)
	if !strings.Contains(b.String(), "faults        not known here") {
		t.Errorf("report without the destination's:\n%s", b.String())
	}
	r.Mode = engine.ModePrecopy
	b.Reset()
	printReport(&b, r)
	if strings.Contains(b.String(), "post-copy") || strings.Contains(b.String(), "mode ") {
		t.Errorf("a pre-copy report prints post-copy lines:\n%s", b.String())
	}
}

// TestProgressPostcopy: the post-copy phase says where the guest runs and
// what is still to arrive.
func TestProgressPostcopy(t *testing.T) {
	var out strings.Builder
	newProgress(&out).update(engine.Progress{Phase: engine.PhasePostcopy, TotalPages: 1000, Remaining: 256,
		Throughput: 4e7, BytesWire: 3 << 20})
	want := "postcopy      guest runs on the destination [##############......]    40 MB/s  to arrive 256 pages (1.0 MiB)  wire 3.0 MiB\n"
	if out.String() != want {
		t.Errorf("line %q\nwant %q", out.String(), want)
	}
}

// TestRunPostcopyBroken: a source that ends postcopy-broken gets the
// plain sentence (where the guest is, what not to do), an error, and no
// clean-up: neither side is cancelled, resolved or resumed. The quit it
// prints for the source names the migration, so a VMM that holds
// another one by the time it is run refuses it.
func TestRunPostcopyBroken(t *testing.T) {
	c := newRunCase(t)
	c.src.finishWith(1, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
	c.dst.finishWith(3, engine.StatusPostcopyBroken, api.SidePostcopyBroken) // it broke there too, a little later
	rep, out, err := c.run(context.Background(), t)
	if err == nil || rep.Status != engine.StatusPostcopyBroken || !strings.Contains(err.Error(), "the guest is lost") {
		t.Fatalf("status %s, err %v", rep.Status, err)
	}
	quit := `echo '{"cmd":"quit","args":{"id":"` + c.src.id + `"}}' | socat - ` + socatUnix(c.src.sock)
	dstQuit := `echo '{"cmd":"quit","args":{"id":"` + c.dst.id + `"}}' | socat - ` + socatUnix(c.dst.sock)
	for _, want := range []string{"post-copy broke and could not resume", "Do not resume the source's copy", c.src.sock, c.dst.sock, quit, dstQuit} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, call := range c.calls {
		if call != "receive migrate-incoming" && call != "send migrate-send" {
			t.Errorf("call %q after post-copy broke; want none", call)
		}
	}
}

// TestPostcopyBrokenDestinationQuit: the text prints a quit for the
// destination only when its VMM answered postcopy-broken (it is still
// up: a reference VMM that could not halt its guest waits for that
// quit, vmm/halt_failed.go), naming the migration.
func TestPostcopyBrokenDestinationQuit(t *testing.T) {
	b := brokenSides{src: "/run/src.sock", dst: "/run/dst.sock", srcName: api.IDArgs{ID: "m1"}, dstName: api.IDArgs{ID: "m1"}, srcHolds: true,
		srcControl: api.ControlVersion, dstControl: api.ControlVersion, srcAnswered: true}
	dstQuit := `{"cmd":"quit","args":{"id":"m1"}}' | socat - ` + socatUnix(b.dst)
	if out := postcopyBrokenText(b); strings.Contains(out, dstQuit) {
		t.Errorf("a destination that did not answer postcopy-broken is told to quit:\n%s", out)
	}
	b.dstStays = true
	for _, holds := range []bool{true, false} {
		b.srcHolds = holds
		if out := postcopyBrokenText(b); !strings.Contains(out, dstQuit) || !strings.Contains(out, "still answers") {
			t.Errorf("srcHolds %v: no quit for the destination that still answers:\n%s", holds, out)
		}
	}
}

// TestRunPostcopyBrokenDestinationCompleted: a source that ends
// postcopy-broken beside a destination whose post-copy completed (its
// SETTLED was lost with the connection, or the source gave up while the
// last pages landed) is not a lost guest: it runs on the destination.
// migrate says so, succeeds and ends the source's paused copy.
func TestRunPostcopyBrokenDestinationCompleted(t *testing.T) {
	c := newRunCase(t)
	c.src.finishWith(1, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
	c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
	rep, out, err := c.run(context.Background(), t)
	if err != nil || rep.Status != engine.StatusCompleted || rep.Resolved != "destination" {
		t.Fatalf("status %s, resolved %q, err %v\n%s", rep.Status, rep.Resolved, err, out)
	}
	if strings.Contains(out, "The guest is lost") || !strings.Contains(out, "the destination holds every page and runs the guest") {
		t.Errorf("output:\n%s", out)
	}
	if got := c.resolutions(); strings.Join(got, ",") != "send quit" {
		t.Errorf("calls %q, want the source's quit only", got)
	}
}

// TestRunPostcopyBrokenDestinationFinishing: the source gave post-copy up
// while the destination, still in its own reconnect (it noticed the
// break later), then completes because it holds every page. migrate
// waits for it instead of calling the guest lost at once (found by
// audit: it printed "The guest is lost" for a guest that then ran).
func TestRunPostcopyBrokenDestinationFinishing(t *testing.T) {
	c := newRunCase(t)
	c.src.finishWith(1, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
	c.dst.finishWith(4, engine.StatusCompleted, api.SideRunning) // migrating for a few more polls
	rep, out, err := c.run(context.Background(), t)
	if err != nil || strings.Contains(out, "The guest is lost") || rep.Status != engine.StatusCompleted || rep.Resolved != "destination" {
		t.Fatalf("status %s, resolved %q, err %v\n%s", rep.Status, rep.Resolved, err, out)
	}
	if !strings.Contains(out, "the destination is still in it") {
		t.Errorf("output does not say it waits for the destination:\n%s", out)
	}
}

// TestRunPostcopyReconnectingPeerGone: while the source says post-copy
// has been reconnecting for a while, migrate asks the destination VMM;
// one that does not answer gets a warning (once) that the guest is
// likely lost with it; one that answers gets none.
func TestRunPostcopyReconnectingPeerGone(t *testing.T) {
	for _, gone := range []bool{true, false} {
		c := newRunCase(t)
		c.src.postcopy = true
		c.src.progress = engine.Progress{Phase: engine.PhasePostcopy, TotalPages: 100}
		c.src.finishWith(50, engine.StatusPostcopyBroken, api.SidePostcopyBroken) // about a second of polls
		c.dst.finishWith(2, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
		go func() { // once the migration started: the destination dies (or not), then the source reconnects
			for {
				c.src.mu.Lock()
				sent := !c.src.sent.IsZero()
				c.src.mu.Unlock()
				if sent {
					break
				}
				time.Sleep(time.Millisecond)
			}
			if gone {
				c.dst.kill()
			}
			c.src.mu.Lock()
			c.src.progress.Reconnecting = 30 * time.Second
			c.src.mu.Unlock()
		}()
		_, out, err := c.run(context.Background(), t)
		if err == nil {
			t.Fatal("no error for a broken post-copy")
		}
		warning := "the destination VMM " + c.dst.sock + " does not answer"
		if n := strings.Count(out, warning); gone && n != 1 || !gone && n != 0 {
			t.Errorf("destination gone %v: the warning %d times:\n%s", gone, n, out)
		}
	}
}

// TestFollowReconnectingClears: once post-copy resumed, the status no
// longer carries reconnecting_ns (omitempty), and what migrate follows
// must say 0, not the last value it saw (a status decoded into the
// previous one kept it, and the progress line said "reconnecting" to the
// end of a resumed migration, seen in an emulated-KVM run of
// TestPostcopyCut).
func TestFollowReconnectingClears(t *testing.T) {
	var calls []string
	var mu sync.Mutex
	src := newFakeVMM(t, "send", &calls, &mu)
	src.running, src.postcopy = true, true
	src.progress = engine.Progress{Phase: engine.PhasePostcopy, Reconnecting: 30 * time.Second, TotalPages: 100}
	src.finishWith(-1, engine.StatusCompleted, api.SideMigrated) // until told
	go func() {
		src.waitStatuses(3) // a few polls saw it reconnecting
		src.mu.Lock()
		src.progress.Reconnecting = 0
		src.polls = 3 // done three polls after it resumed
		src.mu.Unlock()
	}()
	st, err := follow(context.Background(), src.sock, "", "", nil, 0, io.Discard, nil)
	if err != nil || !st.Done {
		t.Fatalf("follow: %+v, %v", st, err)
	}
	if st.Progress.Reconnecting != 0 {
		t.Errorf("the last status still says reconnecting for %v", st.Progress.Reconnecting)
	}
}

// TestResolveMainPostcopyBroken: -resolve after a broken post-copy moves
// nothing and says the guest is lost.
func TestResolveMainPostcopyBroken(t *testing.T) {
	c := newRunCase(t)
	c.src.tag, c.dst.tag = tagA, tagA // a HELLO led the source here: both report its fingerprint
	c.src.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
	c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
	path := c.writeJob(t)
	var out, errb strings.Builder
	if code := realMain([]string{"-resolve", "-config", path}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "Do not resume the source's copy") {
		t.Fatalf("exit %d: %s %s", code, out.String(), errb.String())
	}
	if got := c.resolutions(); len(got) != 0 {
		t.Errorf("resolution calls %q, want none", got)
	}
}

// TestResolvePostcopyBrokenSourceGone: migrate -resolve finds the
// destination's post-copy broken (migration a) and, at the source's
// socket, a VMM that holds no migration (one started anew there, which
// may run a guest of its own). It must not say the source keeps a
// paused copy, nor print a quit for that VMM; before, it said so and
// printed a bare quit (the source reported no id), which stopped
// whatever VM answered there. A source that could not be asked may
// still hold its copy, but migrate does not know whether its VMM checks
// an id in quit (one from before control version 1 ignores it): it
// prints no quit for it (until TestPrintedCommandsNamed, one naming
// migration a), but its migrate-status, and to run -resolve again once
// it answers.
func TestResolvePostcopyBrokenSourceGone(t *testing.T) {
	c := newRunCase(t)
	c.src.role = "" // no migration: the VMM answers with no role and no id
	c.src.finishWith(0, "", api.SideNone)
	c.dst.id = "a"
	c.dst.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
	var out, errb strings.Builder
	code := realMain([]string{"-resolve", "-config", c.writeJob(t)}, &out, &errb)
	t.Logf("exit %d\n%s%s", code, out.String(), errb.String())
	if code != 1 || strings.Contains(errb.String(), socatUnix(c.src.sock)) || strings.Contains(errb.String(), "keeps a paused copy") ||
		!strings.Contains(errb.String(), "holds no part of this migration") {
		t.Fatalf("exit %d: want the guest said lost, the source's copy gone, and no quit for the source", code)
	}
	c.src.kill() // unreachable: it may hold its copy
	errb.Reset()
	code = realMain([]string{"-resolve", "-config", c.writeJob(t)}, &out, &errb)
	want := controlLine(requestJSON("migrate-status", nil), c.src.sock)
	if code != 1 || commandLine(errb.String(), socatUnix(c.src.sock)) != want || !strings.Contains(errb.String(), "keeps a paused copy") {
		t.Fatalf("exit %d\n%s\nwant the source's only line\n    %s", code, errb.String(), want)
	}
	if n := strings.Count(errb.String(), socatUnix(c.src.sock)); n != 1 {
		t.Errorf("%d lines for the source, want its migrate-status alone", n)
	}
}

// TestResolvePostcopyBrokenQuitNamesTag: migrate -resolve on two sides
// without an id whose post-copy broke prints the source's quit naming
// the tag fingerprint the source reported, to a VMM of control version
// api.TagsHonoured or later, as it names an id: a VMM that holds another
// migration by the time the operator runs the line (one started anew at
// the socket, running a guest of its own) refuses it. To an older VMM,
// which refuses the field by name, no quit is printed (it would name
// nothing: TestPrintedCommandsNamed), but its migrate-status.
// Found by review: the line named nothing for an id-less pair, so it
// stopped whatever VM answered at the source's socket by then.
func TestResolvePostcopyBrokenQuitNamesTag(t *testing.T) {
	for _, tc := range []struct {
		name    string
		control uint16
		quit    any
	}{
		{"v3", api.TagsHonoured, api.IDArgs{TagFingerprint: tagA}},
		{"v2", api.TagsHonoured - 1, nil}, // its migrate-status in its place
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.tag, c.dst.tag = tagA, tagA
			c.src.controlV, c.dst.controlV = tc.control, tc.control
			c.src.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
			c.dst.finishWith(0, engine.StatusFailed, api.SideFailed)
			var out, errb strings.Builder
			code := realMain([]string{"-resolve", "-config", c.writeJob(t)}, &out, &errb)
			t.Logf("exit %d\n%s%s", code, out.String(), errb.String())
			want := controlLine(requestJSON("quit", tc.quit), c.src.sock)
			if tc.quit == nil {
				want = controlLine(requestJSON("migrate-status", nil), c.src.sock)
			}
			if code != 1 || !strings.Contains(errb.String(), "keeps a paused copy") || !strings.Contains(errb.String(), want+"\n") {
				t.Fatalf("exit %d: want the guest said lost and the source's line printed as\n    %s", code, want)
			}
			if got := c.resolutions(); len(got) != 0 {
				t.Errorf("resolution calls %q, want none", got)
			}
		})
	}
}
