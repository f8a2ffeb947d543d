package transport

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/ferryvm/ferry/framework/internal/errclass"
	"github.com/ferryvm/ferry/framework/internal/plugproc"
	"github.com/ferryvm/ferry/framework/internal/schemaconv"
	"github.com/ferryvm/ferry/framework/schema"
	schemapb "github.com/ferryvm/ferry/framework/schema/proto"
	pb "github.com/ferryvm/ferry/framework/transport/proto"
)

// maxRunsPerCall bounds one SendPages RPC: a run encodes in at most 26
// bytes, so 32768 runs stay under 1 MiB (TestSendPagesRequestSize).
const maxRunsPerCall = 32768

// closeTimeout bounds what closing a session may wait for a plugin (its
// Stats, the Close RPC and its Stats after it together, in
// launched.Close): a plugin
// whose process stopped or hangs answers neither, and a post-copy
// reconnect waits for the close before it can start the plugin again.
const closeTimeout = 5 * time.Second

// grpcClient is the host side of a transport plugin: transport.Transport
// over the plugin's gRPC service.
type grpcClient struct {
	rpc pb.TransportClient
	// files are the RAM files the plugin process received at start, in
	// launch order: OpenRequest.Files are matched against them.
	files []*os.File
	// proc is the plugin process: whether it is gone, and how RPC
	// errors map to classes.
	proc *errclass.Process
	// ack is the seq of the last message RecvMessage returned.
	ack atomic.Uint64
	// ch is the urgent channel (nil: the plugin has none, and the urgent
	// path is not supported); sessions numbers the sessions on it.
	ch       *chanClient
	sessions atomic.Uint64
}

var _ Transport = (*grpcClient)(nil)

// Info implements Transport.Info.
func (c *grpcClient) Info(ctx context.Context) (Info, error) {
	if err := c.proc.Alive(); err != nil {
		return Info{}, err
	}
	r, err := c.rpc.Info(ctx, &pb.InfoRequest{})
	if err != nil {
		return Info{}, c.proc.Fail(ctx, err)
	}
	return Info{Name: r.GetName(), Version: r.GetVersion()}, nil
}

// Schema implements Transport.Schema.
func (c *grpcClient) Schema(ctx context.Context) (schema.Schema, error) {
	if err := c.proc.Alive(); err != nil {
		return nil, err
	}
	r, err := c.rpc.Schema(ctx, &schemapb.SchemaRequest{})
	if err != nil {
		return nil, c.proc.Fail(ctx, err)
	}
	return schemaconv.SchemaFromProto(r), nil
}

// Open implements Transport.Open. The RAM files travel as indices into
// the files the plugin received at start; req.Files, when set, are
// matched to those by identity (the same open file or the same inode).
func (c *grpcClient) Open(ctx context.Context, req OpenRequest) error {
	if err := c.proc.Alive(); err != nil {
		return err
	}
	cfg, err := schemaconv.ConfigToProto(req.Config)
	if err != nil {
		return err
	}
	ram := make([]*pb.RAMRegion, len(req.RAM))
	for i, r := range req.RAM {
		idx, err := plugproc.FileIndex(c.files, req.Files, r.File, ErrBadConfig)
		if err != nil {
			return fmt.Errorf("RAM region %d: %w", i, err)
		}
		ram[i] = &pb.RAMRegion{Gpa: r.GPA, Size: r.Size, File: uint32(idx), Offset: r.Offset}
	}
	session := c.sessions.Add(1)
	if c.ch != nil {
		c.ch.newSession(session)
	}
	_, err = c.rpc.Open(ctx, &pb.OpenRequest{Role: pb.Role(req.Role), Config: cfg, Ram: ram, Credentials: credsToProto(req.Credentials),
		UrgentSession: session, MigrationTag: tagToProto(req.Tag)})
	return c.proc.Fail(ctx, err)
}

// SendPages implements Transport.SendPages, in RPCs of at most
// maxRunsPerCall runs. If one fails, the runs of the earlier ones stay
// queued.
func (c *grpcClient) SendPages(ctx context.Context, runs []PageRun) error {
	if err := c.proc.Alive(); err != nil {
		return err
	}
	for len(runs) > 0 {
		n := min(len(runs), maxRunsPerCall)
		if _, err := c.rpc.SendPages(ctx, &pb.SendPagesRequest{Runs: runsToProto(runs[:n])}); err != nil {
			return c.proc.Fail(ctx, err)
		}
		runs = runs[n:]
	}
	return nil
}

// Flush implements Transport.Flush.
func (c *grpcClient) Flush(ctx context.Context) error {
	if err := c.proc.Alive(); err != nil {
		return err
	}
	_, err := c.rpc.Flush(ctx, &pb.FlushRequest{})
	return c.proc.Fail(ctx, err)
}

