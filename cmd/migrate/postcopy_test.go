package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// postcopyVMM serves migrate-start-postcopy as a source VMM does: the
// first call asks for the switch, later ones change nothing; with
// running false it refuses like a VMM without a running migration.
func postcopyVMM(t *testing.T, running bool) (sock string, calls func() int) {
	sock = filepath.Join(t.TempDir(), "src.sock")
	srv, err := control.NewServer(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	srv.Handle("migrate-start-postcopy", func(context.Context, json.RawMessage) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if !running {
			return nil, errors.New("no migration is running on this VM: start one with migrate-send (migrate -config JOB) first")
		}
		if n > 1 {
			return api.StartPostcopyResult{Phase: engine.PhaseDirty, Message: "post-copy was already requested; nothing changed"}, nil
		}
		return api.StartPostcopyResult{Requested: true, Phase: engine.PhaseDirty,
			Message: "requested: the source switches to post-copy at its next batch of pages"}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return sock, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func writeJob(t *testing.T, srcSock string) string {
	path := filepath.Join(t.TempDir(), "job.hcl")
	text := "source { control = \"" + srcSock + "\" }\ndestination { control = \"/nonexistent/dst.sock\" }\ntransport \"tcp\" {}\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestStartPostcopyMain: migrate -start-postcopy -config JOB asks the
// job's source VMM, prints what happened, and says so when it was asked
// before; a VMM without a running migration is exit 1 with its reason.
func TestStartPostcopyMain(t *testing.T) {
	sock, calls := postcopyVMM(t, true)
	path := writeJob(t, sock)
	for i, want := range []string{
		"post-copy requested on the source " + sock + " (phase dirty): requested: the source switches to post-copy at its next batch of pages\n",
		"post-copy already requested on the source " + sock + " (phase dirty): post-copy was already requested; nothing changed\n",
	} {
		var out, errb strings.Builder
		if code := realMain([]string{"-start-postcopy", "-config", path}, &out, &errb); code != 0 {
			t.Fatalf("call %d: exit %d: %s %s", i+1, code, out.String(), errb.String())
		}
		if out.String() != want {
			t.Errorf("call %d printed %q, want %q", i+1, out.String(), want)
		}
	}
	if calls() != 2 {
		t.Errorf("%d calls to the source, want 2", calls())
	}

	sock, _ = postcopyVMM(t, false)
	var out, errb strings.Builder
	if code := realMain([]string{"-config", writeJob(t, sock), "-start-postcopy"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "no migration is running on this VM") || out.Len() != 0 {
		t.Errorf("no migration: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

// TestStartPostcopyFlags: the flag needs a job and is its own command.
func TestStartPostcopyFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-start-postcopy"},
		{"-start-postcopy", "-resolve", "-config", "job.hcl"},
		{"-start-postcopy", "-config", "job.hcl", "extra"},
	} {
		var out, errb strings.Builder
		if code := realMain(args, &out, &errb); code != 2 || !strings.Contains(errb.String(), "migrate -start-postcopy -config job.hcl") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and the usage", args, code, errb.String())
		}
	}
	var out, errb strings.Builder
	path := filepath.Join(t.TempDir(), "bad.hcl")
	os.WriteFile(path, []byte("source {}\n"), 0o600)
	if code := realMain([]string{"-start-postcopy", "-config", path}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "bad.hcl:1") {
		t.Errorf("bad job: exit %d, stderr %q", code, errb.String())
	}
}
