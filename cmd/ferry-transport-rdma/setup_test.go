package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// TestSetupTimes prints (t.Log; nothing is asserted) how long this
// plugin's setup takes, in processes of its own on both sides as a VMM
// runs it (provider tcp, loopback, 1 MiB of guest RAM): from a
// process's start to ready (transport.Launch: loaded, go-plugin's
// handshake done); the destination's Open until it listens ("waiting
// for the source"); then the source's Open, begun once the destination
// listens. First in the processes just started, then again after a
// Close, which stops them, so each Open starts a process of its own (as
// the engine's next try does). A source that waited for libfabric's
// first use says for how long (not counted in connect_timeout):
//
//	go test -run TestSetupTimes -v ./cmd/ferry-transport-rdma/
//
// docs/BENCHMARKS.md ("RDMA: libfabric's first use") records the figures.
func TestSetupTimes(t *testing.T) {
	const prov = "tcp"
	if err := fabric.Providers("127.0.0.1", prov)[prov]; err != nil {
		t.Skipf("SKIPPED: provider %s does not work here: %v", prov, err)
	}
	ram := memfdFile(t, 1<<20)
	layout := []transport.RAMRegion{{GPA: 0, Size: 1 << 20}}
	sc, rc, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{"provider": prov, "listen": localAddr(t), "cleartext_pages": true}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dlog, slog := newLines(), newLines()
	launch := func(side string, log *lines) transport.Transport {
		start := time.Now()
		tr, err := transport.Launch(ctx, plugintest.Path(t, pluginName), []*os.File{ram},
			hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: log}))
		if err != nil {
			t.Fatalf("launch the %s's plugin: %v", side, err)
		}
		t.Logf("the %s's plugin: start to ready %v", side, time.Since(start).Round(time.Millisecond))
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	dst, src := launch("destination", dlog), launch("source", slog)
	for round, how := range []string{"in the processes just started", "each in a process started by Open"} {
		if round > 0 {
			dst.Close()
			src.Close()
		}
		listening := dlog.count("waiting for the source")
		dstDone := make(chan error, 1)
		start := time.Now()
		go func() {
			dstDone <- dst.Open(ctx, transport.OpenRequest{Role: transport.RoleReceive, Config: cfg, RAM: layout,
				Files: []*os.File{ram}, Credentials: rc})
		}()
		if err := dlog.wait(ctx, "waiting for the source", listening+1); err != nil {
			t.Fatalf("the destination never listened: %v; its log:\n%s", err, dlog)
		}
		dstListened := time.Since(start)
		waited := slog.count("waited for libfabric")
		start = time.Now()
		if err := src.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, Config: cfg, RAM: layout,
			Files: []*os.File{ram}, Credentials: sc}); err != nil {
			t.Fatalf("the source's Open: %v", err)
		}
		srcTook := time.Since(start)
		if err := <-dstDone; err != nil {
			t.Fatalf("the destination's Open: %v", err)
		}
		wait := "no wait for libfabric logged"
		if slog.count("waited for libfabric") > waited {
			wait = "waited " + slog.last(`waited=(\S+)`) + " for libfabric"
		}
		t.Logf("Open %s: the destination listened after %v; the source's Open then took %v (%s)", how,
			dstListened.Round(time.Millisecond), srcTook.Round(time.Millisecond), wait)
	}
}

// lines is a plugin's log, as the host receives it.
type lines struct {
	mu   sync.Mutex
	text []string
	grew chan struct{} // closed and replaced at each line
}

func newLines() *lines { return &lines{grew: make(chan struct{})} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.text = append(l.text, string(p))
	close(l.grew)
	l.grew = make(chan struct{})
	return len(p), nil
}

// count is how many lines contain s.
func (l *lines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.text {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// wait waits, within ctx, until n lines contain s.
func (l *lines) wait(ctx context.Context, s string, n int) error {
	for {
		l.mu.Lock()
		grew := l.grew
		l.mu.Unlock()
		if l.count(s) >= n {
			return nil
		}
		select {
		case <-grew:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// last is the first group of expr in the last line it matches.
func (l *lines) last(expr string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	re := regexp.MustCompile(expr)
	for i := len(l.text) - 1; i >= 0; i-- {
		if m := re.FindStringSubmatch(l.text[i]); m != nil {
			return m[1]
		}
	}
	return ""
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.text, "")
}

func memfdFile(t *testing.T, size int64) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate("setup-times", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "setup-times")
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f
}
