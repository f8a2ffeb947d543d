package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	"github.com/ferryvm/ferry/framework/transport/transporttest"
)

// The test binary doubles as a transport plugin (plugintest.Main), so a
// post-copy test can kill the source's transport process.
const loopbackPlugin = "ferry-transport-loopback"

func TestMain(m *testing.M) {
	plugintest.Main(m, transporttest.Roles(map[string]func() transport.Transport{
		loopbackPlugin: func() transport.Transport { return loopback.New() },
	}))
}

// pluginSource is a 16 MiB source guest dirtied after its bulk pass, the
// RAM files a launched source transport plugin gets, and a directory for
// the loopback plugin's socket, each removed when t ends.
func pluginSource(t *testing.T) (*fakeVM, []*os.File, string) {
	t.Helper()
	src := dataGuest(t, 16*mib)
	allDirtyAfterBulk(src)
	files, _, err := RAMFiles(src.layout, transport.RoleSend)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeFiles(files) })
	dir, err := os.MkdirTemp("", "ferry-pc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return src, files, dir
}

// TestPostcopyPluginKilled: the source's transport plugin process dies
// during post-copy: the engine closes the transport and opens it again,
// which starts a new plugin process; it resumes over the new connection
// and completes, every page landing exactly once.
func TestPostcopyPluginKilled(t *testing.T) {
	src, files, dir := pluginSource(t)
	killed := 0
	d, r := runPostcopy(t, src, Options{Postcopy: PostcopyAlways, Bandwidth: 64 * mib, ReconnectTimeout: 20 * time.Second}, func(d *scriptDst) {
		d.tr = loopback.New()
		d.req.Config = schema.Config{"socket": filepath.Join(dir, "s")}
		d.srcTr = transporttest.Launch(t, loopbackPlugin, files)
		d.cutAfter, d.reopen = 1000, true
		d.killSrc = func() { killed = plugintest.KillChildren(t, loopbackPlugin) }
		d.requester = flood
	})
	if r.serr != nil || r.derr != nil {
		t.Fatalf("send: %v\ndestination: %v", r.serr, r.derr)
	}
	if killed != 1 {
		t.Fatalf("killed %d plugin processes, want 1", killed)
	}
	d.check(t)
	if r.srep.Reconnects != 1 || d.resumes != 1 || r.srep.Status != StatusCompleted || !src.paused || src.resumed != 0 {
		t.Errorf("reconnects %d resumes %d status %q; source paused %v resumed %d",
			r.srep.Reconnects, d.resumes, r.srep.Status, src.paused, src.resumed)
	}
	t.Logf("missing %d after the kill; requested %d pushed %d", d.missing, r.srep.PagesRequested, r.srep.PagesPushed)
}

// TestPostcopyReopenFailedClosed: the source's post-copy connection
// broke and the destination never came back, so every reopen failed at
// Open. A launched transport starts a plugin process for each Open
// after a Close; Send, which returns only once every plugin process the
// migration started exited (docs/EMBEDDING.md), must close it. Before,
// the engine closed the transport only when an Open had succeeded, and
// the process started for the failed reopens outlived Send.
func TestPostcopyReopenFailedClosed(t *testing.T) {
	src, files, dir := pluginSource(t)
	_, r := runPostcopy(t, src, Options{Postcopy: PostcopyAlways, Bandwidth: 64 * mib, ReconnectTimeout: 500 * time.Millisecond}, func(d *scriptDst) {
		d.tr = loopback.New()
		d.req.Config = schema.Config{"socket": filepath.Join(dir, "s")}
		d.srcTr = transporttest.Launch(t, loopbackPlugin, files)
		d.cutAfter = 500 // and never reopens
	})
	// Counted before the test's cleanup closes the transport.
	left := plugintest.SignalChildren(t, loopbackPlugin, 0)
	if !errors.Is(r.serr, ErrPostcopyBroken) {
		t.Fatalf("send: %v, want ErrPostcopyBroken", r.serr)
	}
	if !strings.Contains(r.serr.Error(), "open transport") {
		t.Fatalf("send: %v; want the reopens to fail at Open", r.serr)
	}
	if left != 0 {
		t.Errorf("%d transport plugin processes still run after Send returned", left)
	}
}

// TestOpenFailedClosed: Send whose first Open fails (no destination
// listens) returns with no plugin process left running: a launched
// transport started one for that Open. Before, Send returned its error
// and left the process to whoever closed the transport later.
func TestOpenFailedClosed(t *testing.T) {
	src := dataGuest(t, mib)
	files, _, err := RAMFiles(src.layout, transport.RoleSend)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeFiles(files) })
	tr := transporttest.Launch(t, loopbackPlugin, files)
	scred, _, err := transport.MintCredentials(true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = Send(ctx, src, tr, Options{Credentials: scred, Log: testLogger(t),
		Transport: schema.Config{"socket": filepath.Join(t.TempDir(), "nobody")}})
	left := plugintest.SignalChildren(t, loopbackPlugin, 0)
	if err == nil || !strings.Contains(err.Error(), "open transport") {
		t.Fatalf("Send: %v; want its Open to fail", err)
	}
	if left != 0 {
		t.Errorf("%d transport plugin processes still run after Send returned", left)
	}
}
