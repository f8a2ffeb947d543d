package hint_test

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ferryvm/ferry/framework/hint"
	pb "github.com/ferryvm/ferry/framework/hint/proto"
	"github.com/ferryvm/ferry/framework/plugintest"
)

// TestChannelPrivate: a hint plugin started under umask 000 keeps its
// socket in a 0700 directory, a client without the host's certificate
// cannot call it, the host's own calls (Host callbacks over the broker
// included) work, and Kill leaves no directory behind.
func TestChannelPrivate(t *testing.T) {
	old := unix.Umask(0)
	defer unix.Umask(old)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := hint.Launch(ctx, plugintest.Path(t, "ferry-hint-balloon"), nil, plugintest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	kids, err := plugintest.ChildPIDs()
	if err != nil || len(kids) != 1 {
		t.Fatalf("children %v, %v; want the plugin", kids, err)
	}
	dir := plugintest.SocketDir(t, kids[0])
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory %s: %v, %v; want mode 0700", dir, st.Mode(), err)
	}
	socks, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(socks) != 1 {
		t.Fatalf("socket directory holds %v; want the plugin's socket", socks)
	}
	conn, err := grpc.Dial("unix://"+socks[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = pb.NewProviderClient(conn).Configure(cctx, &pb.ConfigureRequest{})
	ccancel()
	if err == nil {
		t.Fatal("a client without TLS configured the plugin")
	}

	var done atomic.Int32
	if err := p.Configure(ctx, nil, hint.VM{}, fakeBalloon(&done)); err != nil {
		t.Fatalf("the host's Configure: %v", err)
	}
	// The Host the VMM serves to the plugin listens in the same directory.
	all, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(all) != 2 {
		t.Errorf("socket directory holds %v after Configure; want the plugin's and the host's", all)
	}
	for _, s := range all {
		if s == socks[0] {
			continue
		}
		// Nor can it call the VMM's Host (plugproc.ServeBroker serves it with the process's TLS).
		hconn, err := grpc.Dial("unix://"+s, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		_, err = pb.NewHostClient(hconn).BalloonDone(cctx, &pb.BalloonDoneRequest{})
		ccancel()
		hconn.Close()
		if err == nil || done.Load() != 0 {
			t.Fatal("a client without TLS called the VMM's Host")
		}
	}
	if _, err := collect(t, p, 1); err != nil {
		t.Fatalf("hints through the Host callback: %v", err)
	}
	p.Close(ctx, true)
	p.Kill()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("socket directory after Kill: %v; want it removed", err)
	}
}
