package transport

import (
	"context"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/ferryvm/ferry/framework/internal/errclass"
	"github.com/ferryvm/ferry/framework/internal/plugproc"
	pb "github.com/ferryvm/ferry/framework/transport/proto"
)

// PluginName is the name the transport kind is dispensed under.
const PluginName = "transport"

// Handshake is the go-plugin handshake of transport plugins: a plugin
// binary started by hand refuses to run, and a plugin speaking another
// APIVersion is refused by the host.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  APIVersion,
	MagicCookieKey:   "FERRY_TRANSPORT_PLUGIN",
	MagicCookieValue: "5d0a3f1e9c7b4e28a6b1c0d7f2e4a913",
}

// kind is what framework/internal/plugproc needs to launch and serve
// plugins of this kind; a plugin process finds the number of RAM files
// it inherited in FERRY_TRANSPORT_FILES, its urgent channel's descriptor
// in FERRY_TRANSPORT_CHANNEL and the host's log level in
// FERRY_TRANSPORT_LOG_LEVEL. The setup calls answer a margin before
// their deadline, with the plugin's reason when they run out of time
// (plugproc's answer.go); the data path, its long poll and Close keep
// the whole deadline.
var kind = plugproc.NewKind(PluginName, "FERRY_TRANSPORT", Handshake).WithAnswerEarly(
	pb.Transport_Info_FullMethodName, pb.Transport_Schema_FullMethodName,
	pb.Transport_Validate_FullMethodName, pb.Transport_Open_FullMethodName)

// GRPCPlugin is the go-plugin plugin of the transport kind (gRPC only).
// In a plugin process Impl is served; on the host, GRPCClient returns the
// client. Files are the RAM files the plugin process received at start,
// on both sides in the same order. Channel is this side's end of the
// urgent channel (NewChannelPair; channel.go), which carries the urgent
// path; without one, the urgent path is not supported.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl    Transport
	Files   []*os.File
	Channel *os.File
	// Held (in a plugin process) are the listening sockets the host
	// handed over at start; Listen takes them (listen.go).
	Held []plugproc.Held
	// OnHold (on the host) takes each listening socket the plugin hands
	// over; nil closes them.
	OnHold func(name string, f *os.File)
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	var ch *chanServer
	if p.Channel != nil {
		conn, err := channelConn(p.Channel)
		if err != nil {
			return err
		}
		ch = newChanServer(p.Impl, conn)
		adoptHeld(p.Held, &ch.chanWriter)
		go ch.serve()
	}
	pb.RegisterTransportServer(s, newServer(p.Impl, p.Files, ch))
	return nil
}

// GRPCClient implements plugin.GRPCPlugin; ctx ends when the plugin
// process exits.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	gc := &grpcClient{rpc: pb.NewTransportClient(c), files: p.Files, proc: errclass.NewProcess(ctx.Done(), ErrPluginGone, classes)}
	if p.Channel != nil {
		conn, err := channelConn(p.Channel)
		if err != nil {
			return nil, err
		}
		gc.ch = newChanClient(conn, gc.proc, p.OnHold)
	}
	return gc, nil
}

// Serve runs a transport plugin process serving impl until the host
// stops it. Call it from the plugin's main; the RAM files the host
// handed over reach impl in OpenRequest.Files.
func Serve(impl Transport) {
	kind.Serve(func(files []*os.File, channel *os.File) plugin.Plugin {
		var held []plugproc.Held
		if channel != nil {
			var err error
			if held, err = plugproc.InheritedHeld(kind.HeldEnv, plugproc.FirstFile+len(files)+1); err != nil {
				Logger(PluginName).Error("transport plugin cannot start", "error", err)
				os.Exit(1)
			}
		}
		return &GRPCPlugin{Impl: impl, Files: files, Channel: channel, Held: held}
	})
}

// Logger returns the logger a plugin process should log through: JSON on
// stderr, which go-plugin turns back into records of the host's logger
// with their levels, filtered at the host logger's level.
func Logger(name string) hclog.Logger { return kind.Logger(name) }
