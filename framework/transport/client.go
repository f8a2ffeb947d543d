package transport

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferryvm/ferry/framework/internal/schemaconv"
	"github.com/ferryvm/ferry/framework/schema"
	schemapb "github.com/ferryvm/ferry/framework/schema/proto"
	pb "github.com/ferryvm/ferry/framework/transport/proto"
)

// maxRunsPerCall bounds one SendPages RPC: a run encodes in at most 26
// bytes, so 32768 runs stay under 1 MiB (TestSendPagesRequestSize).
const maxRunsPerCall = 32768

// closeTimeout bounds the Close RPC, which has no context of its own.
const closeTimeout = 10 * time.Second

// grpcClient is the host side of a transport plugin: transport.Transport
// over the plugin's gRPC service.
type grpcClient struct {
	rpc pb.TransportClient
	// files are the RAM files the plugin process received at start, in
	// launch order: OpenRequest.Files are matched against them.
	files []*os.File
	// done is closed when the plugin process has exited (go-plugin
	// cancels the context it hands to GRPCClient).
	done <-chan struct{}
	gone atomic.Bool
	// ack is the seq of the last message RecvMessage returned.
	ack atomic.Uint64
}

var _ Transport = (*grpcClient)(nil)

// Info implements Transport.Info.
func (c *grpcClient) Info(ctx context.Context) (Info, error) {
	if err := c.alive(); err != nil {
		return Info{}, err
	}
	r, err := c.rpc.Info(ctx, &pb.InfoRequest{})
	if err != nil {
		return Info{}, c.fail(ctx, err)
	}
	return Info{Name: r.GetName(), Version: r.GetVersion()}, nil
}

// Schema implements Transport.Schema.
func (c *grpcClient) Schema(ctx context.Context) (schema.Schema, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	r, err := c.rpc.Schema(ctx, &schemapb.SchemaRequest{})
	if err != nil {
		return nil, c.fail(ctx, err)
	}
	return schemaconv.SchemaFromProto(r), nil
}

// Open implements Transport.Open. The RAM files travel as indices into
// the files the plugin received at start; req.Files, when set, are
// matched to those by identity (the same open file or the same inode).
func (c *grpcClient) Open(ctx context.Context, req OpenRequest) error {
	if err := c.alive(); err != nil {
		return err
	}
	cfg, err := schemaconv.ConfigToProto(req.Config)
	if err != nil {
		return err
	}
	ram := make([]*pb.RAMRegion, len(req.RAM))
	for i, r := range req.RAM {
		idx, err := c.launchIndex(req, r.File)
		if err != nil {
			return fmt.Errorf("RAM region %d: %w", i, err)
		}
		ram[i] = &pb.RAMRegion{Gpa: r.GPA, Size: r.Size, File: uint32(idx), Offset: r.Offset}
	}
	_, err = c.rpc.Open(ctx, &pb.OpenRequest{Role: pb.Role(req.Role), Config: cfg, Ram: ram, Credentials: credsToProto(req.Credentials)})
	return c.fail(ctx, err)
}

