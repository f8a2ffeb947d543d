package loopback_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	"github.com/ferryvm/ferry/framework/transport/transporttest"
)

func TestPipe(t *testing.T) {
	transporttest.Run(t, func(t *testing.T, _ transporttest.RAM) (send, recv transport.Transport, sendCfg, recvCfg schema.Config) {
		s, r := loopback.NewPipe()
		return s, r, nil, schema.Config{"zero_punch": true}
	})
}

func TestSocket(t *testing.T) {
	transporttest.Run(t, func(t *testing.T, _ transporttest.RAM) (send, recv transport.Transport, sendCfg, recvCfg schema.Config) {
		cfg := schema.Config{"socket": SocketPath(t)}
		return loopback.New(), loopback.New(), cfg, cfg
	})
}

// SocketPath returns a unix socket path short enough for sun_path.
func SocketPath(t *testing.T) string {
	dir, err := os.MkdirTemp("", "ferry-loop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}
