package hint_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/hint/hinttest"
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/transport"
)

// The test binary doubles as the plugin binaries (plugintest.Main):
// started under the name of a plugin below it serves that plugin, under
// transportName a transport (which a hint host must refuse), under
// hostName a host whose plugin must outlive it only briefly.
var plugins = map[string]func() hint.Provider{
	"ferry-hint-zero":          func() hint.Provider { return newZeroProvider() },
	"ferry-hint-balloon":       func() hint.Provider { return newBalloonProvider(hint.Logger("balloon")) },
	"ferry-hint-files":         filesProvider,
	"ferry-hint-crash":         crashProvider,
	"ferry-hint-hang":          hangProvider,
	"ferry-hint-balloon-crash": balloonCrash,
	"ferry-hint-slowconfigure": slowConfigureProvider,
}

const (
	transportName   = "ferry-transport-mock"
	hostName        = "ferry-hint-host"
	brokerFloodName = "ferry-hint-brokerflood"
	connFloodName   = "ferry-hint-connflood"
	callFloodName   = "ferry-hint-callflood"
	cmmaRepeatName  = "ferry-hint-cmmarepeat"
)

func TestMain(m *testing.M) {
	roles := hinttest.Roles(plugins)
	roles[transportName] = func() int { transport.Serve(&transport.Mock{}); return 0 }
	roles[brokerFloodName] = hint.ServeBrokerFlood
	roles[connFloodName] = hint.ServeConnFlood
	roles[callFloodName] = hint.ServeCallFlood
	roles[cmmaRepeatName] = hint.ServeCMMARepeat
	roles[hostName] = func() int {
		return plugintest.Host(func(ctx context.Context) (func(), error) {
			p, err := hint.Launch(ctx, filepath.Join(filepath.Dir(os.Args[0]), "ferry-hint-zero"), nil, hclog.NewNullLogger())
			if err != nil {
				return nil, err
			}
			return p.Kill, nil
		})
	}
	plugintest.Main(m, roles)
}

// launch starts plugin name with files; the test kills it.
func launch(t *testing.T, name string, files []*os.File) *hint.Plugin {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := hint.Launch(ctx, plugintest.Path(t, name), files, plugintest.Logger(t))
	if err != nil {
		t.Fatalf("launch %s: %v", name, err)
	}
	t.Cleanup(p.Kill)
	return p
}

// quietLogger drops everything.
func quietLogger() hclog.Logger { return hclog.NewNullLogger() }
