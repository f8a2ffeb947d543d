package hint

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/ferryvm/ferry/framework/hint/proto"
)

// HintsPastAlive is p.Hints(ctx, generation 1) as it goes on once its
// look at whether the process lives (Alive) has passed: it opens the
// stream whatever Alive would say now, as a call whose look came just
// before Kill does. It returns the stream's error as Hints would.
func HintsPastAlive(ctx context.Context, p *Plugin) error {
	stream, err := p.c.rpc.Hints(ctx, &pb.HintsRequest{Generation: 1}, recvLimit)
	if err == nil {
		_, err = stream.Recv()
	}
	return p.exitErr(p.c.proc.Fail(ctx, err))
}

// ServeBrokerFlood serves a provider whose process, as soon as it is
// served, offers the host connections for broker ids the host never
// asked for (go-plugin's GRPCBroker.Accept: one ConnInfo message on the
// broker stream each), as fast as it can, until it is stopped.
func ServeBrokerFlood() int {
	kind.Serve(func(files []*os.File, _ *os.File) plugin.Plugin {
		return &brokerFlood{GRPCPlugin{Impl: &Mock{InfoFunc: func(context.Context) (Info, error) {
			return Info{Name: "flood", Meaning: MeaningFree}, nil
		}}, Files: files}}
	})
	return 0
}

type brokerFlood struct{ GRPCPlugin }

func (p *brokerFlood) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	go func() {
		for id := uint32(1 << 31); ; id++ {
			if ln, err := b.Accept(id); err == nil {
				ln.Close()
			}
		}
	}()
	return p.GRPCPlugin.GRPCServer(b, s)
}

// ServeConnFlood serves a provider whose Configure, once it reached the
// window's Host (one call), opens ConnFloodConns more connections to
// every socket the host made in the process's socket directory (the
// window's Host listener), keeps them open without a word, and returns.
// Its Hints runs one balloon hint session and emits one page if it
// worked.
func ServeConnFlood() int {
	f := &connFlood{dir: os.Getenv(plugin.EnvUnixSocketDir), before: map[string]bool{}}
	kind.Serve(func(files []*os.File, _ *os.File) plugin.Plugin {
		f.GRPCPlugin = GRPCPlugin{Files: files, Impl: &Mock{ConfigureFunc: f.configure, HintsFunc: f.hints}}
		return f
	})
	return 0
}

// ConnFloodConns is how many connections ServeConnFlood opens to each
// socket.
const ConnFloodConns = 1000

type connFlood struct {
	GRPCPlugin
	dir    string
	before map[string]bool // the sockets that were there at start: the plugin's own

	mu    sync.Mutex
	host  Host
	conns []net.Conn
}

// GRPCServer implements plugin.GRPCPlugin: go-plugin listens before it
// calls it, so the plugin's own socket is there by now.
func (f *connFlood) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	if ents, err := os.ReadDir(f.dir); err == nil {
		for _, e := range ents {
			f.before[e.Name()] = true
		}
	}
	return f.GRPCPlugin.GRPCServer(b, s)
}

func (f *connFlood) configure(ctx context.Context, _ Config, _ VM, h Host) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.host = h
	h.CMMABits(ctx, 0, 1) // the window's own connection
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if f.before[e.Name()] {
			continue
		}
		for range ConnFloodConns {
			c, err := net.Dial("unix", filepath.Join(f.dir, e.Name()))
			if err != nil {
				break
			}
			f.conns = append(f.conns, c)
		}
	}
	return nil
}

func (f *connFlood) hints(ctx context.Context, _ Request, emit func([]Range) error) error {
	f.mu.Lock()
	h := f.host
	f.mu.Unlock()
	if _, err := h.BalloonHint(ctx); err != nil {
		return err
	}
	return emit([]Range{{First: 0, Count: 1}})
}

// BalloonCredit is the balloon hint sessions a window allows beyond one
// per Hints call.
const BalloonCredit = balloonCredit

// ServeCallFlood serves a provider whose Configure starts
// CallFloodWorkers goroutines that call the window's Host (CMMABits for
// one value, which the test's VMM refuses or answers at once) as fast as
// they can, for as long as the process lives, and returns.
func ServeCallFlood() int { return serveCallFlood(1) }

// ServeCMMARepeat is ServeCallFlood asking for MinRefundedCMMA values a
// call, every call from frame 0: a flood dressed as a CMMA scan.
func ServeCMMARepeat() int { return serveCallFlood(minRefundedCMMA) }

// MinRefundedCMMA is minRefundedCMMA.
const MinRefundedCMMA = minRefundedCMMA

func serveCallFlood(count int) int {
	kind.Serve(func(files []*os.File, _ *os.File) plugin.Plugin {
		return &GRPCPlugin{Files: files, Impl: &Mock{ConfigureFunc: func(_ context.Context, _ Config, _ VM, h Host) error {
			for range CallFloodWorkers {
				go func() {
					for {
						h.CMMABits(context.Background(), 0, count)
					}
				}()
			}
			return nil
		}}}
	})
	return 0
}

// CallFloodWorkers is how many goroutines ServeCallFlood calls with.
const CallFloodWorkers = 32

// ErrBalloonTooMuch is what a plugin's BalloonHint returns for a session
// of more ranges than the guest has pages (balloonLimit).
var ErrBalloonTooMuch = errBalloonTooMuch

// MaxRangesPerMessage is the most ranges one stream message holds, the
// least balloonLimit allows.
const MaxRangesPerMessage = maxRangesPerMessage
