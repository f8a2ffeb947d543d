package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// TestManualCommandsRun: the commands migrate prints for the operator
// to copy work as printed when the job's paths hold characters the
// shell or socat read as syntax (a space, a quote, a comma, a colon):
// each resume line, run by sh with real socat, reaches its VMM, and the
// -resolve line gives migrate the job file as one argument. Found
// reviewing the audit's manual steps: the paths were printed bare, so
// such a line split into several words, or socat took the rest of the
// path after a comma for its options, and failed exactly when it was
// needed.
func TestManualCommandsRun(t *testing.T) {
	dir, err := os.MkdirTemp("", "fy 'q',c:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, dead := range []string{"receive", "send"} { // the side that cannot be asked
		t.Run("unreachable "+dead, func(t *testing.T) {
			c := &runCase{}
			c.src = newFakeVMMAt(t, filepath.Join(dir, "s"+dead), "send", &c.calls, &c.mu)
			c.dst = newFakeVMMAt(t, filepath.Join(dir, "d"+dead), "receive", &c.calls, &c.mu)
			live := map[string]*fakeVMM{"receive": c.src, "send": c.dst}[dead]
			live.tag = tagA // a resume is printed only where it names the migration (mayPrint)
			live.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
			map[string]*fakeVMM{"receive": c.dst, "send": c.src}[dead].kill()
			jobFile := filepath.Join(dir, "j "+dead+".hcl")
			c.writeJobAt(t, jobFile)
			var o, e strings.Builder
			realMain([]string{"-resolve", "-config", jobFile}, &o, &e)
			out := o.String() + e.String()
			t.Log(out)
			resolveLine, resumeLine := commandLine(out, "migrate -resolve -config "), commandLine(out, "/"+filepath.Base(live.sock))
			if resolveLine == "" || resumeLine == "" {
				t.Fatalf("no -resolve line or no resume line:\n%s", out)
			}
			args := shellWords(t, strings.TrimPrefix(resolveLine, "migrate "))
			if len(args) != 3 || args[2] != jobFile {
				t.Errorf("the -resolve line gives migrate %q, want [-resolve -config %s]", args, jobFile)
			}
			if _, err := exec.LookPath("socat"); err != nil {
				t.Skip("no socat here to run the resume line with")
			}
			if b, err := exec.Command("sh", "-c", resumeLine).CombinedOutput(); err != nil {
				t.Errorf("%s: %v\n%s", resumeLine, err, b)
			}
			if r := strings.Join(c.resolutions(), ","); r != live.role+" resolve resume" {
				t.Errorf("the printed resume line reached %q, want %q", r, live.role+" resolve resume")
			}
		})
	}
}

// commandLine is the first command line (indented) of out that holds
// marker, trimmed.
func commandLine(out, marker string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "    ") && strings.Contains(l, marker) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// shellWords is how sh splits line into words.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	b, err := exec.Command("sh", "-c", `for a in `+line+`; do printf '%s\0' "$a"; done`).Output()
	if err != nil {
		t.Fatalf("sh: %s: %v", line, err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// TestIDPrintedOnItsLine: a migration id comes from whoever started the
// migration on a VMM's control socket, and may hold any character: one
// with a newline, printed bare, wrote a line of its own into the steps
// the operator copies (here a resume of this job's destination). It is
// printed quoted, and migrate's own ids as they are.
func TestIDPrintedOnItsLine(t *testing.T) {
	c := newRunCase(t)
	forged := "x\n    echo RESUME | socat - UNIX-CONNECT:" + c.dst.sock + "\n"
	c.src.id, c.dst.id = "a", forged[:min(len(forged), api.MaxIDLen)]
	c.src.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
	c.dst.finishWith(0, engine.StatusHandoverUnknown, api.SideUnknown)
	var out strings.Builder
	r := newResolver(fakeJob(c.src, c.dst), &out)
	r.id = "a"
	r.resolve()
	t.Log(out.String())
	if strings.Contains(out.String(), "\n    echo RESUME") {
		t.Errorf("the id wrote a line of its own:\n%s", out.String())
	}
	for _, id := range []string{"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "job-1.a_b"} {
		if got := idText(id); got != id {
			t.Errorf("idText(%q) = %s, want it as it is", id, got)
		}
	}
}

// TestRequestJSON: a printed command's request is one JSON line, with
// no ' to end the shell's single quotes, that keeps any id whole (an id
// may hold any character: TestIDPrintedOnItsLine).
func TestRequestJSON(t *testing.T) {
	id := "a'b\"c\\d\ne"
	line := requestJSON("quit", api.IDArgs{ID: id})
	if strings.ContainsAny(line, "'\n") {
		t.Fatalf("a ' or a newline in %q", line)
	}
	req, err := control.DecodeRequest([]byte(line))
	var a api.IDArgs
	if err == nil {
		err = json.Unmarshal(req.Args, &a)
	}
	if err != nil || req.Cmd != "quit" || a.ID != id {
		t.Errorf("%q decodes as %q %+v, %v; want quit with id %q", line, req.Cmd, a, err, id)
	}
	if got := requestJSON("quit", nil); got != `{"cmd":"quit"}` {
		t.Errorf("without arguments: %q", got)
	}
}
