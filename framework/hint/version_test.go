package hint_test

import (
	"context"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/plugintest"
)

// apiPrefix names a link to the test binary that serves a mock provider
// speaking the plugin API version that follows the prefix
// ("ferry-hint-api2"). init serves it, before TestMain runs.
const apiPrefix = "ferry-hint-api"

func init() {
	plugintest.ServeAPIVersion(apiPrefix, func(v uint) {
		hs := hint.Handshake
		hs.ProtocolVersion = v
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig: hs,
			Plugins:         plugin.PluginSet{hint.PluginName: &hint.GRPCPlugin{Impl: &hint.Mock{}}},
			GRPCServer:      plugin.DefaultGRPCServer,
		})
	})
}

// TestPluginAPIVersionRefused is the plugin API rule of
// docs/ARCHITECTURE.md#versions: exact match. A provider built for a newer
// API (or an older one, once there is one) is not started, and the error
// names both versions; the migration then goes on without its hints
// (invariant 2).
func TestPluginAPIVersionRefused(t *testing.T) {
	var versions []int
	for _, v := range []int{hint.APIVersion - 1, hint.APIVersion + 1} {
		if v >= 1 { // API 1 is the first
			versions = append(versions, v)
		}
	}
	plugintest.CheckAPIRefused(t, apiPrefix, hint.APIVersion, versions,
		func(ctx context.Context, path string) (func(), error) {
			p, err := hint.Launch(ctx, path, nil, hclog.NewNullLogger())
			if err != nil {
				return nil, err
			}
			return p.Kill, nil
		})
}
