package rdma_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/transporttest"
	"github.com/ferryvm/ferry/transports/rdma"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
)

// softProviders are the libfabric providers that need no RDMA hardware.
var softProviders = []string{"tcp", "sockets", "net"}

// providers returns the software providers that work here, skipping the
// test loudly when none does; with FERRY_RDMA_REQUIRE set (for example
// "verbs"), the providers it names must work or the test fails.
func providers(t *testing.T) []string {
	t.Helper()
	var ok []string
	for name, err := range fabric.Providers("127.0.0.1", softProviders...) {
		if err != nil {
			t.Logf("provider %s does not work here: %v", name, err)
			continue
		}
		ok = append(ok, name)
	}
	// Hardware: verbs runs too where a device answers; otherwise a loud skip.
	if err := fabric.Providers(hostFor("verbs"), "verbs")["verbs"]; err == nil {
		ok = append(ok, "verbs")
	} else {
		t.Logf("SKIPPED provider verbs (no RDMA device here; FERRY_RDMA_REQUIRE=verbs makes this a failure): %v", err)
	}
	if req := os.Getenv("FERRY_RDMA_REQUIRE"); req != "" {
		for _, name := range strings.Split(req, ",") {
			if err := fabric.Providers(hostFor(name), name)[name]; err != nil {
				t.Fatalf("FERRY_RDMA_REQUIRE=%s: provider %s does not work here: %v", req, name, err)
			}
		}
	}
	if len(ok) == 0 {
		t.Skipf("SKIPPED: no libfabric software provider works here (built with cgo and libfabric: %v)", fabric.Supported)
	}
	return sorted(ok)
}

// hostFor is where a provider's device answers: software providers on
// loopback; verbs on the address in FERRY_RDMA_VERBS_HOST (an IPoIB or
// RoCE interface's address).
func hostFor(provider string) string {
	if h := os.Getenv("FERRY_RDMA_VERBS_HOST"); provider == "verbs" && h != "" {
		return h
	}
	return "127.0.0.1"
}

func sorted(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func config(t *testing.T, provider string) schema.Config {
	return schema.Config{"provider": provider, "listen": freeAddr(t, hostFor(provider)), "cleartext_pages": true,
		"connect_timeout": int64(10 * time.Second), "unsafe_sockets": provider == "sockets"}
}

// TestConformance runs the transport kind's suite in process over every
// software provider that works here.
func TestConformance(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			transporttest.Run(t, func(t *testing.T, _ transporttest.RAM) (send, recv transport.Transport, sendCfg, recvCfg schema.Config) {
				cfg := config(t, p)
				log := hclog.New(&hclog.LoggerOptions{Level: hclog.Off})
				return rdma.New(log), rdma.New(log), cfg, cfg
			})
		})
	}
}

const pluginName = "ferry-transport-rdma"

func TestMain(m *testing.M) {
	plugintest.Main(m, transporttest.Roles(map[string]func() transport.Transport{
		pluginName: func() transport.Transport { return rdma.New(transport.Logger(rdma.Name)) },
	}))
}

// TestConformancePlugin runs the suite with both sides in plugin
// processes over gRPC, as a VMM runs them.
func TestConformancePlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: plugin processes")
	}
	for _, p := range providers(t) {
		t.Run(p, func(t *testing.T) {
			transporttest.Run(t, func(t *testing.T, ram transporttest.RAM) (send, recv transport.Transport, sendCfg, recvCfg schema.Config) {
				cfg := config(t, p)
				return transporttest.Launch(t, pluginName, ram.Send), transporttest.Launch(t, pluginName, ram.Recv), cfg, cfg
			})
		})
	}
}

// fabricProviders reports which software providers work on loopback.
func fabricProviders() map[string]error { return fabric.Providers("127.0.0.1", softProviders...) }

// freeAddr returns a listen address on host for a receiver the suite
// may close and open again (transporttest.FreeAddr).
func freeAddr(tb testing.TB, host string) string { return transporttest.FreeAddr(tb, host) }
