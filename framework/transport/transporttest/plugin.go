package transporttest

import "github.com/ferryvm/ferry/framework/transport"

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
