package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestResolveMemoryOfOneMigration: what -resolve saw at one look (the
// guest ran on the destination, the source ran it, the source said
// failed) is of the migration that look paired; at a later look both
// sides report another (another id, or without ids another tag
// fingerprint: a VMM started anew at a socket, a socket reused), and
// the resolve ends manual saying the pairing changed under it, acting
// on neither migration and printing no command for either. Before, the
// flags of the first were honoured at the second's look: its steps
// were refused for a reason untrue of it ("the source's resume is
// refused: migrate saw the guest run on this migration's destination"),
// or, for a source seen failed, the second's discard, resume and quit
// were sent (a memory of the first dropped silently).
func TestResolveMemoryOfOneMigration(t *testing.T) {
	for _, tc := range []struct {
		name     string
		first    func(c *runCase)            // both sides at the first look (of a, or tagA)
		src, dst func(f *fakeVMM)            // each side from its second look on (of b, or tagB)
		dstAsked func(idA, tA string) string // the acts the destination may be asked
	}{
		{name: "destination ran, then another's source handover-unknown beside its failed destination",
			first: func(c *runCase) { c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning) }, // the source migrates
			src:   func(f *fakeVMM) { f.done, f.status, f.side = true, engine.StatusHandoverUnknown, api.SideUnknown },
			dst:   func(f *fakeVMM) { f.status, f.side = engine.StatusFailed, api.SideFailed }},
		{name: "source failed, then another's two sides handover-unknown",
			first: func(c *runCase) { c.src.finishWith(0, engine.StatusFailed, api.SideFailed) }, // the destination migrates
			src:   func(f *fakeVMM) { f.status, f.side = engine.StatusHandoverUnknown, api.SideUnknown },
			dst:   func(f *fakeVMM) { f.done, f.status, f.side = true, engine.StatusHandoverUnknown, api.SideUnknown }},
		{name: "source ran, then another's source handover-unknown beside its running destination",
			first: func(c *runCase) { // the destination migrates in post-copy: its cancel is refused
				c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
				c.dst.postcopy = true
			},
			src: func(f *fakeVMM) { f.status, f.side = engine.StatusHandoverUnknown, api.SideUnknown },
			dst: func(f *fakeVMM) { f.done, f.status, f.side = true, engine.StatusCompleted, api.SideRunning },
			dstAsked: func(idA, tA string) string { // sent on the first look, refused: the VMM holds the other by then
				if idA == "" {
					return "migrate-cancel  tag " + tA
				}
				return "migrate-cancel " + idA
			}},
	} {
		for _, named := range []string{"id", "tag"} {
			t.Run(tc.name+"/"+named, func(t *testing.T) {
				c := newRunCase(t)
				idA, idB, tA, tB := "a", "b", "", ""
				if named == "tag" {
					idA, idB, tA, tB = "", "", tagA, tagB
				}
				c.src.id, c.dst.id, c.src.tag, c.dst.tag = idA, idA, tA, tA
				tc.first(c)
				moveOn := func(to func(f *fakeVMM)) func(f *fakeVMM) {
					return afterFirstLook(func(f *fakeVMM) { f.id, f.tag = idB, tB; to(f) })
				}
				c.src.looked, c.dst.looked = moveOn(tc.src), moveOn(tc.dst)
				var out strings.Builder
				r := newResolver(fakeJob(c.src, c.dst), &out)
				r.wait = 10 * time.Second
				v, err := r.resolve()
				t.Logf("verdict %d, err %v, calls %s\n%s", v, err, c.callList(), out.String())
				dstAsked := ""
				if tc.dstAsked != nil {
					dstAsked = tc.dstAsked(idA, tA)
				}
				c.wantAsked(t, "", dstAsked)
				if v != verdictManual || err == nil {
					t.Fatalf("verdict %d, err %v: want manual, an error", v, err)
				}
				wantSays(t, err.Error(), "the pairing changed under the resolver")
				wantSays(t, out.String(), "moved from migration "+migrationText(idA, tA), "to migration "+migrationText(idB, tB),
					"find out from both hosts which VMM holds which copy")
				wantSaysNone(t, out.String(), "is refused", "migrate: resolved:", "Never run", "Only if")
				wantNoCommand(t, out.String(), "what migrate saw of one migration says nothing of the other's copies")
			})
		}
	}
	t.Run("-resolve exits 1", func(t *testing.T) {
		c := newRunCase(t)
		c.src.id, c.dst.id = "a", "a"
		c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
		c.src.looked = afterFirstLook(func(f *fakeVMM) {
			f.id, f.done, f.status, f.side = "b", true, engine.StatusHandoverUnknown, api.SideUnknown
		})
		c.dst.looked = afterFirstLook(func(f *fakeVMM) { f.id, f.status, f.side = "b", engine.StatusFailed, api.SideFailed })
		code, stdout, stderr := c.resolveMain(t)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantSaysNone(t, stdout, "resolved:")
		wantSays(t, stderr, "the pairing changed under the resolver")
		c.wantNothingAsked(t)
	})
}

