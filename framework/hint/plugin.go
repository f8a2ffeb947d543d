package hint

import (
	"context"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/ferryvm/ferry/framework/hint/proto"
	"github.com/ferryvm/ferry/framework/internal/errclass"
	"github.com/ferryvm/ferry/framework/internal/plugproc"
)

// PluginName is the name the hint kind is dispensed under.
const PluginName = "hint"

// Handshake is the go-plugin handshake of hint provider plugins: a plugin
// binary started by hand refuses to run, a transport plugin is refused as
// a hint provider (and the other way round), and a plugin speaking another
// APIVersion is refused by the host.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  APIVersion,
	MagicCookieKey:   "FERRY_HINT_PLUGIN",
	MagicCookieValue: "a5f046c221df13e3411eabeb26c7eeb9",
}

// kind is what framework/internal/plugproc needs to launch and serve
// plugins of this kind; a plugin process finds the number of RAM files
// it inherited in FERRY_HINT_FILES and the host's log level in
// FERRY_HINT_LOG_LEVEL. The setup calls answer a margin before their
// deadline, with the provider's reason when they run out of time
// (plugproc's answer.go); Hints keeps its own margin (Request.AnswerBy)
// and Close the whole deadline.
var kind = plugproc.NewKind(PluginName, "FERRY_HINT", Handshake).WithAnswerEarly(
	pb.Provider_Info_FullMethodName, pb.Provider_Schema_FullMethodName,
	pb.Provider_Validate_FullMethodName, pb.Provider_Configure_FullMethodName)

// Message bounds (STYLE: chunk any stream to <= 1 MiB).
const (
	// maxMessage bounds every message either side accepts.
	maxMessage = 1 << 20
	// maxRangesPerMessage bounds a HintsResponse or BalloonHintResponse:
	// a range encodes in at most 24 bytes (TestMessageSizes).
	maxRangesPerMessage = 32768
)

// MaxCMMABits is the most CMMA values one Host.CMMABits call returns
// over gRPC; a provider asks again from first+len(values) for more.
const MaxCMMABits = 1 << 19

// GRPCPlugin is the go-plugin plugin of the hint kind (gRPC only). In a
// plugin process Impl is served; on the host, GRPCClient returns the
// client. Files are the RAM files the plugin process received at start,
// on both sides in the same order.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl  Provider
	Files []*os.File
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer implements plugin.GRPCPlugin. The broker is how the server
// reaches the host's Host service when Configure names it.
func (p *GRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterProviderServer(s, newServer(p.Impl, p.Files, broker))
	return nil
}

// GRPCClient implements plugin.GRPCPlugin; ctx ends when the plugin
// process exits. The broker is where Configure serves the Host.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &grpcClient{rpc: pb.NewProviderClient(c), broker: broker, files: p.Files, proc: errclass.NewProcess(ctx.Done(), ErrPluginGone, classes)}, nil
}

// Serve runs a hint provider plugin process serving impl until the host
// stops it. Call it from the plugin's main; the RAM files the host handed
// over reach impl in VM.Files, and Host calls go back to the host.
func Serve(impl Provider) {
	kind.Serve(func(files []*os.File, _ *os.File) plugin.Plugin { return &GRPCPlugin{Impl: impl, Files: files} })
}

// Logger returns the logger a plugin process should log through: JSON on
// stderr, which go-plugin turns back into records of the host's logger
// with their levels, filtered at the host logger's level.
func Logger(name string) hclog.Logger { return kind.Logger(name) }
