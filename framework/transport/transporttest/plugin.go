package transporttest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/transport"
)

// Roles turns transports into plugintest.Main roles that serve them
// through transport.Serve, as a transport's cmd/ main does: a test binary
// started under one of the names is that plugin.
//
//	func TestMain(m *testing.M) {
//		plugintest.Main(m, transporttest.Roles(map[string]func() transport.Transport{
//			"ferry-transport-tcp": func() transport.Transport { return tcp.New(transport.Logger(tcp.Name)) },
//		}))
//	}
func Roles(plugins map[string]func() transport.Transport) map[string]func() int {
	roles := make(map[string]func() int, len(plugins))
	for name, newTransport := range plugins {
		roles[name] = func() int { transport.Serve(newTransport()); return 0 }
	}
	return roles
}

// Launch starts the plugin role name (see Roles) with files through
// transport.Launch, as a VMM does, failing t if it has not started
// within 30 s. The host side logs warnings and errors to t.Log; the
// plugin is closed when the test ends.
func Launch(t *testing.T, name string, files []*os.File) transport.Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Warn, Output: testOutput{t}})
	tr, err := transport.Launch(ctx, plugintest.Path(t, name), files, log)
	if err != nil {
		t.Fatalf("launch the plugin: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

type testOutput struct{ t *testing.T }

func (w testOutput) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }
