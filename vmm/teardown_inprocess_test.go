package vmm

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/transports/tcp"
	"github.com/ferryvm/ferry/vmm/api"
	"github.com/ferryvm/ferry/vmm/control"
)

// closeHangs is a transport in process whose Close never returns: a
// transport with a bug, which no process kill can end.
type closeHangs struct{ transport.Transport }

func (closeHangs) Close() error { select {} }

// inProcessChild names, in the environment, the control socket of the
// destination VMM that TestInProcessCloseBounded runs as its child.
const inProcessChild = "FERRY_VMM_TEST_IN_PROCESS_DESTINATION"

// TestInProcessCloseBounded: a destination VMM whose transport runs in
// process (-transport-in-process) and whose migration is cancelled
// while it waits for its source reports and exits within the bound on
// its transport's Close (1 s here, about 9 s in ferry-vmm) even though
// that Close never returns, and its exit frees the listening port for
// the next try. The child is this test binary as a VMM of a fake VM:
// it serves the control socket and, once the VM stopped, closes it and
// exits with its code, as ferry-vmm does. Before, the VMM waited for
// that Close for ever: no report, no exit, the port held.
func TestInProcessCloseBounded(t *testing.T) {
	if sock := os.Getenv(inProcessChild); sock != "" {
		inProcessDestination(t, sock) // exits
	}
	_, creds, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "c.sock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestInProcessCloseBounded$", "-test.count=1")
	cmd.Env = append(os.Environ(), inProcessChild+"="+sock)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed once waitErr is set
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // an error once it exited
		<-exited
	})
	call := func(cmd string, args, res any) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return control.Call(ctx, sock, cmd, args, res)
	}
	waitServing(t, call, exited, &waitErr)

	addr := freeAddr(t)
	if err := call("migrate-incoming", api.MigrateArgs{Plugin: "/opt/ferry/ferry-transport-tcp", Credentials: &creds,
		Transport: map[string]any{"listen": addr}}, nil); err != nil {
		t.Fatalf("migrate-incoming: %v", err)
	}
	waitListening(t, addr)
	var res api.CancelResult
	if err := call("migrate-cancel", nil, &res); err != nil || !res.Cancelled {
		t.Fatalf("migrate-cancel: %+v, %v", res, err)
	}
	start := time.Now()
	select {
	case <-exited:
		err = waitErr
	case <-time.After(20 * time.Second):
		t.Fatalf("the destination had neither reported nor exited 20 s after its cancel; its log:\n%s", &logs)
	}
	took := time.Since(start)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("the destination exited %v; want status 1 (its migration cancelled); its log:\n%s", err, &logs)
	}
	if took > 5*time.Second || !strings.Contains(logs.String(), "the transport in process did not close within 1s") {
		t.Errorf("the destination exited %v after its cancel; want about the 1 s bound, the hung Close logged; its log:\n%s",
			took.Round(time.Millisecond), &logs)
	}
	t.Logf("the destination exited %v after its cancel", took.Round(time.Millisecond))
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after the destination exited", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
}

// waitServing waits (at most 30 s) until the child's control socket
// answers status; the child's exit (exited closed, waitErr set) fails
// it early.
func waitServing(t *testing.T, call func(cmd string, args, res any) error, exited <-chan struct{}, waitErr *error) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		err := call("status", nil, nil)
		if err == nil {
			return
		}
		select {
		case <-exited:
			t.Fatalf("the destination exited before it served: %v", *waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the destination's control socket did not answer within 30 s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inProcessDestination is TestInProcessCloseBounded's child: a
// destination VMM of a fake incoming VM, its transport
// transports/tcp in process behind a Close that hangs, serving its
// control socket at sock. Once the VM stopped it closes it and exits
// with its code, as ferry-vmm does.
func inProcessDestination(t *testing.T, sock string) {
	v := fakeWithRAM(t, StateIncoming)
	v.log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	v.cfg.TransportInProcess = true
	v.inProcess = func(log hclog.Logger) transport.Transport { return closeHangs{tcp.New(log)} }
	v.closeBound = time.Second
	s, err := control.NewServer(sock, v.log)
	if err != nil {
		t.Fatal(err)
	}
	v.Serve(s)
	go s.Serve(context.Background())
	<-v.stopped
	if err := v.Close(); err != nil {
		v.log.Error("close", "err", err)
	}
	v.mu.Lock()
	code := v.exitCode
	v.mu.Unlock()
	os.Exit(code)
}
