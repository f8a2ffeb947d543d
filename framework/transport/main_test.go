package transport_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
)

// The test binary doubles as the plugin binaries: TestMain links it
// under the names of plugins below, and a process started under one of
// them serves that plugin instead of running tests (go-plugin's own
// examples re-execute the test binary the same way).
var plugins = map[string]func() transport.Transport{
	"ferry-transport-loopback": func() transport.Transport { return loopback.New() },
	"ferry-transport-files":    filesPlugin,
	"ferry-transport-crash":    crashPlugin,
}

// pluginDir holds the links; set by TestMain.
var pluginDir string

func TestMain(m *testing.M) {
	if impl, ok := plugins[filepath.Base(os.Args[0])]; ok {
		transport.Serve(impl())
		os.Exit(0)
	}
	if filepath.Base(os.Args[0]) == hostName {
		os.Exit(host())
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pluginDir, err = os.MkdirTemp("", "ferry-transport-plugins")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(pluginDir)
	for _, name := range append(slices.Collect(maps.Keys(plugins)), hostName) {
		if err := os.Symlink(exe, filepath.Join(pluginDir, name)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// launch starts plugin name with files; the test closes it.
func launch(t *testing.T, name string, files []*os.File) transport.Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := transport.Launch(ctx, filepath.Join(pluginDir, name), files, testLogger(t))
	if err != nil {
		t.Fatalf("launch %s: %v", name, err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// testLogger collects the host's and the plugins' logs (a plugin's
// non-JSON stderr, such as a race report, arrives at Debug). Warnings
// and errors go to the test log; a data race in a plugin fails the test.
func testLogger(t *testing.T) hclog.Logger {
	w := &logSink{t: t}
	t.Cleanup(w.finish)
	return hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Debug, Output: w})
}

type logSink struct {
	mu    sync.Mutex
	t     *testing.T
	all   strings.Builder
	race  bool
	ended bool
}

func (w *logSink) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := string(p)
	w.all.WriteString(s)
	w.race = w.race || strings.Contains(s, "DATA RACE")
	if !w.ended && (strings.Contains(s, "[ERROR]") || strings.Contains(s, "[WARN]")) {
		w.t.Log(strings.TrimSpace(s))
	}
	return len(p), nil
}

func (w *logSink) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	if w.race {
		w.t.Errorf("a plugin process reported a data race:\n%s", w.all.String())
	}
}

// filesPlugin answers RecvMessage with what it finds in its RAM: for
// each region of the last Open, the descriptor number of its file and
// the region's first 16 bytes.
func filesPlugin() transport.Transport {
	var mu sync.Mutex
	var req transport.OpenRequest
	return &transport.Mock{
		OpenFunc: func(_ context.Context, r transport.OpenRequest) error {
			mu.Lock()
			defer mu.Unlock()
			req = r
			return nil
		},
		RecvMessageFunc: func(context.Context) (transport.Message, error) {
			mu.Lock()
			defer mu.Unlock()
			var out []byte
			for _, g := range req.RAM {
				f := req.Files[g.File]
				b := make([]byte, 16)
				if _, err := f.ReadAt(b, int64(g.Offset)); err != nil {
					return transport.Message{}, err
				}
				out = fmt.Appendf(out, "fd%d:%s;", f.Fd(), b)
			}
			return transport.Message{Kind: 1, Payload: out}, nil
		},
		CloseFunc: func() error { return nil },
	}
}

// crashPlugin works until Flush, which kills the process.
func crashPlugin() transport.Transport {
	return &transport.Mock{
		InfoFunc:  func(context.Context) (transport.Info, error) { return transport.Info{Name: "crash"}, nil },
		FlushFunc: func(context.Context) error { os.Exit(3); return nil },
		RecvMessageFunc: func(ctx context.Context) (transport.Message, error) {
			<-ctx.Done()
			return transport.Message{}, ctx.Err()
		},
		SendMessageFunc: func(context.Context, transport.Message) error { return errors.New("unused") },
		CloseFunc:       func() error { return nil },
	}
}
