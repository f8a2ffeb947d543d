package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
)

// printedCommand is one command migrate printed for the operator to run
// (an indented "echo '<json>' | socat - <address>" line): the control
// command, what it names of the migration, and the line.
type printedCommand struct {
	cmd  string
	name api.IDArgs
	line string
}

// printedCommands is every command out prints for the VMM at sock.
func printedCommands(t *testing.T, out, sock string) []printedCommand {
	t.Helper()
	var cmds []printedCommand
	for _, l := range strings.Split(out, "\n") {
		body, ok := strings.CutPrefix(l, "    echo '")
		if !ok || !strings.HasSuffix(l, " | socat - "+socatUnix(sock)) {
			continue
		}
		var req struct {
			Cmd  string     `json:"cmd"`
			Args api.IDArgs `json:"args"`
		}
		if err := json.Unmarshal([]byte(body[:strings.Index(body, "' | socat")]), &req); err != nil {
			t.Fatalf("a printed command that is no request: %s: %v", l, err)
		}
		cmds = append(cmds, printedCommand{cmd: req.Cmd, name: req.Args, line: strings.TrimSpace(l)})
	}
	return cmds
}

// TestPrintedCommandsNamed: a command migrate prints for the operator to
// run by hand runs later, on whatever VMM answers at that socket by
// then; each one that acts (resume, quit, cancel, switch to post-copy)
// must name the migration in a way that VMM checks, so that one holding
// another migration by then refuses it. Where migrate can name none
// (no id, and no tag fingerprint that VMM honours) or that VMM would not
// check the id (it did not answer, so its version is unknown, and the
// act is a quit or cancel, which a VMM from before control version 1
// does not check; or it is such a VMM), it prints no such command for
// that socket but its migrate-status. Found by review: the quit of an
// unreachable source whose post-copy broke named nothing where neither
// side had an id (run later, after that VMM took another VM, it ends
// that VM); an audit of every printed command then found a bare resume
// for an answering VMM of control version 2, a bare quit or cancel for
// a VMM from before version 1, a bare cancel for a destination that
// took no HELLO, a bare switch to post-copy for a source without a
// nameable fingerprint, and a quit naming an id for a source that did
// not answer.
func TestPrintedCommandsNamed(t *testing.T) {
	for _, tc := range []struct {
		name string
		// set readies c and runs migrate, returning its output.
		set func(t *testing.T, c *runCase) string
		// statusOnly: the side ("send", "receive") for whose socket
		// migrate must print migrate-status alone.
		statusOnly []string
	}{
		{"post-copy broken without an id, the source unreachable", func(t *testing.T, c *runCase) string {
			c.dst.tag = tagA
			c.dst.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
			c.src.kill()
			_, _, stderr := c.resolveMain(t)
			return stderr
		}, []string{"send"}},
		{"post-copy broken in migration a, the source unreachable", func(t *testing.T, c *runCase) string {
			c.dst.id = "a"
			c.dst.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
			c.src.kill()
			_, _, stderr := c.resolveMain(t)
			return stderr
		}, []string{"send"}},
		{"post-copy broken without an id, both sides of control version 2", func(t *testing.T, c *runCase) string {
			c.src.tag, c.dst.tag = tagA, tagA
			c.src.controlV, c.dst.controlV = api.TagsReported, api.TagsReported
			c.src.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
			c.dst.finishWith(0, engine.StatusPostcopyBroken, api.SidePostcopyBroken)
			_, _, stderr := c.resolveMain(t)
			return stderr
		}, []string{"send", "receive"}},
		{"manual: a handover-unknown source of control version 2 without an id, the destination gone", func(t *testing.T, c *runCase) string {
			c.src.tag, c.src.controlV = tagA, api.TagsReported
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.kill()
			_, _, stderr := c.resolveMain(t)
			return stderr
		}, []string{"send", "receive"}},
		// A VMM from before control version 1 refuses an id by name in
		// migrate-resolve (it reports ids, but takes none there): a
		// resume naming one is refused whenever it is run, and one
		// naming nothing would act on whatever that VMM holds; until
		// this case, migrate printed the first, which never resumes.
		{"manual: a handover-unknown source from before control version 1 in migration a, the destination gone", func(t *testing.T, c *runCase) string {
			c.src.id, c.src.older = "a", true
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.kill()
			_, _, stderr := c.resolveMain(t)
			return stderr
		}, []string{"send"}},
		{"a quit not sent to a source from before control version 1", func(t *testing.T, c *runCase) string {
			c.src.id, c.dst.id, c.src.older = "a", "a", true
			c.src.finishWith(0, engine.StatusCompleted, api.SideMigrated)
			c.dst.finishWith(0, engine.StatusCompleted, api.SideRunning)
			_, _, stderr := c.resolveMain(t)
			return stderr
		}, []string{"send"}},
		{"a cancel not sent to a destination that took no HELLO", func(t *testing.T, c *runCase) string {
			c.src.finishWith(0, engine.StatusFailed, api.SideRunning)
			_, _, stderr := c.resolveMain(t)
			return stderr
		}, []string{"receive"}},
		{"-start-postcopy: a source without an id that reports no fingerprint yet", func(t *testing.T, c *runCase) string {
			*c = *startPostcopyCase(t)
			c.src.id, c.dst.id = "", ""
			_, _, stderr := c.startPostcopy(t)
			return stderr
		}, []string{"send"}},
		{"-start-postcopy: a source without an id of control version 2", func(t *testing.T, c *runCase) string {
			*c = *startPostcopyCase(t)
			c.src.id, c.dst.id, c.src.tag, c.src.controlV = "", "", tagA, api.TagsReported
			_, _, stderr := c.startPostcopy(t)
			return stderr
		}, []string{"send"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			out := tc.set(t, c)
			if len(c.resolutions()) != 0 {
				t.Errorf("migrate moved a side: %q", c.resolutions())
			}
			for _, f := range []*fakeVMM{c.src, c.dst} {
				cmds := printedCommands(t, out, f.sock)
				for _, p := range cmds {
					if p.cmd != "migrate-status" && p.name.ID == "" && p.name.TagFingerprint == "" {
						t.Errorf("a printed %s names no migration: %s", p.cmd, p.line)
					}
				}
				for _, role := range tc.statusOnly {
					if f.role == role && (len(cmds) != 1 || cmds[0].cmd != "migrate-status") {
						t.Errorf("printed for the %s %s: %q; want its migrate-status alone", role, f.sock, cmds)
					}
				}
			}
		})
	}
}

