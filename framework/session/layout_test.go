package session_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
)

// recordingPlugin is an executable at an absolute path that, started,
// leaves a file named after it in dir and exits: whether a plugin
// process was started at all, whatever became of it.
func recordingPlugin(t *testing.T, dir, name string) (path, mark string) {
	t.Helper()
	path, mark = filepath.Join(dir, name), filepath.Join(dir, name+".started")
	script := "#!/bin/sh\n: > '" + mark + "'\nexit 1\n"
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return path, mark
}

// TestBadLayoutStartsNothing: Open, Send and Receive refuse a guest RAM
// layout that framework.Layout.Check refuses, with its reason, before
// any plugin process (transport or hint provider) starts; the reports
// say failed. Before, Open started the transport plugin (and on the
// sending side the providers) and only the engine refused the layout
// afterwards.
func TestBadLayoutStartsNothing(t *testing.T) {
	vm := newFakeVM(t)
	good := vm.RAM()
	overlap := framework.Layout{good[0], good[0]}
	unaligned := framework.Layout{{GPA: 0, Size: 100, Fd: good[0].Fd}}
	for _, c := range []struct {
		name   string
		layout framework.Layout
		want   string
	}{
		{"nil", nil, "no RAM regions"},
		{"empty", framework.Layout{}, "no RAM regions"},
		{"overlap", overlap, "overlaps"},
		{"unaligned", unaligned, "not page-aligned"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			trPath, trMark := recordingPlugin(t, dir, "ferry-transport-recording")
			hintPath, hintMark := recordingPlugin(t, dir, "ferry-hint-recording")
			spec := session.Spec{Transport: session.Plugin{Path: trPath}, Log: slog.New(newRecords()),
				Hints: []session.Hint{{Name: "balloon", Plugin: session.Plugin{Path: hintPath}}}}
			lk := startLeakCheck(t)
			for _, role := range []transport.Role{transport.RoleSend, transport.RoleReceive} {
				spec.Role = role
				s, err := session.Open(context.Background(), c.layout, spec)
				if err == nil {
					s.Close()
				}
				if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "guest RAM layout") {
					t.Errorf("open to %v: %v, want the layout refused (%q)", role, err, c.want)
				}
			}
			bad := &fakeVM{fd: vm.fd, mem: vm.mem, layout: c.layout}
			rep, err := session.Send(context.Background(), bad, nil, spec)
			checkRefused(t, "send", rep, err, c.want)
			rep, err = session.Receive(context.Background(), bad, spec)
			checkRefused(t, "receive", rep, err, c.want)
			for _, mark := range []string{trMark, hintMark} {
				if _, err := os.Stat(mark); err == nil {
					t.Errorf("%s was started for a layout that cannot be migrated", strings.TrimSuffix(filepath.Base(mark), ".started"))
				}
			}
			if bad.paused || bad.resumed != 0 || bad.state != nil {
				t.Error("the VM was touched")
			}
			lk.check(t)
		})
	}
}

func checkRefused(t *testing.T, side string, rep engine.Report, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: error %v, want one saying %q", side, err, want)
	}
	if rep.Status != engine.StatusFailed || err == nil || rep.Error != err.Error() {
		t.Errorf("%s: report %+v, want failed with the error", side, rep)
	}
}