// TestResolveMemoryKeptWithinOneMigration: the flags still hold at a
// later look of the same migration, named by its id or by its tag
// fingerprint, also where a side reports none at that look (it does
// not answer): TestResolveRefusesStaleCopy's first case, and a look of
// the same migration without ids.
func TestResolveMemoryKeptWithinOneMigration(t *testing.T) {
	for _, named := range []string{"id", "tag"} {
		t.Run(named, func(t *testing.T) {
			c := newRunCase(t)
			if named == "id" {
				c.src.id, c.dst.id = "a", "a"
			} else {
				c.src.tag, c.dst.tag = tagA, tagA
			}
			c.src.finishWith(1, engine.StatusHandoverUnknown, api.SideUnknown) // migrating at the first look
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			c.dst.looked = afterFirstLook(func(f *fakeVMM) { f.status, f.side = engine.StatusFailed, api.SideFailed })
			var out strings.Builder
			r := newResolver(fakeJob(c.src, c.dst), &out)
			r.wait = 10 * time.Second
			v, err := r.resolve()
			t.Logf("verdict %d, err %v, calls %s\n%s", v, err, c.callList(), out.String())
			c.wantNothingAsked(t)
			if v != verdictManual || err == nil {
				t.Fatalf("verdict %d, err %v: want manual, an error", v, err)
			}
			wantSays(t, out.String(), "the source's resume is refused", "Never run the source")
			wantSaysNone(t, out.String(), "pairing changed")
		})
	}
}

