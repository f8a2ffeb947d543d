package hint_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/ferryvm/ferry/framework/hint"
)

// apiPrefix names a link to the test binary that serves a mock provider
// speaking the plugin API version that follows the prefix
// ("ferry-hint-api2"). init serves it, before TestMain runs.
const apiPrefix = "ferry-hint-api"

func init() {
	v, ok := strings.CutPrefix(filepath.Base(os.Args[0]), apiPrefix)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		os.Exit(2)
	}
	hs := hint.Handshake
	hs.ProtocolVersion = uint(n)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: hs,
		Plugins:         plugin.PluginSet{hint.PluginName: &hint.GRPCPlugin{Impl: &hint.Mock{}}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
	os.Exit(0)
}

// TestPluginAPIVersionRefused is the plugin API rule of
// docs/ARCHITECTURE.md#versions: exact match. A provider built for a newer
// API (or an older one, once there is one) is not started, and the error
// names both versions; the migration then goes on without its hints
// (invariant 2).
func TestPluginAPIVersionRefused(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, v := range []int{hint.APIVersion - 1, hint.APIVersion + 1} {
		if v < 1 {
			continue // API 1 is the first
		}
		path := filepath.Join(dir, fmt.Sprintf("%s%d", apiPrefix, v))
		if err := os.Symlink(exe, path); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		p, err := hint.Launch(ctx, path, nil, hclog.NewNullLogger())
		cancel()
		if err == nil {
			p.Kill()
			t.Fatalf("a version-%d provider was started by a version-%d host", v, hint.APIVersion)
		}
		want := fmt.Sprintf("Plugin version: %d, Client versions: [%d]", v, hint.APIVersion)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("version %d: %v, want it to say %q", v, err, want)
		}
		t.Logf("version %d: %v", v, err)
	}
}
