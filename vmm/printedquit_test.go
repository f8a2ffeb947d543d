package vmm

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/vmm/control"
)

// serveStoppable serves v's control commands on sock until stop (or the
// test's end): a VMM whose process ends, so that another can be started
// at the same socket.
func serveStoppable(t *testing.T, v *VM, sock string) (stop func()) {
	t.Helper()
	s, err := control.NewServer(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	v.Serve(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// TestMigratePrintedQuitsRefusedByAnother: the quits migrate -resolve
// prints for both sides of a post-copy that broke (the binary built
// from cmd/migrate, against this VMM's own control servers) name the
// migration, by its id and, for one without, by the tag fingerprint
// each side reported; run after the VMMs at both sockets ended and
// others took their place, each holding another migration (a source
// whose migration failed and whose guest runs again, which a quit that
// did not check the name would end), each line is refused by this VMM, naming the
// migration the line names, and ends nothing; the same quit naming
// nothing (what migrate printed for a source that did not answer,
// neither side having an id, until cmd/migrate TestPrintedCommandsNamed)
// then ends each. Added for the audit of printed commands (task X); it
// passed when added: the reference VMM checks the name in quit
// (checkIDLocked).
func TestMigratePrintedQuitsRefusedByAnother(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/migrate")
	}
	if _, err := exec.LookPath("socat"); err != nil {
		t.Skip("no socat here to run the printed lines with")
	}
	bin := buildMigrate(t, t.TempDir())
	for _, tc := range []struct {
		name, id, tag string // the broken migration's
		otherID       string // the migration the VMMs that took their place hold
	}{
		{"by id", "pc", "", "b"},
		{"by tag fingerprint", "", tagA, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := &lineSide{v: fakeVM(StateRunning), sock: filepath.Join(dir, "src.sock"), role: transport.RoleSend, id: tc.id, tag: tc.tag}
			stopSrc := serveStoppable(t, src.v, src.sock)
			src.own = claimAs(t, src.v, transport.RoleSend, tc.id, nil)
			src.v.migration().progress(engine.Progress{Phase: engine.PhaseDirty, Handover: engine.HandoverLive, TagFingerprint: tc.tag})
			src.end(t, engine.StatusPostcopyBroken)
			v, m, _, _ := stuckDestinationAs(t, tc.id, tc.tag)
			ran := make(chan struct{})
			stopDst := serveStoppable(t, v, filepath.Join(dir, "dst.sock"))
			go func() { v.Run(context.Background()); close(ran) }()
			endNotHalted(v, m, m.Halt())
			t.Cleanup(func() { v.Stop(); <-ran })

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, stderr, err := runMigrate(ctx, t, bin, "-resolve", "-config", lineJob(t, dir)); err == nil {
				t.Fatalf("migrate -resolve succeeded, want the guest said lost")
			} else {
				lines := printedLines(stderr)
				stopSrc()
				stopDst()
				for _, name := range []string{"src.sock", "dst.sock"} {
					if len(lines[name]) != 1 {
						t.Fatalf("migrate printed %d lines for %s, want its quit: %q", len(lines[name]), name, lines[name])
					}
					// Another VMM at the socket, in another migration,
					// whose guest runs (its migration failed, the guest
					// resumed): a quit that took would end that guest.
					other := newLineSide(t, dir, name, transport.RoleSend, tc.otherID, tagB)
					endFailedResumed(t, other.v, other.own, tagB)
					other.id, other.tag = tc.id, tc.tag // what the line names
					refusedUnchanged(t, other, other.state(), func(*lineSide) string { return runLine(ctx, t, lines[name][0]) })
					// The same quit naming nothing ends that VMM's guest.
					bare := strings.Replace(lines[name][0], `,"args":`+lineArgsJSON(tc.id, tc.tag), "", 1)
					if ans := runLine(ctx, t, bare); !strings.Contains(ans, `"ok":true`) || !other.stopped() {
						t.Errorf("%s: answer %q, stopped %v; want it taken: the name is what keeps it from ending another guest", bare, ans, other.stopped())
					}
				}
			}
		})
	}
}

// lineArgsJSON is the arguments a printed quit names migration id, or
// without one tag fingerprint tag, with.
func lineArgsJSON(id, tag string) string {
	if id != "" {
		return `{"id":"` + id + `"}`
	}
	return `{"tag_fingerprint":"` + tag + `"}`
}
