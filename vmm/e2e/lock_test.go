package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// TestMigrateUnderControlSpam (docs/ARCHITECTURE.md#invariant-8): control commands
// that change the run state, sent while a migration runs, must not leave
// the guest running twice or hang the migration. One guest is migrated
// along a chain of ferry-vmm processes (100 times, 20 with -short) while
// a goroutine per control socket sends pause and resume as fast as the
// VMM answers. Each migration must end, within a bound, either completed
// (the source migrated and silent, the destination running) or failed
// (the destination gone, the source running); no pause or resume may
// succeed while a migration owns the VM. Before the migration lock, a
// resume a few ms after the switch-over pause left both VMs running, and
// one racing the pause hung the migration.
func TestMigrateUnderControlSpam(t *testing.T) {
	needProven(t, "TestMigrateUnderControlSpam (100 migrations under pause/resume spam)")
	n := 100
	if testing.Short() {
		n = 20
	}
	root := repoRoot(t)
	_, guest := binaries(t)
	c := &spamChain{t: t, dir: t.TempDir(), plugin: filepath.Join(root, "bin", "plugins", "ferry-transport-tcp")}
	src := startVMM(t, "-kernel", guest, "-mem", spamMem, "-control", c.sock(), "-cmdline", "workload=dirty:8@32")
	src.control = c.sock()
	src.waitLine(regexp.MustCompile(`^ready`), 60*time.Second)
	src.waitTicks(1, 30*time.Second)
	start := time.Now()
	var completed, failed int
	var slowest time.Duration
	for i := 0; i < n; i++ {
		dst := c.incoming()
		t0 := time.Now()
		ok := c.migrate(i, src, dst)
		slowest = max(slowest, time.Since(t0))
		if ok {
			completed++
			src = dst
		} else {
			failed++
		}
		c.retire(false)
	}
	c.retire(true)
	src.waitTicks(2, 10*time.Second) // the guest still checks its memory, on the last VMM
	t.Logf("%d migrations in %v: %d completed, %d failed; slowest (with the destination's start) %v; "+
		"control commands refused %d, succeeded outside a migration %d",
		n, time.Since(start).Round(time.Millisecond), completed, failed, slowest.Round(time.Millisecond), c.refused, c.succeeded)
	if completed < n/2 {
		t.Errorf("only %d of %d migrations completed", completed, n)
	}
}

// spamMem is the guest's RAM: small, so that a migration over loopback
// takes about 100 ms.
const spamMem = "64M"

// spamChain migrates one guest along a chain of VMMs.
type spamChain struct {
	t      *testing.T
	dir    string
	plugin string
	next   int // socket number
	// handed are sources that handed the guest over, kept alive until
	// they proved silent (handedOver).
	handed             []handedOver
	refused, succeeded int
}

// handedOver is a source after a completed migration: it must print no
// tick any more. Its tick count is taken 100 ms after the handover (the
// last lines before the pause may still be on their way) and compared
// 1.6 s later, longer than the guest's 1 s tick period.
type handedOver struct {
	run      *guestRun
	at       time.Time
	baseline int // -1 until taken
}

func (c *spamChain) sock() string {
	return filepath.Join(c.dir, fmt.Sprintf("vmm%d.sock", c.next))
}

