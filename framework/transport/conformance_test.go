package transport_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	"github.com/ferryvm/ferry/framework/transport/transporttest"
)

// TestConformanceGRPCInProcess runs both sides of an in-process pipe
// through the gRPC client and server, without processes.
func TestConformanceGRPCInProcess(t *testing.T) {
	transporttest.Run(t, func(t *testing.T, ram transporttest.RAM) (send, recv transport.Transport, sendCfg, recvCfg schema.Config) {
		s, r := loopback.NewPipe()
		return overGRPC(t, s, ram.Send), overGRPC(t, r, ram.Recv), nil, nil
	})
}

// overGRPC serves impl through the plugin's gRPC server and client over a
// unix socket, with an urgent channel between them, in this process.
func overGRPC(t *testing.T, impl transport.Transport, files []*os.File) transport.Transport {
	t.Helper()
	hostEnd, plugEnd, err := transport.NewChannelPair()
	if err != nil {
		t.Fatal(err)
	}
	defer hostEnd.Close()
	defer plugEnd.Close()
	p := &transport.GRPCPlugin{Impl: impl, Files: files, Channel: plugEnd}
	ln, err := net.Listen("unix", socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	if err := p.GRPCServer(nil, s); err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.Serve(ln)
	}()
	conn, err := grpc.Dial("unix://"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		s.Stop()
		<-served
		impl.Close()
	})
	host := &transport.GRPCPlugin{Files: files, Channel: hostEnd}
	c, err := host.GRPCClient(context.Background(), nil, conn)
	if err != nil {
		t.Fatal(err)
	}
	return c.(transport.Transport)
}

// TestConformancePlugin runs the loopback transport as real plugin
// processes started by Launch, talking through a unix socket: the sender
// alone, the receiver alone, and both.
func TestConformancePlugin(t *testing.T) {
	for _, c := range []struct {
		name               string
		sendPlugin, recvPl bool // which sides run as plugin processes
	}{{"SendPlugin", true, false}, {"RecvPlugin", false, true}, {"BothPlugins", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && c.recvPl {
				t.Skip("-short: only the sender as a plugin")
			}
			transporttest.Run(t, func(t *testing.T, ram transporttest.RAM) (send, recv transport.Transport, sendCfg, recvCfg schema.Config) {
				cfg := schema.Config{"socket": socketPath(t)}
				send, recv = loopback.New(), loopback.New()
				if c.sendPlugin {
					send = launch(t, "ferry-transport-loopback", ram.Send)
				}
				if c.recvPl {
					recv = launch(t, "ferry-transport-loopback", ram.Recv)
				}
				return send, recv, cfg, cfg
			})
		})
	}
}

// socketPath returns a unix socket path short enough for sun_path.
func socketPath(t *testing.T) string {
	dir, err := os.MkdirTemp("", "ferry-loop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}
