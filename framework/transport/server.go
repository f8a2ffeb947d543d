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

	// ch serves the urgent path (nil: the process has no urgent channel).
	ch *chanServer

	// The contract's lanes over gRPC, one call in impl at a time each:
	// main for Open, SendPages, Flush and Close, send for SendMessage,
	// recv for RecvMessage (the urgent lanes are ch's). A call the host
	// abandoned (its context ended) may still be running here when the
	// host's next call arrives; that call waits for it.
	main, send, recv chan struct{}

	mu    sync.Mutex
	epoch uint64 // bumped by Open and Close: drops every pending answer
	// The long poll's last answer stays pending until the host
	// acknowledges its seq.
	msgs replay[*pb.RecvMessageResponse]
}

// replay is one long poll's answer waiting for its acknowledgement.
type replay[R any] struct {
	seq     uint64 // seq of the last answer taken from impl
	pending R      // last answer returned, until acknowledged
	pseq    uint64 // its seq; 0: none pending
}

// newServer serves impl; ch (nil: none) serves its urgent path.
func newServer(impl Transport, files []*os.File, ch *chanServer) *grpcServer {
	sem := func() chan struct{} { return make(chan struct{}, 1) }
	return &grpcServer{impl: impl, files: files, ch: ch, main: sem(), send: sem(), recv: sem()}
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
	tag, err := tagFromProto(req.GetMigrationTag())
	if err != nil {
		return nil, classes.ToStatus(err)
	}
	if err := enter(ctx, s.main); err != nil {
		return nil, err
	}
	defer leave(s.main)
	s.newEpoch()
	if s.ch != nil {
		s.ch.open(req.GetUrgentSession())
	}
	err = s.impl.Open(ctx, OpenRequest{Role: Role(req.GetRole()), Config: cfg, RAM: ram, Files: s.files,
		Credentials: credsFromProto(req.GetCredentials()), Tag: tag})
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
	return longPoll(ctx, s, s.recv, &s.msgs, req.GetAck(), func(ctx context.Context, seq uint64) (*pb.RecvMessageResponse, error) {
		m, err := s.impl.RecvMessage(ctx)
		if err != nil {
			return nil, err
		}
		return &pb.RecvMessageResponse{Seq: seq, Message: &pb.Message{Kind: m.Kind, Payload: m.Payload}}, nil
	})
}

// longPoll runs one long poll in lane sem: the answer last returned by r
// stays pending until a request acknowledges its seq (a request that does
// not gets it again); otherwise take fetches the next answer from impl
// and numbers it seq.
func longPoll[R any](ctx context.Context, s *grpcServer, sem chan struct{}, r *replay[R], ack uint64,
	take func(ctx context.Context, seq uint64) (R, error)) (R, error) {
	var zero R
	if err := enter(ctx, sem); err != nil {
		return zero, err
	}
	defer leave(sem)
	s.mu.Lock()
	if r.pseq != 0 && ack < r.pseq {
		p := r.pending
		s.mu.Unlock()
		return p, nil
	}
	r.pending, r.pseq = zero, 0
	epoch := s.epoch
	seq := r.seq + 1
	s.mu.Unlock()

	a, err := take(ctx, seq)
	if err != nil {
		return zero, classes.ToStatus(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r.seq = seq
	if epoch == s.epoch {
		r.pending, r.pseq = a, seq
	}
	return a, nil
}

// errUrgentOverGRPC refuses the urgent path's RPCs of API 3: since API 4
// it goes over the urgent channel (channel.go).
var errUrgentOverGRPC = classes.ToStatus(fmt.Errorf("%w: since transport API 4 the urgent path goes over the plugin's urgent channel, not gRPC", ErrNotSupported))

// SendUrgent implements pb.TransportServer: refused (errUrgentOverGRPC).
func (s *grpcServer) SendUrgent(context.Context, *pb.SendUrgentRequest) (*pb.SendUrgentResponse, error) {
	return nil, errUrgentOverGRPC
}

// RecvUrgent implements pb.TransportServer: refused (errUrgentOverGRPC).
func (s *grpcServer) RecvUrgent(context.Context, *pb.RecvUrgentRequest) (*pb.RecvUrgentResponse, error) {
	return nil, errUrgentOverGRPC
}

// SendPagesUrgent implements pb.TransportServer: refused (errUrgentOverGRPC).
func (s *grpcServer) SendPagesUrgent(context.Context, *pb.SendPagesUrgentRequest) (*pb.SendPagesUrgentResponse, error) {
	return nil, errUrgentOverGRPC
}

// Landed implements pb.TransportServer: refused (errUrgentOverGRPC).
func (s *grpcServer) Landed(context.Context, *pb.LandedRequest) (*pb.LandedResponse, error) {
	return nil, errUrgentOverGRPC
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
	if s.ch != nil {
		s.ch.close()
	}
	return &pb.CloseResponse{}, classes.ToStatus(s.impl.Close())
}

// newEpoch forgets the pending answers: they belonged to the last session.
func (s *grpcServer) newEpoch() {
	s.mu.Lock()
	s.epoch++
	s.msgs.pending, s.msgs.pseq = nil, 0
	s.mu.Unlock()
}
