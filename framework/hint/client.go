package hint

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/hashicorp/go-plugin"

	pb "github.com/ferryvm/ferry/framework/hint/proto"
	"github.com/ferryvm/ferry/framework/internal/errclass"
	"github.com/ferryvm/ferry/framework/internal/plugproc"
	"github.com/ferryvm/ferry/framework/internal/schemaconv"
	schemapb "github.com/ferryvm/ferry/framework/schema/proto"
)

// grpcClient is the host side of a hint plugin: Provider over the
// plugin's gRPC service, and the server of the Host it calls back.
type grpcClient struct {
	rpc    pb.ProviderClient
	broker *plugin.GRPCBroker // nil: Host callbacks are not offered
	// tls is what the broker's services speak: the process's mutual TLS
	// (Launch sets it); nil: none, as with go-plugin's test connections.
	tls *tls.Config
	// files are the RAM files the plugin process received at start, in
	// launch order: VM.Files are matched against them.
	files []*os.File
	// proc is the plugin process: whether it is gone, and how RPC
	// errors map to classes.
	proc *errclass.Process

	mu     sync.Mutex
	host   *hostService // the Host of the current hint window; nil: none
	killed bool         // no Host is served any more
}

var _ Provider = (*grpcClient)(nil)

// Info implements Provider.Info.
func (c *grpcClient) Info(ctx context.Context) (Info, error) {
	if err := c.proc.Alive(); err != nil {
		return Info{}, err
	}
	r, err := c.rpc.Info(ctx, &pb.InfoRequest{}, recvLimit)
	if err != nil {
		return Info{}, c.proc.Fail(ctx, err)
	}
	return Info{Name: r.GetName(), Version: r.GetVersion(), Meaning: Meaning(r.GetMeaning())}, nil
}

// Schema implements Provider.Schema.
func (c *grpcClient) Schema(ctx context.Context) (Schema, error) {
	if err := c.proc.Alive(); err != nil {
		return nil, err
	}
	r, err := c.rpc.Schema(ctx, &schemapb.SchemaRequest{}, recvLimit)
	if err != nil {
		return nil, c.proc.Fail(ctx, err)
	}
	return schemaconv.SchemaFromProto(r), nil
}

// Configure implements Provider.Configure. The RAM files travel as
// indices into the files the plugin received at start; vm.Files, when
// set, are matched to those by identity (the same open file or the same
// inode). A non-nil host is served to the plugin through the broker until
// Close(final), the next Configure, or the plugin's end; the previous
// window's Host stops being served here.
func (c *grpcClient) Configure(ctx context.Context, cfg Config, vm VM, host Host) error {
	if err := c.proc.Alive(); err != nil {
		return err
	}
	pcfg, err := schemaconv.ConfigToProto(cfg)
	if err != nil {
		return err
	}
	pvm, err := c.vmToProto(vm)
	if err != nil {
		return err
	}
	c.setHost(nil)
	req := &pb.ConfigureRequest{Config: pcfg, Vm: pvm}
	if host != nil && c.broker != nil {
		hs, err := serveHost(c.broker, c.tls, host, vm.RAM)
		if err != nil {
			return err
		}
		c.setHost(hs)
		req.HostBrokerId = hs.id
	}
	if _, err := c.rpc.Configure(ctx, req, recvLimit); err != nil {
		c.setHost(nil)
		return c.proc.Fail(ctx, err)
	}
	return nil
}

func (c *grpcClient) vmToProto(vm VM) (*pb.VM, error) {
	out := &pb.VM{Id: vm.ID, Pid: int64(vm.PID)}
	for i, r := range vm.RAM {
		idx, err := plugproc.FileIndex(c.files, vm.Files, r.File, ErrBadConfig)
		if err != nil {
			return nil, fmt.Errorf("RAM region %d: %w", i, err)
		}
		out.Ram = append(out.Ram, &pb.Region{Gpa: r.GPA, Size: r.Size, HostAddr: r.HostAddr,
			File: uint32(idx), Offset: r.Offset})
	}
	return out, nil
}

// Hints implements Provider.Hints: every stream message becomes one emit
// call. req.Deadline, when set, bounds the call as well as ctx. If emit
// fails, the stream is cancelled and its error returned.
func (c *grpcClient) Hints(ctx context.Context, req Request, emit func([]Range) error) error {
	if err := c.proc.Alive(); err != nil {
		return err
	}
	var cancel context.CancelFunc
	pr := &pb.HintsRequest{Generation: req.Generation}
	if req.Deadline.IsZero() {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithDeadline(ctx, req.Deadline)
		pr.DeadlineUnixNano = req.Deadline.UnixNano()
	}
	defer cancel()
	c.mu.Lock()
	if c.host != nil {
		c.host.w.grant() // this call may begin a balloon hint session
	}
	c.mu.Unlock()
	stream, err := c.rpc.Hints(ctx, pr, recvLimit)
	if err != nil {
		return c.proc.Fail(ctx, err)
	}
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return c.proc.Fail(ctx, err)
		}
		if len(r.GetRanges()) == 0 {
			continue
		}
		if err := emit(rangesFromProto(r.GetRanges())); err != nil {
			return err
		}
	}
}

// Close implements Provider.Close. After a final Close the host stops
// serving the window's Host (the plugin's Close has used it by then).
func (c *grpcClient) Close(ctx context.Context, final bool) error {
	if final {
		defer c.setHost(nil)
	}
	if err := c.proc.Alive(); err != nil {
		return err
	}
	_, err := c.rpc.Close(ctx, &pb.CloseRequest{Final: final}, recvLimit)
	return c.proc.Fail(ctx, err)
}

// setHost makes hs the served Host and stops the previous one. After
// kill nothing is served: hs is stopped at once (a Configure that raced
// with Kill).
func (c *grpcClient) setHost(hs *hostService) {
	c.mu.Lock()
	old := c.host
	c.host = hs
	if c.killed {
		c.host = nil
		defer hs.stop()
	}
	c.mu.Unlock()
	old.stop()
}

// kill stops serving the Host for good: the plugin is being killed.
func (c *grpcClient) kill() {
	c.mu.Lock()
	c.killed = true
	c.mu.Unlock()
	c.setHost(nil)
}
