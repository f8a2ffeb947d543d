package vmm

import (
	"errors"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/transporttest"
	"github.com/ferryvm/ferry/vmm/api"
)

// TestFailedDestinationPortClosed: a destination whose migration ends
// without the guest (here cancelled while it waits for its source, as
// migrate cancels one beside a source that failed to connect) reports
// the end only once its transport plugin has stopped: whoever sees the
// report (migrate-status, migrate-resolve, or the VMM's exit that
// follows it) may at once start the next try at the same listen address.
// Before, the report came first and the plugin, still listening, was
// stopped after it; under emulated KVM TestMigrateWrongConnect found the
// port open after migrate had ended.
func TestFailedDestinationPortClosed(t *testing.T) {
	plugin := buildTCPPlugin(t)
	_, dstCreds, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		v := fakeWithRAM(t, StateIncoming)
		addr := transporttest.FreeAddr(t, "127.0.0.1")
		mg := &migration{}
		startErr := startAsync(t, v, mg, api.MigrateArgs{Plugin: plugin, Credentials: &dstCreds,
			Transport: map[string]any{"listen": addr}}, transport.RoleReceive)
		if err := <-startErr; err != nil {
			t.Fatalf("migrate-incoming: %v", err)
		}
		waitListening(t, addr)
		if res, _ := mg.cancelRunning(api.IDArgs{}); !res.Cancelled {
			t.Fatalf("migrate-cancel answered %+v", res)
		}
		select {
		case <-mg.done:
		case <-time.After(30 * time.Second):
			t.Fatal("the migration did not end within 30 s of the cancel")
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("try %d: the destination's transport still listens on %s after its migration ended %s", i, addr, mg.status().Side)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("try %d: dial %s: %v, want connection refused", i, addr, err)
		}
		v.plugins.Wait()
	}
}

// waitListening waits (at most 30 s) until something accepts TCP
// connections at addr.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 30 s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// buildTCPPlugin builds cmd/ferry-transport-tcp into a temporary
// directory and returns its path.
func buildTCPPlugin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := plugintest.BuildCommands(dir, tcpPlugin); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, tcpPlugin)
}
