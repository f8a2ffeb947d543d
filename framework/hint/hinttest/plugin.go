package hinttest

import (
	"context"
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/hint"
	"github.com/ferryvm/ferry/framework/plugintest"
)

// Main is a TestMain for a provider's package that runs the suite over
// real gRPC: the test binary doubles as the plugin binaries
// (plugintest.Main). Started under one of the names in plugins (by
// Launch), it serves that provider through hint.Serve, as the provider's
// cmd/ main does; otherwise it links itself under those names in a
// temporary directory and runs the tests.
//
//	func TestMain(m *testing.M) {
//		hinttest.Main(m, map[string]func() hint.Provider{
//			"ferry-hint-example-static": func() hint.Provider { return static.New(hint.Logger(static.Name)) },
//		})
//	}
func Main(m *testing.M, plugins map[string]func() hint.Provider) {
	plugintest.Main(m, Roles(plugins))
}

// Roles turns providers into plugintest.Main roles that serve them, for
// a TestMain with other roles besides.
func Roles(plugins map[string]func() hint.Provider) map[string]func() int {
	roles := make(map[string]func() int, len(plugins))
	for name, newProvider := range plugins {
		roles[name] = func() int { hint.Serve(newProvider()); return 0 }
	}
	return roles
}

// Launch starts the test binary as the plugin called name (one Main
// registered) with the RAM files, and kills it when the test ends. The
// plugin's warnings and errors go to the test log, and a data race the
// plugin reports fails the test (plugintest.Logger).
func Launch(t *testing.T, name string, files []*os.File) *hint.Plugin {
	t.Helper()
	path := plugintest.Path(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	p, err := hint.Launch(ctx, path, files, plugintest.Logger(t))
	if err != nil {
		t.Fatalf("launch plugin %s: %v", name, err)
	}
	t.Cleanup(p.Kill)
	return p
}

// Logger is a host logger for tests (plugintest.Logger): everything at
// Debug is kept, warnings and errors also go to the test log, and a data
// race a plugin process reports fails the test.
func Logger(t *testing.T) hclog.Logger { return plugintest.Logger(t) }
