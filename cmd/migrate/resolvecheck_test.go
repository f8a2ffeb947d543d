package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/vmm/api"
)

// The helpers the migrate -resolve tests share: run the resolve of a
// runCase's job (as the command, or the resolver in process), then
// check what its two fake VMMs were asked and what migrate said. They
// check text only where migrate wrote it: a caller passes the stream
// (or both) its words go to.

// resolveMain runs migrate -resolve for c's job as the command does
// (realMain), and logs its exit code, the calls both VMMs got and what
// it printed.
func (c *runCase) resolveMain(t *testing.T) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	code = realMain([]string{"-resolve", "-config", c.writeJob(t)}, &out, &errb)
	t.Logf("exit %d, calls %s\n%s%s", code, c.callList(), out.String(), errb.String())
	return code, out.String(), errb.String()
}

// resolveInProcess runs the resolver of c's job in process, resolving
// migration id ("": whatever the two sides report, as -resolve without
// a migrate before it), waiting at most wait for a side still
// migrating; it logs the verdict, the error, the calls both VMMs got
// and what it printed, and returns the verdict, that text and the
// error.
func (c *runCase) resolveInProcess(t *testing.T, id string, wait time.Duration) (verdict, string, error) {
	t.Helper()
	var out strings.Builder
	r := newResolver(fakeJob(c.src, c.dst), &out)
	r.id, r.wait = id, wait
	v, err := r.resolve()
	t.Logf("verdict %d, err %v, calls %s\n%s", v, err, c.callList(), out.String())
	return v, out.String(), err
}

// wantAsked checks the acts each VMM was asked (fakeVMM.acts, "cmd id"
// joined by commas, refused or not): src of the source's, dst of the
// destination's.
func (c *runCase) wantAsked(t *testing.T, src, dst string) {
	t.Helper()
	for _, side := range []struct {
		name string
		f    *fakeVMM
		want string
	}{{"source", c.src, src}, {"destination", c.dst, dst}} {
		if got := strings.Join(side.f.actIDs(), ","); got != side.want {
			t.Errorf("the %s %s was asked %q, want %q", side.name, side.f.sock, got, side.want)
		}
	}
}

// wantNothingAsked checks that neither VMM was asked to act (resume,
// discard, cancel, quit, a post-copy switch): nothing was moved. A
// query does not count.
func (c *runCase) wantNothingAsked(t *testing.T) {
	t.Helper()
	c.wantAsked(t, "", "")
}

// wantSays checks that text says each of want.
func wantSays(t *testing.T, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("migrate does not say %q", w)
		}
	}
}

// wantSaysNone checks that text says none of bad.
func wantSaysNone(t *testing.T, text string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(text, b) {
			t.Errorf("migrate says %q", b)
		}
	}
}

// wantNoCommand checks that text holds no command for the operator to
// run by hand (every one migrate prints is a socat line, controlLine):
// migrate printed none where it cannot tell what the VMM holds, or
// that it is this job's side of the migration. why says which.
func wantNoCommand(t *testing.T, text, why string) {
	t.Helper()
	if strings.Contains(text, "socat") {
		t.Errorf("migrate prints a command to run by hand: %s", why)
	}
}

// resolveRefused runs migrate -resolve for c's job (resolveMain) and
// checks what every refusal shows: exit 1, neither VMM asked to act,
// and no command printed to run by hand (on either stream). It returns
// what migrate wrote to stderr, where it says why.
func (c *runCase) resolveRefused(t *testing.T) string {
	t.Helper()
	code, stdout, stderr := c.resolveMain(t)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	c.wantNothingAsked(t)
	wantNoCommand(t, stdout+stderr, "a refused resolve moves nothing, by migrate or by hand")
	return stderr
}

// inNoMigration makes f a VMM that takes part in no migration: it
// reports no role, done, side none. f.id is left as set: the fake
// reports it whatever its side.
func (f *fakeVMM) inNoMigration() {
	f.role = ""
	f.finishWith(0, "", api.SideNone)
}
