package transport_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/plugintest"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/transport/loopback"
	"github.com/ferryvm/ferry/framework/transport/transporttest"
)

// The test binary doubles as the plugin binaries (plugintest.Main):
// started under the name of a plugin below it serves that plugin, under
// hostName a host whose plugin must outlive it only briefly.
var plugins = map[string]func() transport.Transport{
	"ferry-transport-loopback": func() transport.Transport { return loopback.New() },
	"ferry-transport-files":    filesPlugin,
	"ferry-transport-crash":    crashPlugin,
	"ferry-transport-holdexit": holdExitPlugin,
	"ferry-transport-count":    countPlugin,
	"ferry-transport-checks":   checksPlugin,
	"ferry-transport-slowopen": slowOpenPlugin,
}

const hostName = "ferry-transport-host"

func TestMain(m *testing.M) {
	roles := transporttest.Roles(plugins)
	roles[hostName] = func() int {
		return plugintest.Host(func(ctx context.Context) (func(), error) {
			tr, err := transport.Launch(ctx, filepath.Join(filepath.Dir(os.Args[0]), "ferry-transport-loopback"), nil, hclog.NewNullLogger())
			if err != nil {
				return nil, err
			}
			return func() { tr.Close() }, nil
		})
	}
	plugintest.Main(m, roles)
}

// launch starts plugin name with files; the test closes it.
func launch(t *testing.T, name string, files []*os.File) transport.Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := transport.Launch(ctx, plugintest.Path(t, name), files, plugintest.Logger(t))
	if err != nil {
		t.Fatalf("launch %s: %v", name, err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// filesPlugin answers RecvMessage with what it finds in its RAM: for
// each region of the last Open, the descriptor number of its file and
// the region's first 16 bytes.
func filesPlugin() transport.Transport {
	var mu sync.Mutex
	var req transport.OpenRequest
	return &transport.Mock{
		OpenFunc: func(_ context.Context, r transport.OpenRequest) error {
			mu.Lock()
			defer mu.Unlock()
			req = r
			return nil
		},
		RecvMessageFunc: func(context.Context) (transport.Message, error) {
			mu.Lock()
			defer mu.Unlock()
			var out []byte
			for _, g := range req.RAM {
				f := req.Files[g.File]
				b := make([]byte, 16)
				if _, err := f.ReadAt(b, int64(g.Offset)); err != nil {
					return transport.Message{}, err
				}
				out = fmt.Appendf(out, "fd%d:%s;", f.Fd(), b)
			}
			return transport.Message{Kind: 1, Payload: out}, nil
		},
		CloseFunc: func() error { return nil },
	}
}

// crashPlugin works until Flush, which kills the process.
func crashPlugin() transport.Transport {
	return &transport.Mock{
		InfoFunc:  func(context.Context) (transport.Info, error) { return transport.Info{Name: "crash"}, nil },
		FlushFunc: func(context.Context) error { os.Exit(3); return nil },
		RecvMessageFunc: func(ctx context.Context) (transport.Message, error) {
			<-ctx.Done()
			return transport.Message{}, ctx.Err()
		},
		SendMessageFunc: func(context.Context, transport.Message) error { return errors.New("unused") },
		CloseFunc:       func() error { return nil },
	}
}

// holdExitPlugin listens in Open on the address its configuration names
// (transport.Listen: the host gets the socket) and exits at once.
func holdExitPlugin() transport.Transport {
	return &transport.Mock{
		OpenFunc: func(ctx context.Context, r transport.OpenRequest) error {
			address, _ := r.Config["address"].(string)
			if _, err := transport.Listen(ctx, address); err != nil {
				return err
			}
			os.Exit(0)
			return nil
		},
		CloseFunc: func() error { return nil },
	}
}

// Messages countPlugin takes as orders; any other counts its payload.
const (
	countHang  = 1 // from now on Stats and Close never answer (countOpen counts kind 3)
	countExit  = 2 // the process exits
	countClose = 4 // its payload is counted by the session's Close, not now (a write in flight that Close finishes)
)

// countPlugin counts the payload bytes of the messages it is sent as
// its BytesWire, from zero in each process. Sent countHang it hangs
// without stopping: its Stats and Close block for ever, ignoring their
// contexts (a deadlock in the plugin); sent countExit it exits; sent
// countClose its Close counts that payload (and a data page), as a
// receiving transport's close counts what it finishes writing.
func countPlugin() transport.Transport {
	var mu sync.Mutex
	var bytes, atClose, pages uint64
	hung := make(chan struct{})
	never := make(chan struct{})
	hang := func() {
		select {
		case <-hung:
			<-never
		default:
		}
	}
	return &transport.Mock{
		InfoFunc: func(context.Context) (transport.Info, error) { return transport.Info{Name: "count"}, nil },
		OpenFunc: func(context.Context, transport.OpenRequest) error { return nil },
		SendMessageFunc: func(_ context.Context, m transport.Message) error {
			switch m.Kind {
			case countHang:
				close(hung)
			case countExit:
				os.Exit(4)
			case countClose:
				mu.Lock()
				atClose = uint64(len(m.Payload))
				mu.Unlock()
			default:
				mu.Lock()
				bytes += uint64(len(m.Payload))
				mu.Unlock()
			}
			return nil
		},
		StatsFunc: func(context.Context) (transport.Stats, error) {
			hang()
			mu.Lock()
			defer mu.Unlock()
			return transport.Stats{BytesWire: bytes, PagesData: pages}, nil
		},
		CloseFunc: func() error {
			hang()
			mu.Lock()
			defer mu.Unlock()
			if atClose > 0 {
				bytes, pages, atClose = bytes+atClose, pages+1, 0
			}
			return nil
		},
	}
}