// TestManualBothRan: where the resolver saw the guest run on both sides
// of one migration (the source after it began, and the destination),
// manual says what is true and what the operator must decide: the two
// copies diverged, which side migrate saw run first and which then,
// that Ferry will not pick one, and that the copy stopped loses what
// the guest did on it since; it prints no command, nor the line to run
// migrate -resolve again (which could pick one). Before, it said
// "Never run the source" and "Never run the destination", both unsafe,
// and what to do nowhere.
func TestManualBothRan(t *testing.T) {
	for _, tc := range []struct {
		name        string
		id          string // the migration resolved: "" for -resolve
		set         func(c *runCase)
		sourceRan   bool     // set before the resolve, as run's conclude does after a failed migration
		first, then string   // the side seen running first, and then
		say         []string // more it says
	}{
		{name: "run: the source ran, then the destination runs beside the source handover-unknown", id: "a", sourceRan: true,
			set: func(c *runCase) {
				c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
				c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			}, first: "source", then: "destination", say: []string{"before this resolve", "the destination said running, at look 1"}},
		{name: "-resolve: the source runs, then handover-unknown beside the destination running",
			set: func(c *runCase) {
				c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
				c.src.looked = afterFirstLook(func(f *fakeVMM) { f.side = api.SideUnknown })
				c.dst.postcopy = true // its cancel is refused
				c.dst.looked = afterFirstLook(func(f *fakeVMM) { f.done, f.status, f.side = true, engine.StatusCompleted, api.SideRunning })
			}, first: "source", then: "destination", say: []string{"the source said running, at look 1", "the destination said running, at look 2"}},
		{name: "-resolve: the destination runs, then handover-unknown beside the source running",
			set: func(c *runCase) {
				c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
				c.dst.looked = afterFirstLook(func(f *fakeVMM) { f.status, f.side = engine.StatusHandoverUnknown, api.SideUnknown })
				c.src.finishWith(1, engine.StatusFailed, api.SideRunning) // migrating at the first look
			}, first: "destination", then: "source", say: []string{"the destination said running, at look 1", "the source said running, at look 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			c.src.id, c.dst.id = "a", "a"
			tc.set(c)
			var out strings.Builder
			r := newResolver(fakeJob(c.src, c.dst), &out)
			r.id, r.wait = tc.id, 10*time.Second
			if tc.sourceRan {
				r.sawSourceRun(ranBefore("migrate's run saw the source's migration end failed, the guest running there"), migrationKey{id: tc.id})
			}
			v, err := r.resolve()
			t.Logf("verdict %d, err %v, calls %s\n%s", v, err, c.callList(), out.String())
			if v != verdictManual || err == nil {
				t.Fatalf("verdict %d, err %v: want manual, an error", v, err)
			}
			text := out.String()
			wantSays(t, text, "The guest ran on both sides of migration id a after it began, so the two copies diverged",
				"on the "+tc.first+" first (", "then on the "+tc.then+" (",
				"Ferry will not pick one", "You must decide which copy to keep, and stop the other for good", "refuses quit",
				"is lost", "do not run it to settle this")
			wantSays(t, text, tc.say...)
			wantSaysNone(t, text, "Never run", "When both control sockets answer again")
			wantNoCommand(t, text, "migrate will not pick a copy, nor offer to")
		})
	}
}

// TestResolveDstTookOfOneMigration: that this job's destination was
// seen taking part in the source's migration (dstTook) is of the
// migration of the look that saw it. -resolve saw both sides migrate in
// a (a wait), then the source handover-unknown in b beside a destination
// that does not answer: b's destination was never seen, and the
// source's line must say it may have sent the guest elsewhere, where it
// may run, not "Only if the destination host is gone for good" (this
// job's destination, which took part in a, not b). Before, a two-sided
// look of a counted for b.
func TestResolveDstTookOfOneMigration(t *testing.T) {
	c := newRunCase(t)
	c.src.id, c.dst.id = "a", "a"
	c.src.looked = afterFirstLook(func(f *fakeVMM) {
		f.id, f.done, f.status, f.side = "b", true, engine.StatusHandoverUnknown, api.SideUnknown
	})
	c.dst.looked = afterFirstLook(func(f *fakeVMM) { f.resolveDown = true })
	var out strings.Builder
	r := newResolver(fakeJob(c.src, c.dst), &out)
	r.wait = 10 * time.Second
	v, err := r.resolve()
	t.Logf("verdict %d, err %v, calls %s\n%s", v, err, c.callList(), out.String())
	c.wantNothingAsked(t)
	if v != verdictManual || err == nil {
		t.Fatalf("verdict %d, err %v: want manual, an error", v, err)
	}
	wantSays(t, out.String(), "was never seen taking part in the source's migration (id b)")
	wantSaysNone(t, out.String(), "Only if the destination host is gone for good")
}

