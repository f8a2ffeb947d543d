package e2e

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// Post-copy on KVM (issue 10, docs/JOBS.md "Post-copy"). Every test here
// was written on a machine without /dev/kvm. On 2026-12-05 they ran under
// an emulated KVM (vmm/e2e/tcg: QEMU TCG, kvm_amd inside, so the real KVM
// and userfaultfd paths at emulated speed): the ones that passed there run
// wherever /dev/kvm is; the others stay behind needProven
// (FERRY_E2E_UNPROVEN=1) until they pass on KVM, each saying why. Each
// runs with the page-exact check on (-verify-pages), which in post-copy
// checks every page as it lands on the destination.

// postcopyKeys are the report keys of a post-copy (docs/JOBS.md).
type postcopyKeys struct {
	Mode           string `json:"mode"`
	PostcopyMS     int64  `json:"postcopy_ms"`
	PagesRequested uint64 `json:"pages_requested"`
	PagesPushed    uint64 `json:"pages_pushed"`
	PagesZeroLocal uint64 `json:"pages_zero_local"`
	PagesLandLocal uint64 `json:"pages_landed_local"`
	FaultP50US     int64  `json:"fault_p50_us"`
	FaultP99US     int64  `json:"fault_p99_us"`
	FaultMaxUS     int64  `json:"fault_max_us"`
	Reconnects     int    `json:"reconnects"`
}

// postcopyReport is migrate -json's report with the post-copy keys of
// both sides.
type postcopyReport struct {
	migrateReport
	postcopyKeys
	Destination *struct {
		Status string `json:"status"`
		postcopyKeys
	} `json:"destination"`
}

// migratePostcopy runs bin/migrate -json -verify-pages on the pair's job
// and returns the report with its post-copy keys; during runs while
// migrate is in flight.
func (p *pair) migratePostcopy(act func(cmd *exec.Cmd)) (postcopyReport, error) {
	ctx, cancel := context.WithTimeout(context.Background(), slow(5*time.Minute))
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(p.t), "bin", "migrate"), "-config", p.job, "-json", "-verify-pages")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, streamed(&errb, "migrate")
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	during(cmd, act, p.src, p.dst)
	err := cmd.Wait()
	var rep postcopyReport
	if jerr := json.Unmarshal([]byte(out.String()), &rep); jerr != nil {
		p.t.Fatalf("migrate printed no JSON report (%v): stdout %q stderr %q", jerr, out.String(), errb.String())
	}
	p.t.Logf("migrate: %+v (exit %v)\n%s", rep, err, errb.String())
	return rep, err
}

// checkPostcopy fails unless the migration completed in post-copy with
// both reports, and the guest goes on verifying on the destination.
func (p *pair) checkPostcopy(rep postcopyReport, err error) {
	p.t.Helper()
	if err != nil || rep.Status != "completed" {
		p.t.Fatalf("migration %s (%s): %v", rep.Status, rep.Error, err)
	}
	if rep.Mode != "postcopy" || rep.Destination == nil || rep.Destination.Mode != "postcopy" {
		p.t.Fatalf("mode %q (destination %+v): the migration did not switch to post-copy", rep.Mode, rep.Destination)
	}
	p.dst.waitTicks(3, 60*time.Second)
}

// TestPostcopyAutoNonConverging is the non-converging guest: 1 GiB
// dirtying 512 MiB at 2000 MiB/s over a 40 MB/s link never converges in
// pre-copy (4.6 GB sent in 120 s and still going). With postcopy = "auto"
// it must complete, put at most 1.15x guest RAM on the wire, and the guest
// must keep verifying on the destination.
//
// Gated by needProven: under an emulated KVM the guest is too slow to
// out-dirty even this link, and pre-copy converged (no switch to test).
func TestPostcopyAutoNonConverging(t *testing.T) {
	needProven(t, "TestPostcopyAutoNonConverging (post-copy auto on dirty:512@2000 at 40MB/s)")
	p := startPair(t, "1G", "dirty:512@2000", "", `limits {
  bandwidth = "40MB/s"
  postcopy  = "auto"
}`)
	rep, err := p.migratePostcopy(nil)
	p.checkPostcopy(rep, err)
	if limit := uint64(1<<30) * 115 / 100; rep.BytesWire > limit {
		t.Errorf("%d bytes on the wire, more than 1.15x the guest's 1 GiB (%d)", rep.BytesWire, limit)
	}
	t.Logf("post-copy %d ms, %d requested, %d pushed; destination faults p50 %d us p99 %d us max %d us",
		rep.PostcopyMS, rep.PagesRequested, rep.PagesPushed,
		rep.Destination.FaultP50US, rep.Destination.FaultP99US, rep.Destination.FaultMaxUS)
}

