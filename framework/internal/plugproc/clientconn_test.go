package plugproc_test

import (
	"bytes"
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferryvm/ferry/framework/internal/plugproc"
)

// stdioStream is go-plugin's stdio stream, the one call its
// newGRPCClient makes, and waits for, after dialing the plugin.
const stdioStream = "/plugin.GRPCStdio/StreamStdio"

// TestStartFailedAfterDialClosesClientConn: go-plugin's newGRPCClient
// dials the plugin (a gRPC ClientConn), starts its broker's stream on
// it, then opens the stdio stream; when that fails with a code other
// than Unavailable or Unimplemented, it returns the error and drops the
// ClientConn without closing it, and its Kill, with no client to close,
// leaves it be. hostConns.closeAll refuses its later dials, but the
// ClientConn lives on: its goroutines (the balancer's, the resolver's,
// the reconnecting address's) stay for the life of the host, one set
// per failed start. The failure is injected on the host's side, after
// the stdio stream was opened over the real connection to the real
// plugin: a plugin cannot make that call fail with a code go-plugin does
// not ignore (a stream's first errors are the host's own; the plugin's
// refusal arrives later, on Recv). After Start failed, no goroutine of
// gRPC's that was not there before it may be left.
func TestStartFailedAfterDialClosesClientConn(t *testing.T) {
	before := grpcGoroutines()
	cfg := config(t, nil, filepath.Join(t.TempDir(), "opened"))
	opened := false
	plugproc.AddDialOptions(&cfg, grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc,
		cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil || method != stdioStream {
			return s, err
		}
		opened = true // newGRPCClient's goroutine, which Start waits for
		return nil, status.Error(codes.Internal, "injected: the stdio stream failed")
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := plugproc.Start(ctx, cfg)
	if err == nil {
		p.Kill()
		t.Fatal("Start succeeded though its stdio stream failed")
	}
	if !opened || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Start: %v (the stdio stream opened: %v); want the injected failure after the dial: the test did not test it",
			err, opened)
	}
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left = left[:0]
		for id, stack := range grpcGoroutines() {
			if _, ok := before[id]; !ok {
				left = append(left, stack)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("Start failed (%v) and left %d goroutines of gRPC 10 s later, the first:\n%s", err, len(left), left[0])
	}
}

// grpcGoroutines is this process's goroutines whose stack names gRPC
// (gRPC's own, and go-plugin's on gRPC), by goroutine id.
func grpcGoroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		head, _, _ := bytes.Cut(g, []byte(" ["))
		if bytes.Contains(g, []byte("grpc")) {
			out[string(head)] = string(g)
		}
	}
	return out
}

// TestStreamAfterKillCanceled: a stream opened on the process's
// ClientConn once Kill returned (a hint provider's Hints that passed its
// liveness check as Kill ran) fails as a closed ClientConn's stream does,
// with a status of code Canceled, which the kinds' errclass.Process.Fail
// takes for the plugin gone; not with a plain error, which is no status
// (codes.Unknown) and which Fail hands back unclassed, so that
// errors.Is(err, hint.ErrPluginGone) did not hold for it.
func TestStreamAfterKillCanceled(t *testing.T) {
	p := start(t, nil, filepath.Join(t.TempDir(), "opened"))
	rpc, err := p.Client.Client()
	if err != nil {
		t.Fatal(err)
	}
	gc, ok := rpc.(*plugin.GRPCClient)
	if !ok {
		t.Fatalf("go-plugin's client is %T; want *plugin.GRPCClient", rpc)
	}
	p.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = gc.Conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, stdioStream)
	if status.Code(err) != codes.Canceled {
		t.Errorf("a stream opened after Kill failed with %v (code %v); want code %v, as gRPC's closed ClientConn fails it",
			err, status.Code(err), codes.Canceled)
	}
}

// TestKeepClientOnce: the host keeps the ClientConn once however many
// streams are opened on it, from however many goroutines at a time (a
// hint provider's Hints and balloon sessions, one stream each, for the
// life of the VMM), not once a stream.
func TestKeepClientOnce(t *testing.T) {
	p := start(t, nil, filepath.Join(t.TempDir(), "opened"))
	rpc, err := p.Client.Client()
	if err != nil {
		t.Fatal(err)
	}
	gc, ok := rpc.(*plugin.GRPCClient)
	if !ok {
		t.Fatalf("go-plugin's client is %T; want *plugin.GRPCClient", rpc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				sctx, end := context.WithCancel(ctx)
				_, err := gc.Conn.NewStream(sctx, &grpc.StreamDesc{ServerStreams: true}, stdioStream)
				end()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a stream on the live process: %v", err)
	}
	if n := plugproc.KeptClients(p); n != 1 {
		t.Errorf("%d ClientConns kept after 200 streams on one; want 1", n)
	}
}