// launchIndex maps req.RAM[i].File to the index of the same file among
// those the plugin received at start.
func (c *grpcClient) launchIndex(req OpenRequest, file int) (int, error) {
	if req.Files == nil {
		if file < 0 || file >= len(c.files) {
			return 0, fmt.Errorf("%w: file %d, but the plugin received %d files at start", ErrBadConfig, file, len(c.files))
		}
		return file, nil
	}
	if file < 0 || file >= len(req.Files) {
		return 0, fmt.Errorf("%w: file %d of %d", ErrBadConfig, file, len(req.Files))
	}
	f := req.Files[file]
	var fi os.FileInfo
	for i, l := range c.files {
		if l == f {
			return i, nil
		}
		if fi == nil {
			var err error
			if fi, err = f.Stat(); err != nil {
				return 0, fmt.Errorf("%w: stat RAM file %d: %v", ErrBadConfig, file, err)
			}
		}
		if li, err := l.Stat(); err == nil && os.SameFile(fi, li) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: RAM file %d (%s) was not handed to the plugin at start; pass it to Launch", ErrBadConfig, file, f.Name())
}

// SendPages implements Transport.SendPages, in RPCs of at most
// maxRunsPerCall runs. If one fails, the runs of the earlier ones stay
// queued.
func (c *grpcClient) SendPages(ctx context.Context, runs []PageRun) error {
	if err := c.alive(); err != nil {
		return err
	}
	for len(runs) > 0 {
		n := min(len(runs), maxRunsPerCall)
		if _, err := c.rpc.SendPages(ctx, &pb.SendPagesRequest{Runs: runsToProto(runs[:n])}); err != nil {
			return c.fail(ctx, err)
		}
		runs = runs[n:]
	}
	return nil
}

// Flush implements Transport.Flush.
func (c *grpcClient) Flush(ctx context.Context) error {
	if err := c.alive(); err != nil {
		return err
	}
	_, err := c.rpc.Flush(ctx, &pb.FlushRequest{})
	return c.fail(ctx, err)
}

// SendMessage implements Transport.SendMessage. A payload over MaxMessage
// is refused here, before it reaches the wire.
func (c *grpcClient) SendMessage(ctx context.Context, m Message) error {
	if err := c.alive(); err != nil {
		return err
	}
	if len(m.Payload) > MaxMessage {
		return fmt.Errorf("message of %d bytes exceeds the %d-byte limit (transport.MaxMessage)", len(m.Payload), MaxMessage)
	}
	_, err := c.rpc.SendMessage(ctx, &pb.SendMessageRequest{Message: &pb.Message{Kind: m.Kind, Payload: m.Payload}})
	return c.fail(ctx, err)
}

// RecvMessage implements Transport.RecvMessage as a long poll that
// acknowledges the previous message, so a cancelled call loses nothing.
func (c *grpcClient) RecvMessage(ctx context.Context) (Message, error) {
	if err := c.alive(); err != nil {
		return Message{}, err
	}
	r, err := c.rpc.RecvMessage(ctx, &pb.RecvMessageRequest{Ack: c.ack.Load()})
	if err != nil {
		return Message{}, c.fail(ctx, err)
	}
	m := r.GetMessage()
	if m == nil || len(m.GetPayload()) > MaxMessage {
		return Message{}, fmt.Errorf("%w: plugin returned a malformed message", ErrProtocol)
	}
	c.ack.Store(r.GetSeq())
	return Message{Kind: m.GetKind(), Payload: m.GetPayload()}, nil
}

// Stats implements Transport.Stats.
func (c *grpcClient) Stats(ctx context.Context) (Stats, error) {
	if err := c.alive(); err != nil {
		return Stats{}, err
	}
	r, err := c.rpc.Stats(ctx, &pb.StatsRequest{})
	if err != nil {
		return Stats{}, c.fail(ctx, err)
	}
	return statsFromProto(r), nil
}

// Close implements Transport.Close: it ends the plugin's session; the
// plugin process keeps running (Launch's transport also stops it).
func (c *grpcClient) Close() error {
	if err := c.alive(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_, err := c.rpc.Close(ctx, &pb.CloseRequest{})
	return c.fail(ctx, err)
}

// alive returns an ErrPluginGone error once the plugin process is known
// to be gone.
func (c *grpcClient) alive() error {
	if !c.gone.Load() {
		select {
		case <-c.done:
			c.gone.Store(true)
		default:
			return nil
		}
	}
	return &classError{class: ErrPluginGone, msg: ErrPluginGone.Error()}
}

// fail turns an RPC error into an error of its class. Deadline and
// cancellation of the caller's own context keep their context class.
// Unavailable means the plugin is gone; so does Canceled while the
// caller's context is live and the process has exited. Once the process
// has exited, every later call fails with ErrPluginGone without an RPC.
// Other codes map back to their class (status.go).
func (c *grpcClient) fail(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if ctx.Err() != nil && (st.Code() == codes.Canceled || st.Code() == codes.DeadlineExceeded) {
		return &classError{class: ctx.Err(), msg: st.Message()}
	}
	if (st.Code() == codes.Unavailable || st.Code() == codes.Canceled) && c.exited() {
		c.gone.Store(true)
		return &classError{class: ErrPluginGone, msg: ErrPluginGone.Error() + ": " + st.Message()}
	}
	// Unavailable from a live process (an implementation's ErrPluginGone,
	// or a connection that broke before the exit was seen) is still
	// ErrPluginGone; Canceled is the implementation's context.Canceled.
	return fromStatus(st)
}

// exited waits briefly for the process-exit signal: an RPC can fail a
// moment before go-plugin has reaped the process.
func (c *grpcClient) exited() bool {
	select {
	case <-c.done:
		return true
	case <-time.After(100 * time.Millisecond):
		return false
	}
}
