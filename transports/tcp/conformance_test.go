//go:build linux

package tcp_test

import (
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/transporttest"
	"github.com/ferryvm/ferry/transports/tcp"
)

// TestConformance runs the transport kind's suite in process, with and
// without compression and over one and several streams.
func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name     string
		streams  int64
		compress string
	}{{"streams=1/none", 1, "none"}, {"streams=4/lz4", 4, "lz4"}} {
		t.Run(c.name, func(t *testing.T) {
			transporttest.Run(t, func(t *testing.T, _ transporttest.RAM) (send, recv transport.Transport, sendCfg, recvCfg schema.Config) {
				cfg := schema.Config{"listen": freeAddr(t), "streams": c.streams, "compress": c.compress}
				log := hclog.New(&hclog.LoggerOptions{Level: hclog.Off})
				return tcp.New(log), tcp.New(log), cfg, cfg
			})
		})
	}
}

// pluginName is the name under which the test binary serves this
// transport as a go-plugin process, as cmd/ferry-transport-tcp does.
const pluginName = "ferry-transport-tcp"

func TestMain(m *testing.M) {
	plugintest.Main(m, transporttest.Roles(map[string]func() transport.Transport{
		pluginName: func() transport.Transport { return tcp.New(transport.Logger(tcp.Name)) },
	}))
}

// TestConformancePlugin runs the suite with both sides in plugin
// processes started by transport.Launch, over gRPC, as a VMM runs them.
func TestConformancePlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: plugin processes")
	}
	transporttest.Run(t, func(t *testing.T, ram transporttest.RAM) (send, recv transport.Transport, sendCfg, recvCfg schema.Config) {
		cfg := schema.Config{"listen": freeAddr(t), "streams": int64(2), "compress": "lz4"}
		return transporttest.Launch(t, pluginName, ram.Send), transporttest.Launch(t, pluginName, ram.Recv), cfg, cfg
	})
}

// freeAddr returns a loopback listen address for a receiver the suite
// may close and open again (transporttest.FreeAddr).
func freeAddr(t *testing.T) string { return transporttest.FreeAddr(t, "127.0.0.1") }
