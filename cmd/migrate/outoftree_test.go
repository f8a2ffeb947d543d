package main

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/hint/hinttest"
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
)

// TestOutOfTreeProvider is docs/PLUGINS.md's "Writing a provider in your
// own module", done the way a third party does it: testdata/zeroscan
// becomes a Go module of its own in a temporary directory (go.mod
// requiring github.com/ferryvm/ferry, replaced by this repository; go.sum
// copied from it), whose own tests (the conformance suite, in process
// and as a plugin) pass; its binary is built into a directory of its
// own, which a job names in plugin_path; migrate's job loading finds it
// there and checks its block (addresses) against its schema, the
// conformance suite passes over the built binary, and a migration of a
// vmtest VM (framework/session, the loopback transport from plugin_dir)
// completes with its hints.
//
// It runs go build and go test: it needs no network when the module
// cache holds this repository's dependencies (GOFLAGS=-mod=mod, GOPROXY
// as the environment sets it).
func TestOutOfTreeProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go module")
	}
	mod, bin := t.TempDir(), t.TempDir()
	writeModule(t, mod)
	goCmd(t, mod, "build", "-o", filepath.Join(bin, "ferry-hint-zeroscan"), "./cmd/ferry-hint-zeroscan")
	t.Logf("the module's own tests:\n%s", goCmd(t, mod, "test", "-count=1", "./..."))

	plugin := filepath.Join(bin, "ferry-hint-zeroscan")
	t.Run("Conformance", func(t *testing.T) {
		hinttest.Run(t, func(t *testing.T, vm hint.VM, _ hint.Host) hint.Provider {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p, err := hint.Launch(ctx, plugin, vm.Files, hinttest.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Kill)
			return p
		}, hinttest.WithConfig(hint.Config{"min_gpa": "0x1000", "max_gpa": "4GiB"}))
	})
	t.Run("Migrate", func(t *testing.T) { migrateWith(t, bin) })
}

// writeModule copies testdata/zeroscan to mod as module example.com/zeroscan
// and returns this repository's root.
func writeModule(t *testing.T, mod string) string {
	t.Helper()
	root := strings.TrimSpace(goCmd(t, ".", "env", "GOMOD"))
	root = filepath.Dir(root)
	src := filepath.Join("testdata", "zeroscan")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dst := filepath.Join(mod, strings.TrimPrefix(path, src))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	gomod := "module example.com/zeroscan\n\ngo 1.26.0\n\n" +
		"require github.com/ferryvm/ferry v0.0.0-00010101000000-000000000000\n\n" +
		"replace github.com/ferryvm/ferry => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err == nil {
		err = os.WriteFile(filepath.Join(mod, "go.mod"), []byte(gomod), 0o644)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(mod, "go.sum"), sum, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// goCmd runs the go command in dir and returns its output.
func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"), "CGO_ENABLED=0", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// migrateWith runs a migration whose job finds zeroscan through
// plugin_path (bin) and the loopback transport in the plugin directory.
func migrateWith(t *testing.T, bin string) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job.hcl")
	src := `plugin_path = [` + quote(bin) + `]
source      { control = "/run/ferry/src.sock" }
destination { control = "/run/ferry/dst.sock" }
transport "loopback" { socket = ` + quote(filepath.Join(dir, "lb.sock")) + ` }
hint "zeroscan" {
  deadline = "5s"
  min_gpa  = "0x100000"
  max_gpa  = "2M"
}
`
	if err := os.WriteFile(job, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	j, ps, code := loadJob(t.Context(), job, plugintest.Dir(), &out)
	if j == nil {
		t.Fatalf("status %d:\n%s", code, out.String())
	}
	if ps.hints[0] != filepath.Join(bin, "ferry-hint-zeroscan") {
		t.Fatalf("zeroscan found at %s, want the plugin_path directory %s", ps.hints[0], bin)
	}

	// The source's free page range 1-2 MiB is zeroed: populated zero
	// pages, which zeroscan reports and the guest never writes.
	srcVM := newTestVM(t, vmtest.Options{Free: []hint.GPARange{{GPA: 1 << 20, Size: 1 << 20}}, WriteEvery: time.Millisecond})
	clear(srcVM.Memory(0)[1<<20 : 2<<20])
	dstVM := newTestVM(t, vmtest.Options{Incoming: true})

	srcCreds, dstCreds, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tr := session.Plugin{Path: ps.transport, Config: j.Transport.Config}
	sspec := session.Spec{Role: transport.RoleSend, Transport: tr, Log: log, Engine: engine.Options{Credentials: srcCreds, VerifyPages: true,
		HintHold: 10 * time.Second}} // a tiny guest: let the provider answer before the bulk pass ends
	dspec := session.Spec{Role: transport.RoleReceive, Transport: tr, Log: log, Engine: engine.Options{Credentials: dstCreds, VerifyPages: true, IncomingTimeout: 30 * time.Second}}
	for _, h := range hintArgs(j, ps) {
		sspec.Hints = append(sspec.Hints, session.Hint{Name: h.Name, Deadline: time.Duration(h.DeadlineMS) * time.Millisecond,
			Plugin: session.Plugin{Path: h.Plugin, Config: h.Config}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var drep engine.Report
	var derr error
	var wg sync.WaitGroup
	wg.Go(func() { drep, derr = session.Receive(ctx, dstVM, dspec) })
	srep, serr := session.Send(ctx, srcVM, srcVM, sspec)
	wg.Wait()
	if serr != nil || derr != nil || srep.Status != engine.StatusCompleted || drep.Status != engine.StatusCompleted {
		t.Fatalf("source %s (%v), destination %s (%v)", srep.Status, serr, drep.Status, derr)
	}
	t.Logf("report: %d passes, %d sent, %d zero, %d skipped %v; hints %+v", srep.Passes, srep.PagesSent, srep.PagesZero,
		srep.PagesSkipped, srep.SkippedBy, srep.Hints)
	if got := srep.SkippedBy["zeroscan"]; got != 256 {
		t.Errorf("zeroscan skipped %d pages, want the 256 zeroed pages of 1-2 MiB", got)
	}
	if err := vmtest.Equal(srcVM, dstVM); err != nil {
		t.Error(err)
	}
	if err := dstVM.Verify(); err != nil {
		t.Error(err)
	}
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

func newTestVM(t *testing.T, opt vmtest.Options) *vmtest.VM {
	t.Helper()
	vm, err := vmtest.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

// testLog sends log lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