// TestPostcopyAutoOutDirtying: postcopy = "auto" on a guest that
// out-dirties its link (64 MiB rewritten at 200 MiB/s over 16 MB/s):
// the engine switches by itself, the page check is clean and the guest
// goes on verifying on the destination. The smaller sibling of
// TestPostcopyAutoNonConverging, whose guest an emulated KVM cannot run
// fast enough to out-dirty its link; this one can.
func TestPostcopyAutoOutDirtying(t *testing.T) {
	needKVM(t, "TestPostcopyAutoOutDirtying (post-copy auto on dirty:64@200 at 16MB/s)")
	p := startOutDirtying(t, `postcopy = "auto"`)
	rep, err := p.migratePostcopy(nil)
	p.checkPostcopy(rep, err)
	t.Logf("%d passes, %.1f MiB on the wire for 256 MiB; post-copy %d ms, %d requested, %d pushed",
		rep.Passes, float64(rep.BytesWire)/(1<<20), rep.PostcopyMS, rep.PagesRequested, rep.PagesPushed)
}

// TestPostcopyAlwaysKVBalloon: postcopy = "always" with the balloon's
// hints on a guest churning its key-value store: hints stay on in
// post-copy (the balloon still skips pages) and the guest keeps
// verifying its store on the destination.
//
// Passed under an emulated KVM (2026-12-05); not yet run on real KVM.
func TestPostcopyAlwaysKVBalloon(t *testing.T) {
	needKVM(t, "TestPostcopyAlwaysKVBalloon (post-copy always, kv:256, balloon hints)")
	p := startPairArgs(t, "1G", "kv:256", "127.0.0.1:"+itoa(freePort(t)), "", balloonHint()+`limits { postcopy = "always" }`, []string{"-no-page-reporting"})
	rep, err := p.migratePostcopy(nil)
	p.checkPostcopy(rep, err)
	if rep.SkippedBy["balloon"] == 0 {
		t.Errorf("the balloon skipped nothing: hints were lost in post-copy (%+v)", rep.Hints)
	}
}

// TestPostcopyHogBalloonZeroLocal: after hog:768 the guest's freed memory
// is hinted by the balloon; in post-copy a fault on such a page must be
// resolved on the destination (a zero or free run arrived before the
// switch), not over the network: pages_requested stays small and
// pages_zero_local is not.
//
// Passed under an emulated KVM (2026-12-05: 3 pages requested over the
// network, the balloon skipped 257142); not yet run on real KVM.
func TestPostcopyHogBalloonZeroLocal(t *testing.T) {
	needKVM(t, "TestPostcopyHogBalloonZeroLocal (post-copy always, hog:768, balloon hints)")
	p := startPairArgs(t, "1G", "hog:768", "127.0.0.1:"+itoa(freePort(t)), "", balloonHint()+`limits { postcopy = "always" }`, []string{"-no-page-reporting"})
	rep, err := p.migratePostcopy(nil)
	p.checkPostcopy(rep, err)
	d := rep.Destination
	t.Logf("destination: %d requested, %d zero locally, %d landed locally; balloon skipped %d",
		d.PagesRequested, d.PagesZeroLocal, d.PagesLandLocal, rep.SkippedBy["balloon"])
	if limit := rep.TotalPages / 50; d.PagesRequested > limit {
		t.Errorf("%d pages requested over the network, want at most %d (2%% of %d): free pages were not resolved locally",
			d.PagesRequested, limit, rep.TotalPages)
	}
	if rep.SkippedBy["balloon"] < 512<<8 {
		t.Errorf("the balloon skipped %d pages, want most of the hog's 768 MiB", rep.SkippedBy["balloon"])
	}
}

