package hint

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

	pb "github.com/ferryvm/ferry/framework/hint/proto"
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

// Environment of a plugin process, set by Launch.
const (
	// envFiles is how many RAM files the plugin received, at fds 3, 4, ...
	envFiles = "FERRY_HINT_FILES"
	// envLogLevel is the host logger's level, for Logger.
	envLogLevel = "FERRY_HINT_LOG_LEVEL"
)

// firstFile is the descriptor of files[0] in the plugin process:
// exec.Cmd.ExtraFiles start after stdin, stdout and stderr.
const firstFile = 3

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
	return &grpcClient{rpc: pb.NewProviderClient(c), broker: broker, files: p.Files, done: ctx.Done()}, nil
}

// Serve runs a hint provider plugin process serving impl until the host
// stops it. Call it from the plugin's main; the RAM files the host handed
// over reach impl in VM.Files, and Host calls go back to the host.
func Serve(impl Provider) {
	log := Logger(PluginName)
	files, err := inheritedFiles()
	if err != nil {
		log.Error("hint plugin cannot start", "error", err)
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
// orphan would keep guest RAM open.
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