// TestNoResumePrintedSaysHow: where manual prints no resume for a side
// that answered handover-unknown (no name that VMM checks), its text
// tells the operator to resume it by hand right after its
// migrate-status shows the migration: that paused copy may be the
// guest's only one, so the text must say which request resumes it
// (migrate-resolve, action resume), not leave an operator who does not
// know the control commands with a paused guest and no way to run it.
// Found by review: it said "Resume it by hand" and named no request.
func TestNoResumePrintedSaysHow(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(c *runCase)
	}{
		{"control version 2 without an id", func(c *runCase) { c.src.tag, c.src.controlV = tagA, api.TagsReported }},
		{"from before control version 1, in migration a", func(c *runCase) { c.src.id, c.src.older = "a", true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRunCase(t)
			tc.set(c)
			c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			c.dst.kill()
			_, _, stderr := c.resolveMain(t)
			_, block, ok := strings.Cut(stderr, "(no resume printed for "+c.src.sock+":")
			if !ok {
				t.Fatalf("no 'no resume printed' text for the source %s", c.src.sock)
			}
			block, _, _ = strings.Cut(block, ":)\n")
			if !strings.Contains(block, `migrate-resolve with action "resume"`) {
				t.Errorf("the text in place of the source's resume names no request that resumes it:\n%s", block)
			}
			if len(c.resolutions()) != 0 {
				t.Errorf("migrate moved a side: %q", c.resolutions())
			}
		})
	}
}
