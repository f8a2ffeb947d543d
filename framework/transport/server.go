package transport

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/ferryvm/ferry/framework/internal/schemaconv"
	schemapb "github.com/ferryvm/ferry/framework/schema/proto"
	pb "github.com/ferryvm/ferry/framework/transport/proto"
)

// grpcServer is the plugin side: it serves a Transport implementation
// over gRPC, turning errors into status codes by class.
type grpcServer struct {
	pb.UnimplementedTransportServer
	impl Transport
	// files are the RAM files this process received at start; a
	// RAMRegion's File indexes them.
	files []*os.File

	// The contract's goroutines, one call in impl at a time each: main
	// for Open, SendPages, Flush and Close, send for SendMessage, recv
	// for RecvMessage. A call the host abandoned (its context ended) may
	// still be running here when the host's next call arrives; that call
	// waits for it.
	main, send, recv chan struct{}

	mu      sync.Mutex
	seq     uint64                  // seq of the last message taken from impl
	pending *pb.RecvMessageResponse // last message returned, until acknowledged
	epoch   uint64                  // bumped by Open and Close: drops pending
}

func newServer(impl Transport, files []*os.File) *grpcServer {
	return &grpcServer{impl: impl, files: files,
		main: make(chan struct{}, 1), send: make(chan struct{}, 1), recv: make(chan struct{}, 1)}
}

// enter takes sem, or fails when ctx ends first; leave gives it back.
func enter(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return classes.ToStatus(ctx.Err())
	}
}

func leave(sem chan struct{}) { <-sem }

// Info implements pb.TransportServer.
func (s *grpcServer) Info(ctx context.Context, _ *pb.InfoRequest) (*pb.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, classes.ToStatus(err)
	}
	return &pb.InfoResponse{Name: info.Name, Version: info.Version}, nil
}

// Schema implements pb.TransportServer.
func (s *grpcServer) Schema(ctx context.Context, _ *schemapb.SchemaRequest) (*schemapb.SchemaResponse, error) {
	r, err := schemaconv.SchemaResponse(s.impl.Schema(ctx))
	return r, classes.ToStatus(err)
}

// Open implements pb.TransportServer: region file indices become this
// process's inherited files.
func (s *grpcServer) Open(ctx context.Context, req *pb.OpenRequest) (*pb.OpenResponse, error) {
	cfg, err := schemaconv.ConfigFromProto(req.GetConfig())
	if err != nil {
		return nil, classes.ToStatus(err)
	}
	ram := make([]RAMRegion, len(req.GetRam()))
	for i, r := range req.GetRam() {
		if int(r.GetFile()) >= len(s.files) {
			return nil, classes.ToStatus(fmt.Errorf("%w: RAM region %d uses file %d, but the plugin received %d files at start",
				ErrBadConfig, i, r.GetFile(), len(s.files)))
		}
		ram[i] = RAMRegion{GPA: r.GetGpa(), Size: r.GetSize(), File: int(r.GetFile()), Offset: r.GetOffset()}
	}
	if err := enter(ctx, s.main); err != nil {
		return nil, err
	}
	defer leave(s.main)
	s.newEpoch()
	err = s.impl.Open(ctx, OpenRequest{Role: Role(req.GetRole()), Config: cfg, RAM: ram, Files: s.files,
		Credentials: credsFromProto(req.GetCredentials())})
	return &pb.OpenResponse{}, classes.ToStatus(err)
}

// SendPages implements pb.TransportServer.
func (s *grpcServer) SendPages(ctx context.Context, req *pb.SendPagesRequest) (*pb.SendPagesResponse, error) {
	if err := enter(ctx, s.main); err != nil {
		return nil, err
	}
	defer leave(s.main)
	return &pb.SendPagesResponse{}, classes.ToStatus(s.impl.SendPages(ctx, runsFromProto(req.GetRuns())))
}

// Flush implements pb.TransportServer.
func (s *grpcServer) Flush(ctx context.Context, _ *pb.FlushRequest) (*pb.FlushResponse, error) {
	if err := enter(ctx, s.main); err != nil {
		return nil, err
	}
	defer leave(s.main)
	return &pb.FlushResponse{}, classes.ToStatus(s.impl.Flush(ctx))
}

// SendMessage implements pb.TransportServer.
func (s *grpcServer) SendMessage(ctx context.Context, req *pb.SendMessageRequest) (*pb.SendMessageResponse, error) {
	m := req.GetMessage()
	if m == nil {
		return nil, classes.ToStatus(fmt.Errorf("%w: SendMessage without a message", ErrProtocol))
	}
	if err := enter(ctx, s.send); err != nil {
		return nil, err
	}
	defer leave(s.send)
	return &pb.SendMessageResponse{}, classes.ToStatus(s.impl.SendMessage(ctx, Message{Kind: m.GetKind(), Payload: m.GetPayload()}))
}

// RecvMessage implements pb.TransportServer. The message last returned
// stays pending until a request acknowledges its seq; a request that does
// not (the host never saw the answer) gets it again.
func (s *grpcServer) RecvMessage(ctx context.Context, req *pb.RecvMessageRequest) (*pb.RecvMessageResponse, error) {
	if err := enter(ctx, s.recv); err != nil {
		return nil, err
	}
	defer leave(s.recv)
	s.mu.Lock()
	if p := s.pending; p != nil && req.GetAck() < p.GetSeq() {
		s.mu.Unlock()
		return p, nil
	}
	s.pending = nil
	epoch := s.epoch
	s.mu.Unlock()

	m, err := s.impl.RecvMessage(ctx)
	if err != nil {
		return nil, classes.ToStatus(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	r := &pb.RecvMessageResponse{Seq: s.seq, Message: &pb.Message{Kind: m.Kind, Payload: m.Payload}}
	if epoch == s.epoch {
		s.pending = r
	}
	return r, nil
}

// Stats implements pb.TransportServer.
func (s *grpcServer) Stats(ctx context.Context, _ *pb.StatsRequest) (*pb.StatsResponse, error) {
	st, err := s.impl.Stats(ctx)
	if err != nil {
		return nil, classes.ToStatus(err)
	}
	return statsToProto(st), nil
}

// Close implements pb.TransportServer.
func (s *grpcServer) Close(ctx context.Context, _ *pb.CloseRequest) (*pb.CloseResponse, error) {
	if err := enter(ctx, s.main); err != nil {
		return nil, err
	}
	defer leave(s.main)
	s.newEpoch()
	return &pb.CloseResponse{}, classes.ToStatus(s.impl.Close())
}

// newEpoch forgets the pending message: it belonged to the last session.
func (s *grpcServer) newEpoch() {
	s.mu.Lock()
	s.epoch++
	s.pending = nil
	s.mu.Unlock()
}
