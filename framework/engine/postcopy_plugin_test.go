package engine

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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

// openCounter is the source's launched transport, counting the plugin
// processes that run as each Open begins; its second Open (the first
// reopen) names a socket path no one can dial, so that Open fails in the
// plugin process.
type openCounter struct {
	transport.Transport
	t       *testing.T
	mu      sync.Mutex
	running []int // plugin processes running as each Open began
}

func (o *openCounter) Open(ctx context.Context, req transport.OpenRequest) error {
	n := plugintest.SignalChildren(o.t, loopbackPlugin, 0)
	o.mu.Lock()
	o.running = append(o.running, n)
	second := len(o.running) == 2
	o.mu.Unlock()
	if second {
		req.Config = maps.Clone(req.Config)
		req.Config["socket"] = "/" + strings.Repeat("x", 200) // longer than a unix socket's path: dial fails at once
	}
	return o.Transport.Open(ctx, req)
}

// Answer passes the launched transport's transport.Answerer through.
func (o *openCounter) Answer(ctx context.Context, kind uint32, owed *transport.Owed) error {
	return o.Transport.(transport.Answerer).Answer(ctx, kind, owed)
}

// CloseHoldingListeners passes transport.ListenerHolder through.
func (o *openCounter) CloseHoldingListeners() error { return transport.CloseHolding(o.Transport) }

// TestPostcopyReopenAfterFailedOpenPlugin: with a launched source
// transport, a post-copy reconnect whose first Open fails in the plugin
// process stops that process before the next try (transport.CloseHolding),
// whose Open starts a fresh one and completes; no process outlives Send.
// Before 2026-12-07 the next try's Open went to the process whose Open
// had failed.
func TestPostcopyReopenAfterFailedOpenPlugin(t *testing.T) {
	src, files, dir := pluginSource(t)
	oc := &openCounter{t: t}
	d, r := runPostcopy(t, src, Options{Postcopy: PostcopyAlways, Bandwidth: 64 * mib, ReconnectTimeout: 20 * time.Second}, func(d *scriptDst) {
		d.tr = loopback.New()
		d.req.Config = schema.Config{"socket": filepath.Join(dir, "s")}
		d.srcTr = transporttest.Launch(t, loopbackPlugin, files)
		d.cutAfter, d.reopen = 1000, true
		d.wrapSrc = func(tr transport.Transport) transport.Transport { oc.Transport = tr; return oc }
	})
	left := plugintest.SignalChildren(t, loopbackPlugin, 0)
	if r.serr != nil || r.derr != nil {
		t.Fatalf("send: %v\ndestination: %v", r.serr, r.derr)
	}
	d.check(t)
	if r.srep.Reconnects != 1 || d.resumes != 1 || r.srep.Status != StatusCompleted {
		t.Errorf("reconnects %d resumes %d status %q; want one reconnect, completed", r.srep.Reconnects, d.resumes, r.srep.Status)
	}
	oc.mu.Lock()
	running := slices.Clone(oc.running)
	oc.mu.Unlock()
	// The first Open's process, stopped when the session broke; none
	// when the reconnect's first Open begins, nor when its second does.
	if want := []int{1, 0, 0}; !slices.Equal(running, want) {
		t.Errorf("plugin processes running as each Open began: %v, want %v", running, want)
	}
	if left != 0 {
		t.Errorf("%d transport plugin processes still run after Send returned", left)
	}
}