// TestPostcopyManualSwitch: a job with postcopy = "off" (the default) on
// a guest that out-dirties its link (64 MiB rewritten at 200 MiB/s over
// 16 MB/s) is switched by hand, migrate -start-postcopy next to the
// running migrate, as QEMU's migrate-start-postcopy; a second request
// changes nothing and says so.
//
// Under an emulated KVM (2026-12-05) it first failed twice: asked 2 s
// into the bulk pass, the switch paused the guest and then waited for
// ~30 MB of bulk data the engine had queued at the 16 MB/s cap while the
// emulated transport moved 4 MB/s, past switchover_timeout. A stopped
// pass now drains the queue before the pause (engine drainLive); it then
// passed twice there. Not yet run on real KVM.
func TestPostcopyManualSwitch(t *testing.T) {
	needKVM(t, "TestPostcopyManualSwitch (migrate -start-postcopy on dirty:64@200 at 16MB/s)")
	p := startOutDirtying(t, "")
	bin := filepath.Join(repoRoot(t), "bin", "migrate")
	rep, err := p.migratePostcopy(func(*exec.Cmd) {
		// In pre-copy, pages moving (a fixed sleep was not enough where
		// plugins start slowly, e.g. under an emulated KVM).
		p.src.waitPhase(t, 2*time.Minute, engine.PhaseBulk, engine.PhaseDirty)
		time.Sleep(time.Second)
		for i, want := range []string{"post-copy requested", "nothing to do"} {
			out, err := exec.Command(bin, "-start-postcopy", "-config", p.job).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), want) {
				t.Errorf("migrate -start-postcopy #%d: %v: %s", i+1, err, out)
			}
		}
	})
	p.checkPostcopy(rep, err)
}

// TestPostcopyInterrupted: Ctrl-C on migrate once the guest runs on the
// destination in post-copy cancels nothing (cancelling would lose the
// guest): the source VMM refuses, migrate says so and follows the
// migration to completion, and a SIGTERM to the source VMM is deferred
// until its last page went out.
//
// Passed under an emulated KVM (2026-12-05), once migrate no longer took
// the source's deferred exit for a failure; not yet run on real KVM.
func TestPostcopyInterrupted(t *testing.T) {
	needKVM(t, "TestPostcopyInterrupted (Ctrl-C and SIGTERM during post-copy)")
	// 64 MiB written at 200 MiB/s over 16 MB/s: post-copy has seconds of
	// pages to push after the bulk pass.
	p := startOutDirtying(t, `postcopy = "always"`)
	rep, err := p.migratePostcopy(func(cmd *exec.Cmd) {
		p.src.waitPhase(t, 2*time.Minute, engine.PhasePostcopy)
		cmd.Process.Signal(syscall.SIGINT)
		p.src.cmd.Process.Signal(syscall.SIGTERM) // deferred: post-copy goes on
	})
	p.checkPostcopy(rep, err)
}

// waitPhase waits until the VMM's migration is in one of phases; it fails
// the test after timeout (stretched by slow), or at once when the VMM
// exited or its migration ended.
func (r *guestRun) waitPhase(t testing.TB, timeout time.Duration, phases ...engine.Phase) {
	t.Helper()
	timeout = slow(timeout)
	var last engine.Phase
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		select {
		case <-r.done:
			// A VMM that died (under emulated KVM, the source guest's
			// triple fault: tcg/README.md) answers no more: waiting out
			// the bound said nothing for tens of minutes.
			t.Fatalf("ferry-vmm exited (%v) before its migration reached phase %v (last seen %q)", r.waitErr, phases, last)
		default:
		}
		if m := r.migrate.Load(); m != nil && exited(m) {
			// A job migrate refused (under emulated KVM, a plugin too
			// slow to start for its schema) started no migration:
			// waiting out the bound said nothing for 20 minutes.
			t.Fatalf("migrate exited before the migration reached phase %v (last seen %q)", phases, last)
		}
		var st api.Migration
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := control.Call(ctx, r.control, "migrate-status", nil, &st)
		cancel()
		if err == nil {
			last = st.Progress.Phase
			if slices.Contains(phases, last) {
				return
			}
			if st.Done {
				t.Fatalf("the migration ended (%s) before it reached phase %v (last seen %q)", st.Side, phases, last)
			}
		}
	}
	t.Fatalf("the migration never reached phase %v within %v (last seen %q)", phases, timeout, last)
}

