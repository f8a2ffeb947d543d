package hint_test

import (
	"testing"

	"github.com/ferryvm/ferry/framework/plugintest"
)

// TestPluginExitsWithHost: a plugin whose host was killed (no Close, no
// Kill) exits by itself instead of holding guest RAM forever, and
// removes its socket directory, which nobody else could.
func TestPluginExitsWithHost(t *testing.T) {
	plugintest.PluginExitsWithHost(t, plugintest.Path(t, hostName))
}