// SendMessage implements Transport.SendMessage. A payload over MaxMessage
// is refused here, before it reaches the wire.
func (c *grpcClient) SendMessage(ctx context.Context, m Message) error {
	if err := c.proc.Alive(); err != nil {
		return err
	}
	if len(m.Payload) > MaxMessage {
		return fmt.Errorf("message of %d bytes exceeds the %d-byte limit (transport.MaxMessage)", len(m.Payload), MaxMessage)
	}
	_, err := c.rpc.SendMessage(ctx, &pb.SendMessageRequest{Message: &pb.Message{Kind: m.Kind, Payload: m.Payload}})
	return c.proc.Fail(ctx, err)
}

// RecvMessage implements Transport.RecvMessage as a long poll that
// acknowledges the previous message, so a cancelled call loses nothing.
func (c *grpcClient) RecvMessage(ctx context.Context) (Message, error) {
	if err := c.proc.Alive(); err != nil {
		return Message{}, err
	}
	r, err := c.rpc.RecvMessage(ctx, &pb.RecvMessageRequest{Ack: c.ack.Load()})
	if err != nil {
		return Message{}, c.proc.Fail(ctx, err)
	}
	m := r.GetMessage()
	if m == nil || len(m.GetPayload()) > MaxMessage {
		return Message{}, fmt.Errorf("%w: plugin returned a malformed message", ErrProtocol)
	}
	c.ack.Store(r.GetSeq())
	return Message{Kind: m.GetKind(), Payload: m.GetPayload()}, nil
}

// SendUrgent implements Transport.SendUrgent over the urgent channel;
// payload bounds as SendMessage.
func (c *grpcClient) SendUrgent(ctx context.Context, m Message) error {
	if err := c.urgent(); err != nil {
		return err
	}
	if len(m.Payload) > MaxMessage {
		return fmt.Errorf("urgent message of %d bytes exceeds the %d-byte limit (transport.MaxMessage)", len(m.Payload), MaxMessage)
	}
	return c.ch.call(ctx, chanFrame{Type: fSend, Msg: m})
}

// RecvUrgent implements Transport.RecvUrgent over the urgent channel:
// the plugin pushes urgent messages as they arrive.
func (c *grpcClient) RecvUrgent(ctx context.Context) (Message, error) {
	if err := c.urgent(); err != nil {
		return Message{}, err
	}
	return c.ch.recvUrgent(ctx)
}

// SendPagesUrgent implements Transport.SendPagesUrgent over the urgent
// channel, in calls of at most chanMaxRuns runs.
func (c *grpcClient) SendPagesUrgent(ctx context.Context, runs []PageRun) error {
	if err := c.urgent(); err != nil {
		return err
	}
	for len(runs) > 0 {
		n := min(len(runs), chanMaxRuns)
		if err := c.ch.call(ctx, chanFrame{Type: fSendPages, Runs: runs[:n]}); err != nil {
			return err
		}
		runs = runs[n:]
	}
	return nil
}

// Landed implements Transport.Landed over the urgent channel: the plugin
// pushes landed runs as they complete, once the first call asked.
func (c *grpcClient) Landed(ctx context.Context) ([]PageRun, error) {
	if err := c.urgent(); err != nil {
		return nil, err
	}
	return c.ch.landed(ctx)
}

// Answer implements Answerer over the urgent channel: owed's file goes
// to the plugin, which maps it and arms its transport, if that answers
// requests itself (ErrNotSupported if not).
func (c *grpcClient) Answer(ctx context.Context, kind uint32, owed *Owed) error {
	if err := c.urgent(); err != nil {
		return err
	}
	return c.ch.callWith(ctx, chanFrame{Type: fAnswer, Msg: Message{Kind: kind}, Pages: owed.Pages()}, owed.File())
}

// urgent fails unless the process is alive and has an urgent channel.
func (c *grpcClient) urgent() error {
	if err := c.proc.Alive(); err != nil {
		return err
	}
	if c.ch == nil {
		return fmt.Errorf("%w: the plugin was started without its urgent channel (transport API %d)", ErrNotSupported, APIVersion)
	}
	return nil
}

// Stats implements Transport.Stats.
func (c *grpcClient) Stats(ctx context.Context) (Stats, error) {
	if err := c.proc.Alive(); err != nil {
		return Stats{}, err
	}
	r, err := c.rpc.Stats(ctx, &pb.StatsRequest{})
	if err != nil {
		return Stats{}, c.proc.Fail(ctx, err)
	}
	return statsFromProto(r), nil
}

// Close implements Transport.Close: it ends the plugin's session; the
// plugin process keeps running (Launch's transport also stops it).
func (c *grpcClient) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	return c.closeCtx(ctx)
}

// closeCtx is Close within ctx.
func (c *grpcClient) closeCtx(ctx context.Context) error {
	if err := c.proc.Alive(); err != nil {
		return err
	}
	if c.ch != nil {
		c.ch.newSession(0)
	}
	_, err := c.rpc.Close(ctx, &pb.CloseRequest{})
	return c.proc.Fail(ctx, err)
}
