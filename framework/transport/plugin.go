package transport

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

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

// Environment of a plugin process, set by Launch.
const (
	// envFiles is how many RAM files the plugin received, at fds 3, 4, ...
	envFiles = "FERRY_TRANSPORT_FILES"
	// envLogLevel is the host logger's level, for Logger.
	envLogLevel = "FERRY_TRANSPORT_LOG_LEVEL"
)

// firstFile is the descriptor of files[0] in the plugin process:
// exec.Cmd.ExtraFiles start after stdin, stdout and stderr.
const firstFile = 3

// GRPCPlugin is the go-plugin plugin of the transport kind (gRPC only).
// In a plugin process Impl is served; on the host, GRPCClient returns the
// client. Files are the RAM files the plugin process received at start,
// on both sides in the same order.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl  Transport
	Files []*os.File
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterTransportServer(s, newServer(p.Impl, p.Files))
	return nil
}

// GRPCClient implements plugin.GRPCPlugin; ctx ends when the plugin
// process exits.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &grpcClient{rpc: pb.NewTransportClient(c), files: p.Files, done: ctx.Done()}, nil
}

// Serve runs a transport plugin process serving impl until the host
// stops it. Call it from the plugin's main; the RAM files the host
// handed over reach impl in OpenRequest.Files.
func Serve(impl Transport) {
	log := Logger(PluginName)
	files, err := inheritedFiles()
	if err != nil {
		log.Error("transport plugin cannot start", "error", err)
		os.Exit(1)
	}
	go watchParent(log, os.Getppid(), time.Second)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl, Files: files}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          log,
	})
}

// Logger returns the logger a plugin process should log through: JSON on
// stderr, which go-plugin turns back into records of the host's logger
// with their levels, filtered at the host logger's level.
func Logger(name string) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv(envLogLevel))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: level, Output: os.Stderr, JSONFormat: true})
}

// watchParent exits the process once its parent (the host) is gone and
// it was re-parented: go-plugin only stops a plugin the host kills, and an
// orphan would keep guest RAM and its sockets open.
func watchParent(log hclog.Logger, ppid int, every time.Duration) {
	for range time.Tick(every) {
		if os.Getppid() != ppid {
			log.Error("the host process is gone; exiting", "host_pid", ppid)
			os.Exit(2)
		}
	}
}

// inheritedFiles wraps the descriptors Launch handed over (fd 3+i is
// file i). They are marked close-on-exec so the plugin's own children do
// not inherit guest RAM, and live as long as the process.
func inheritedFiles() ([]*os.File, error) {
	v := os.Getenv(envFiles)
	if v == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1024 {
		return nil, fmt.Errorf("%s=%q: want a count of RAM files", envFiles, v)
	}
	files := make([]*os.File, n)
	for i := range files {
		fd := firstFile + i
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, fmt.Errorf("RAM file %d (fd %d) was not inherited: %w", i, fd, err)
		}
		unix.CloseOnExec(fd)
		files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("guest-ram-%d", i))
	}
	return files, nil
}
