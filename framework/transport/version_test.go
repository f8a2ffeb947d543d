package transport_test

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

	"github.com/ferryvm/ferry/framework/transport"
)

// apiPrefix names a link to the test binary that serves a mock transport
// speaking the plugin API version that follows the prefix
// ("ferry-transport-api1"). init serves it, before TestMain runs.
const apiPrefix = "ferry-transport-api"

func init() {
	v, ok := strings.CutPrefix(filepath.Base(os.Args[0]), apiPrefix)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		os.Exit(2)
	}
	hs := transport.Handshake
	hs.ProtocolVersion = uint(n)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: hs,
		Plugins:         plugin.PluginSet{transport.PluginName: &transport.GRPCPlugin{Impl: &transport.Mock{}}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
	os.Exit(0)
}

// TestPluginAPIVersionRefused is the plugin API rule of
// docs/ARCHITECTURE.md#versions: exact match. A transport built for the
// previous API (2: it has no urgent path, so post-copy's page requests
// would go unanswered; 1 before it ignored Open's credentials, invariant 7)
// or a newer one is not started, and the error names both versions.
func TestPluginAPIVersionRefused(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, v := range []int{transport.APIVersion - 1, transport.APIVersion + 1} {
		path := filepath.Join(dir, fmt.Sprintf("%s%d", apiPrefix, v))
		if err := os.Symlink(exe, path); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		tr, err := transport.Launch(ctx, path, nil, hclog.NewNullLogger())
		cancel()
		if err == nil {
			tr.Close()
			t.Fatalf("a version-%d transport was started by a version-%d host", v, transport.APIVersion)
		}
		want := fmt.Sprintf("Plugin version: %d, Client versions: [%d]", v, transport.APIVersion)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("version %d: %v, want it to say %q", v, err, want)
		}
		t.Logf("version %d: %v", v, err)
	}
}