// TestResolveMemoryBesideOlderVMM: a migration without an id between a
// VMM older than api.TagsReported (it reports no tag fingerprint,
// whatever it did) and a newer one that reports the fingerprint: what
// -resolve saw at a look where both answered (key: the newer side's
// fingerprint) still holds at a later look where only the older side
// answers, as the newer VMM exits the way it does (a failed or
// cancelled destination, a failed source, a destination whose post-copy
// broke): that look names no fingerprint, and says nothing of another
// migration. Before, such a look counted as another migration (tag
// fingerprint none) and the resolve ended manual, "the pairing
// changed": a source resumed beside a cancelled destination was not
// said to run the guest, the source's failure (a handover-unknown
// destination holds the current copy) was not said, nor the guest
// lost when post-copy broke.
func TestResolveMemoryBesideOlderVMM(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(c *runCase)
		want verdict
		says []string
	}{
		{name: "the source failed; the destination (older) then handover-unknown, the source gone",
			set: func(c *runCase) {
				c.src.tag = tagA
				c.dst.controlV = 1
				c.src.finishWith(0, engine.StatusFailed, api.SideFailed)
				c.src.looked = afterFirstLook(func(f *fakeVMM) { f.resolveDown = true }) // its VMM exits
				c.dst.looked = afterFirstLook(func(f *fakeVMM) { f.done, f.status, f.side = true, engine.StatusHandoverUnknown, api.SideUnknown })
			}, want: verdictManual, says: []string{"The source said failed", "it holds the current copy", "resume"}},
		{name: "the source (older) runs; the destination cancelled, then gone",
			set: func(c *runCase) {
				c.dst.tag = tagA
				c.src.controlV = 1
				c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
				c.dst.looked = afterFirstLook(func(f *fakeVMM) { f.resolveDown = true }) // a cancelled destination exits
			}, want: verdictSource},
		{name: "the source (older) postcopy-broken; the destination's post-copy broke too, its VMM gone",
			set: func(c *runCase) {
				c.dst.tag = tagA
				c.src.controlV = 1
				c.src.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
				c.dst.looked = afterFirstLook(func(f *fakeVMM) { f.resolveDown = true }) // halted, it exits
			}, want: verdictLost, says: []string{"the guest is lost"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			tc.set(c)
			var out strings.Builder
			r := newResolver(fakeJob(c.src, c.dst), &out)
			r.wait = 10 * time.Second
			v, err := r.resolve()
			t.Logf("verdict %d, err %v, calls %s\n%s", v, err, c.callList(), out.String())
			text := out.String()
			if err != nil {
				text += err.Error()
			}
			wantSaysNone(t, text, "pairing changed")
			if v != tc.want {
				t.Errorf("verdict %d, want %d", v, tc.want)
			}
			wantSays(t, text, tc.says...)
		})
	}
}

// TestMigrationKeyOf: which look's migration is taken as the memory's
// (migrationKey.of): the same id, and the same fingerprint unless the
// look could tell none (untold: only VMMs older than api.TagsReported
// answered); a look that tells one is not of a memory that had none
// because its VMMs could not tell.
func TestMigrationKeyOf(t *testing.T) {
	for _, tc := range []struct {
		k, in migrationKey
		want  bool
	}{
		{migrationKey{id: "a"}, migrationKey{id: "a"}, true},
		{migrationKey{id: "b"}, migrationKey{id: "a"}, false},
		{migrationKey{tag: tagA}, migrationKey{tag: tagA}, true},
		{migrationKey{tag: tagB}, migrationKey{tag: tagA}, false},
		{migrationKey{}, migrationKey{tag: tagA}, false}, // a newer VMM that sent or took no HELLO
		{migrationKey{tag: tagA}, migrationKey{}, false}, // and one that did, after such a memory
		{migrationKey{untold: true}, migrationKey{tag: tagA}, true},
		{migrationKey{untold: true}, migrationKey{}, true},
		{migrationKey{untold: true}, migrationKey{untold: true}, true},
		{migrationKey{tag: tagA}, migrationKey{untold: true}, false},
		{migrationKey{}, migrationKey{untold: true}, false},
		{migrationKey{id: "b", untold: true}, migrationKey{id: "a"}, false},
	} {
		if got := tc.k.of(tc.in); got != tc.want {
			t.Errorf("%+v.of(%+v) = %v, want %v", tc.k, tc.in, got, tc.want)
		}
	}
}