// TestPostcopyCut: the transport plugin process of one VMM (picked at
// random) is killed at a random moment of post-copy; both VMMs open the
// transport again (a new plugin process), the destination says which
// pages it lacks, and the migration completes page-exact with the guest
// verifying on the destination. 20 rounds, 3 with -short, or
// FERRY_E2E_POSTCOPY_CUTS (the fake-VM soak, `make soak-postcopy`, runs
// 100 rounds of the same through framework/session).
//
// Under an emulated KVM (vmm/e2e/tcg, 2026-12-05) nine rounds passed with
// the final binaries, three of them killing the destination's plugin
// (seeds 1796450605432884830 and 1796455705123492920); an earlier build
// stalled once in a destination-side round without a log. Not yet run on
// real KVM.
func TestPostcopyCut(t *testing.T) {
	needKVM(t, "TestPostcopyCut (transport plugins killed during post-copy)")
	rounds := 20
	if testing.Short() {
		rounds = 3
	}
	if n, err := strconv.Atoi(os.Getenv("FERRY_E2E_POSTCOPY_CUTS")); err == nil && n > 0 {
		rounds = n
	}
	seed := time.Now().UnixNano()
	if n, err := strconv.ParseInt(os.Getenv("FERRY_E2E_POSTCOPY_SEED"), 10, 64); err == nil {
		seed = n // replay a run's rounds
	}
	t.Logf("seed %d (FERRY_E2E_POSTCOPY_SEED replays it)", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	for round := range rounds {
		delay := time.Duration(rng.IntN(1500)) * time.Millisecond
		if round%5 == 0 {
			delay = 0 // at once: around COMMIT and RUNNING
		}
		side := rng.IntN(2) // 0: the source's plugin, 1: the destination's
		t.Run(strconv.Itoa(round), func(t *testing.T) {
			// A reconnect that cannot succeed fails within 90 s, with
			// both VMMs' logs, instead of the default 10 minutes.
			p := startOutDirtying(t, `postcopy = "always"
  reconnect_timeout = "90s"`)
			var killed []int
			rep, err := p.migratePostcopy(func(*exec.Cmd) {
				p.src.waitPhase(t, 2*time.Minute, engine.PhasePostcopy)
				time.Sleep(delay)
				vm := p.src
				if side == 1 {
					vm = p.dst
				}
				killed = childPids(t, vm.cmd.Process.Pid, "ferry-transport")
				for _, pid := range killed {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			t.Logf("killed %v (side %d) %v into post-copy; source reconnects %d", killed, side, delay, rep.Reconnects)
			p.checkPostcopy(rep, err)
			if rep.PagesChecked != rep.TotalPages {
				t.Errorf("page-exact check covered %d of %d pages", rep.PagesChecked, rep.TotalPages)
			}
		})
	}
}

// startOutDirtying starts a pair whose 256 MiB guest rewrites 64 MiB at
// 200 MiB/s over a link capped at 16 MB/s: pre-copy never converges, and
// post-copy has seconds of pages to push after the bulk pass. limits are
// more lines of the job's limits block.
func startOutDirtying(t *testing.T, limits string) *pair {
	return startPair(t, "256M", "dirty:64@200", "", "limits {\n  bandwidth = \"16MB/s\"\n  "+limits+"\n}")
}
