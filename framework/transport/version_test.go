package transport_test

import (
	"context"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/transport"
)

// apiPrefix names a link to the test binary that serves a mock transport
// speaking the plugin API version that follows the prefix
// ("ferry-transport-api2"). init serves it, before TestMain runs.
const apiPrefix = "ferry-transport-api"

func init() {
	plugintest.ServeAPIVersion(apiPrefix, func(v uint) {
		hs := transport.Handshake
		hs.ProtocolVersion = v
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig: hs,
			Plugins:         plugin.PluginSet{transport.PluginName: &transport.GRPCPlugin{Impl: &transport.Mock{}}},
			GRPCServer:      plugin.DefaultGRPCServer,
		})
	})
}

// TestPluginAPIVersionRefused is the plugin API rule of
// docs/ARCHITECTURE.md#versions: exact match. A transport built for the
// previous API (2: it has no urgent path, so post-copy's page requests
// would go unanswered; 1 before it ignored Open's credentials, invariant 7)
// or a newer one is not started, and the error names both versions.
func TestPluginAPIVersionRefused(t *testing.T) {
	plugintest.CheckAPIRefused(t, apiPrefix, transport.APIVersion,
		[]int{transport.APIVersion - 1, transport.APIVersion + 1},
		func(ctx context.Context, path string) (func(), error) {
			tr, err := transport.Launch(ctx, path, nil, hclog.NewNullLogger())
			if err != nil {
				return nil, err
			}
			return func() { tr.Close() }, nil
		})
}
