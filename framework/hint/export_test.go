package hint

import (
	"context"
	"os"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

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
