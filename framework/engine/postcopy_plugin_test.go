package engine

import (
	"os"
	"path/filepath"
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

// TestPostcopyPluginKilled: the source's transport plugin process dies
// during post-copy: the engine closes the transport and opens it again,
// which starts a new plugin process; it resumes over the new connection
// and completes, every page landing exactly once.
func TestPostcopyPluginKilled(t *testing.T) {
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