// incoming starts the next destination VMM and waits for its socket.
func (c *spamChain) incoming() *guestRun {
	c.next++
	sock := c.sock()
	r := startVMM(c.t, "-incoming", "-mem", spamMem, "-control", sock)
	r.control = sock
	deadline := time.Now().Add(slow(10 * time.Second))
	for time.Now().Before(deadline) {
		if err := call(sock, "status", nil, nil); err == nil {
			return r
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.t.Fatalf("%s never answered", sock)
	return nil
}

// call runs one control command, bounded.
func call(sock, cmd string, args, res any) error {
	ctx, cancel := context.WithTimeout(context.Background(), slow(5*time.Second))
	defer cancel()
	return control.Call(ctx, sock, cmd, args, res)
}

// migrate runs migration i from src to dst under spam on both control
// sockets, checks its outcome and reports whether it completed.
func (c *spamChain) migrate(i int, src, dst *guestRun) bool {
	t := c.t
	args := api.MigrateArgs{Plugin: c.plugin, MaxDowntimeMS: 100,
		Transport: map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", freePort(t))}}
	srcCreds, dstCreds, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	srcArgs, dstArgs := args, args
	srcArgs.Credentials, dstArgs.Credentials = &srcCreds, &dstCreds
	srcSpam, dstSpam := startSpam(src.control), startSpam(dst.control)
	defer srcSpam.stop()
	defer dstSpam.stop()
	if err := call(dst.control, "migrate-incoming", dstArgs, nil); err != nil {
		t.Fatalf("migration %d: migrate-incoming: %v", i, err)
	}
	dstAccepted := time.Now()
	srcAccepted := c.send(i, src, srcArgs)
	srcRep, srcLast := c.follow(i, "source", src)
	dstRep, dstLast := c.follow(i, "destination", dst)
	srcSpam.stop()
	dstSpam.stop()
	c.checkSpam(i, "source", srcSpam, srcAccepted, srcLast)
	c.checkSpam(i, "destination", dstSpam, dstAccepted, dstLast)
	if srcRep.Status == "exited" {
		t.Fatalf("migration %d: the source VMM exited: %s", i, srcRep.Error)
	}
	if srcRep.Status == "completed" {
		if st := src.state(t); st != vmm.StateMigrated {
			t.Fatalf("migration %d completed but the source is %s: the guest may run twice", i, st)
		}
		if dstRep.Status != "completed" {
			t.Fatalf("migration %d: the source completed, the destination reports %+v", i, dstRep)
		}
		c.mustRun(i, "destination", dst)
		c.handed = append(c.handed, handedOver{run: src, at: time.Now(), baseline: -1})
		return true
	}
	t.Logf("migration %d %s: %s", i, srcRep.Status, srcRep.Error)
	select { // a destination whose migration failed exits
	case <-dst.done:
	case <-time.After(slow(10 * time.Second)):
		if st := dst.state(t); st == vmm.StateRunning {
			t.Fatalf("migration %d %s but the destination runs the guest too", i, srcRep.Status)
		}
		dst.kill()
	}
	c.mustRun(i, "source", src)
	return false
}

// send starts the migration on the source; a pause from the spam may
// have landed just before, which migrate-send refuses: resume and retry.
func (c *spamChain) send(i int, src *guestRun, args api.MigrateArgs) time.Time {
	for attempt := 0; ; attempt++ {
		err := call(src.control, "migrate-send", args, nil)
		if err == nil {
			return time.Now()
		}
		if !strings.Contains(err.Error(), "cannot migrate a VM that is paused") || attempt == 1000 {
			c.t.Fatalf("migration %d: migrate-send (attempt %d): %v", i, attempt, err)
		}
		call(src.control, "resume", nil, nil)
	}
}

// follow polls migrate-status on r until done (at most 20 s: a
// migration of 64 MiB over loopback takes ~100 ms) and returns the
// report and when the last "not done" answer's request was sent.
func (c *spamChain) follow(i int, side string, r *guestRun) (report migrateReport, lastRunning time.Time) {
	deadline := time.Now().Add(slow(20 * time.Second))
	for {
		sent := time.Now()
		var st struct {
			Done   bool           `json:"done"`
			Report *migrateReport `json:"report"`
		}
		if err := call(r.control, "migrate-status", nil, &st); err != nil {
			select {
			case <-r.done: // a destination whose migration failed exits
				return migrateReport{Status: "exited", Error: err.Error()}, lastRunning
			default:
			}
			c.t.Fatalf("migration %d: %s migrate-status: %v", i, side, err)
		}
		if st.Done && st.Report != nil {
			return *st.Report, lastRunning
		}
		lastRunning = sent
		if time.Now().After(deadline) {
			c.t.Fatalf("migration %d hung: the %s reports no end after %v", i, side, slow(20*time.Second))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkSpam fails if a pause or resume succeeded while the migration
// certainly owned the VM: sent after migrate-send/-incoming was accepted
// and answered before a migrate-status that still said "not done" was
// sent.
func (c *spamChain) checkSpam(i int, side string, s *spammer, accepted, lastRunning time.Time) {
	for _, r := range s.ok {
		if r.sent.After(accepted) && r.answered.Before(lastRunning) {
			c.t.Fatalf("migration %d: %s %s succeeded %v after the migration began, while it ran",
				i, side, r.cmd, r.sent.Sub(accepted).Round(time.Microsecond))
		}
	}
	c.refused += s.refused
	c.succeeded += len(s.ok)
}

// mustRun checks that r runs the guest, resuming it first if a pause
// from the spam landed after the migration had ended.
func (c *spamChain) mustRun(i int, side string, r *guestRun) {
	if st := r.state(c.t); st == vmm.StatePaused {
		if err := call(r.control, "resume", nil, nil); err != nil {
			c.t.Fatalf("migration %d: resume the %s: %v", i, side, err)
		}
	}
	if st := r.state(c.t); st != vmm.StateRunning {
		c.t.Fatalf("migration %d: the %s is %s, want running", i, side, st)
	}
}

// retire checks the sources that handed over long enough ago (all of
// them with wait) for silence, and quits them.
func (c *spamChain) retire(wait bool) {
	kept := c.handed[:0]
	for _, h := range c.handed {
		for {
			age := time.Since(h.at)
			if h.baseline < 0 && age >= 100*time.Millisecond {
				h.baseline = countTicks(h.run)
			}
			if h.baseline >= 0 && age >= 1700*time.Millisecond {
				if n := countTicks(h.run); n != h.baseline {
					c.t.Fatalf("%s printed %d ticks after it handed the guest over: the guest ran twice", h.run.control, n-h.baseline)
				}
				if st := h.run.state(c.t); st != vmm.StateMigrated {
					c.t.Fatalf("%s is %s after handing over, want migrated", h.run.control, st)
				}
				if err := call(h.run.control, "quit", nil, nil); err != nil {
					c.t.Fatalf("quit %s: %v", h.run.control, err)
				}
				break
			}
			if !wait {
				kept = append(kept, h)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c.handed = kept
}

func countTicks(r *guestRun) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.log {
		if tickRE.MatchString(l) {
			n++
		}
	}
	return n
}

// spammer sends pause and resume, in random order with up to 1 ms
// between them, to one control socket until stopped.
type spammer struct {
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
	ok      []spamCall // read after stop
	refused int
}

type spamCall struct {
	cmd            string
	sent, answered time.Time
}

func startSpam(sock string) *spammer {
	s := &spammer{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.quit:
				return
			default:
			}
			cmd := "resume"
			if rand.IntN(2) == 0 {
				cmd = "pause"
			}
			sent := time.Now()
			err := call(sock, cmd, nil, nil)
			var re *control.RemoteError
			switch {
			case err == nil:
				s.ok = append(s.ok, spamCall{cmd, sent, time.Now()})
			case errors.As(err, &re):
				s.refused++
			}
			time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
		}
	}()
	return s
}

// stop ends the spam and waits for its last call (bounded by call's 5 s).
func (s *spammer) stop() {
	s.once.Do(func() { close(s.quit) })
	<-s.done
}
