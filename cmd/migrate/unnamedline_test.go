package main

import (
	"strings"
	"testing"
)

// TestResolveUnreachableNamesNoUnknownID: migrate -resolve with both
// control sockets unreachable knows no id nor tag fingerprint of the
// migration. It printed resume lines that named none (a VMM holding
// another migration by the time the operator ran one would have taken
// it) and spoke of "migration (no id)". Now it prints no command that
// names no migration for a side that did not answer: it says the id is
// unknown here, how to learn it (migrate-status on that VMM), and that
// migrate -resolve prints the named command once that VMM answers.
func TestResolveUnreachableNamesNoUnknownID(t *testing.T) {
	c := newRunCase(t)
	jobFile := c.writeJob(t)
	c.src.kill()
	c.dst.kill()
	var o, e strings.Builder
	if code := realMain([]string{"-resolve", "-config", jobFile}, &o, &e); code == 0 {
		t.Errorf("exit %d, want a failure: nothing was resolved", code)
	}
	out := o.String() + e.String()
	t.Log(out)
	if strings.Contains(out, "(no id)") {
		t.Errorf("migrate speaks of a migration %q:\n%s", "(no id)", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "migrate-resolve") && !strings.Contains(l, `"id":`) && !strings.Contains(l, `"tag_fingerprint":`) {
			t.Errorf("a printed resolve command names no migration: %s", strings.TrimSpace(l))
		}
	}
	for _, sock := range []string{c.src.sock, c.dst.sock} {
		if l := commandLine(out, socatUnix(sock)); !strings.Contains(l, `{"cmd":"migrate-status"}`) {
			t.Errorf("the first command for %s is %q, want its migrate-status, to learn the migration's id", sock, l)
		}
	}
	if !strings.Contains(out, "migrate -resolve -config "+shellArg(jobFile)) {
		t.Errorf("no migrate -resolve line to run once a VMM answers")
	}
}
