package main

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/transporttest"
	"github.com/ferryvm/ferry/framework/vmtest"
	"github.com/ferryvm/ferry/transports/rdma"
	"github.com/ferryvm/ferry/transports/rdma/fabric"
	"github.com/ferryvm/ferry/transports/tcp"
)

const (
	pluginName    = "ferry-transport-rdma"
	tcpPluginName = "ferry-transport-tcp" // for comparisons: BenchmarkMigrate
)

func TestMain(m *testing.M) {
	plugintest.Main(m, transporttest.Roles(map[string]func() transport.Transport{
		pluginName:    func() transport.Transport { return rdma.New(transport.Logger(rdma.Name)) },
		tcpPluginName: func() transport.Transport { return tcp.New(transport.Logger(tcp.Name)) },
	}))
}

// TestMigrate migrates a running fake VM (framework/vmtest: a guest that
// keeps writing known data) through framework/session with this plugin,
// in its own processes on both sides, over every software provider that
// works here, encrypted control channel and all; the destination then
// holds every page of the source and its own check passes.
func TestMigrate(t *testing.T) {
	for _, prov := range []string{"tcp", "sockets", "net"} {
		t.Run(prov, func(t *testing.T) {
			if err := fabric.Providers("127.0.0.1", prov)[prov]; err != nil {
				t.Skipf("SKIPPED: provider %s does not work here: %v", prov, err)
			}
			src, err := vmtest.New(vmtest.Options{WriteEvery: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			dst, err := vmtest.New(vmtest.Options{Incoming: true})
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			srcCreds, dstCreds, err := transport.MintCredentials(false)
			if err != nil {
				t.Fatal(err)
			}
			plugin := session.Plugin{Path: plugintest.Path(t, pluginName), Config: map[string]any{
				"provider": prov, "listen": localAddr(t), "cleartext_pages": true, "unsafe_sockets": prov == "sockets"}}
			log := slog.New(slog.DiscardHandler)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var dstRep engine.Report
			var dstErr error
			var wg sync.WaitGroup
			wg.Go(func() {
				dstRep, dstErr = session.Receive(ctx, dst, session.Spec{Transport: plugin, Engine: engine.Options{Credentials: dstCreds}, Log: log})
			})
			srcRep, srcErr := session.Send(ctx, src, src, session.Spec{Transport: plugin, Log: log,
				Engine: engine.Options{Credentials: srcCreds, MaxDowntime: 100 * time.Millisecond}})
			wg.Wait()
			if srcErr != nil || dstErr != nil {
				t.Fatalf("migration: source %v, destination %v", srcErr, dstErr)
			}
			t.Logf("source %s (%d passes, %d bytes on the wire), destination %s",
				srcRep.Status, srcRep.Passes, srcRep.BytesWire, dstRep.Status)
			// Pages went by RDMA writes, in the clear: the report must not
			// claim the session was encrypted.
			if srcRep.Encryption != engine.EncryptionControl || dstRep.Encryption != engine.EncryptionControl {
				t.Errorf("reports say encryption %q (source), %q (destination); want %q",
					srcRep.Encryption, dstRep.Encryption, engine.EncryptionControl)
			}
			if err := vmtest.Equal(src, dst); err != nil {
				t.Fatalf("pages differ: %v", err)
			}
			if err := dst.Verify(); err != nil {
				t.Fatalf("the destination's own check: %v", err)
			}
		})
	}
}

func localAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
