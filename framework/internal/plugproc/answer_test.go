package plugproc_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/ferryvm/ferry/framework/transport"
)

// envSlowOpen makes the test plugin's Open wait for its context to end
// and then return slowOpenWhy, wrapping the context's error.
const envSlowOpen = "FERRY_TEST_SLOW_OPEN"

const slowOpenWhy = "slow open: connect_timeout passed while connecting the endpoint"

// TestAnswerMarginCompat: an Open that runs out of time reaches a host
// of today with the plugin's reason when the plugin is of today too;
// a plugin built before the margin (go-plugin's own server, as
// TestPairingCompat's old plugin) and a host built before it (go-plugin's
// client, without askEarlyAnswer) get what they got before: a deadline
// error once the host's context ended (an old host is not answered
// early). Whether that error carries the plugin's text is then a race
// of two timers for the same deadline (errclass's ownEnd), so only
// today's pair is held to it.
func TestAnswerMarginCompat(t *testing.T) {
	open := func(t *testing.T, tr transport.Transport, why bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), outOfTimeBound)
		defer cancel()
		err := tr.Open(ctx, transport.OpenRequest{Role: transport.RoleSend})
		if !errors.Is(err, context.DeadlineExceeded) || (why && !strings.Contains(err.Error(), slowOpenWhy)) {
			t.Errorf("Open = %v; want a context.DeadlineExceeded (saying %q: %v)", err, slowOpenWhy, why)
		}
		if ctx.Err() == nil {
			t.Errorf("Open returned %v before its context ended", err)
		}
	}
	t.Run("today's plugin", func(t *testing.T) {
		p := start(t, nil, filepath.Join(t.TempDir(), "opened"), envSlowOpen+"=1")
		open(t, p.Raw.(transport.Transport), true)
	})
	t.Run("old plugin", func(t *testing.T) {
		p := start(t, nil, filepath.Join(t.TempDir(), "opened"), envSlowOpen+"=1", envAutoMTLS+"=1")
		open(t, p.Raw.(transport.Transport), false)
	})
	t.Run("old host", func(t *testing.T) {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), envOpened+"="+filepath.Join(t.TempDir(), "opened"), envSlowOpen+"=1")
		pc := plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig:  transport.Handshake,
			Plugins:          plugin.PluginSet{transport.PluginName: &transport.GRPCPlugin{}},
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
			Cmd:              cmd,
			AutoMTLS:         true,
			Logger:           hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Warn, Output: testWriter{t}}),
		})
		defer pc.Kill()
		rpc, err := pc.Client()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := rpc.Dispense(transport.PluginName)
		if err != nil {
			t.Fatal(err)
		}
		open(t, raw.(transport.Transport), false)
	})
}

// outOfTimeBound is the Open's (Configure's) time in the out-of-time
// tests: the plugin answers a tenth of it (500 ms) before the host's
// deadline, room enough on a loaded two-core machine, where 2 s (200 ms
// of room) was thin.
const outOfTimeBound = 5 * time.Second
