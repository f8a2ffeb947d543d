package hint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"

	pb "github.com/ferryvm/ferry/framework/hint/proto"
	"github.com/ferryvm/ferry/framework/internal/schemaconv"
	schemapb "github.com/ferryvm/ferry/framework/schema/proto"
)

// errEmitAfterReturn is what emit returns once Hints has returned: a
// provider goroutine left running must not write to a finished stream.
var errEmitAfterReturn = errors.New("emit called after Hints returned; the ranges were dropped")

// grpcServer is the plugin side: it serves a Provider implementation over
// gRPC, turning errors into status codes by class, and connects the
// implementation to the host's Host service.
type grpcServer struct {
	pb.UnimplementedProviderServer
	impl Provider
	// files are the RAM files this process received at start; a Region's
	// File indexes them.
	files  []*os.File
	broker *plugin.GRPCBroker // nil: no Host callbacks (in-process tests)

	// The contract's one engine goroutine: Configure and Hints enter main
	// one at a time. A Hints the host abandoned (its context ended) may
	// still run in impl when the next call arrives; that call waits for
	// it, bounded by its own context, except that a Hints still running
	// overrunGrace after its deadline (or after its context ended, if
	// that was later) refuses the next Hints (enterHints). Close enters
	// closing instead: it may interrupt a running Hints.
	main, closing chan struct{}

	mu    sync.Mutex
	host  *hostClient // the host's Host service of the current window; nil: none
	hints *hintsCall  // the Hints in impl; nil: none
}

// overrunGrace is how long after its deadline (or after its context
// ended, if later) a Hints call may still run in impl before the plugin
// side takes the provider for one that ignores its context (as the
// conformance suite's slack allows in process). A call the host
// cancelled before its deadline (the engine's next dirty sync) has until
// its deadline and the grace: the engine holds a cancel against nobody
// (requests_cancelled), and a provider slow to notice one on a loaded
// machine must not lose its next request for it.
const overrunGrace = 250 * time.Millisecond

// hintsCall is a Hints call in impl.
type hintsCall struct {
	gen      uint64
	ctx      context.Context
	deadline time.Time // Request.Deadline; zero: none
	mu       sync.Mutex
	ended    time.Time // when ctx ended; zero: not yet (or not yet noted)
}

// endedAt is when c's context ended, or now if it has not been noted.
func (c *hintsCall) endedAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended.IsZero() {
		return time.Now()
	}
	return c.ended
}

// due is when c should have returned: its deadline, or when its context
// ended if that was later (or it has none).
func (c *hintsCall) due() time.Time {
	ended := c.endedAt()
	if c.deadline.After(ended) {
		return c.deadline
	}
	return ended
}

func newServer(impl Provider, files []*os.File, broker *plugin.GRPCBroker) *grpcServer {
	return &grpcServer{impl: impl, files: files, broker: broker,
		main: make(chan struct{}, 1), closing: make(chan struct{}, 1)}
}

// enter takes sem, or fails when ctx ends first; leave gives it back.
func enter(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return classes.ToStatus(fmt.Errorf("waiting for the provider's previous call: %w", ctx.Err()))
	}
}

func leave(sem chan struct{}) { <-sem }

// Info implements pb.ProviderServer.
func (s *grpcServer) Info(ctx context.Context, _ *pb.InfoRequest) (*pb.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, classes.ToStatus(err)
	}
	return &pb.InfoResponse{Name: info.Name, Version: info.Version, Meaning: pb.Meaning(info.Meaning)}, nil
}

// Schema implements pb.ProviderServer.
func (s *grpcServer) Schema(ctx context.Context, _ *schemapb.SchemaRequest) (*schemapb.SchemaResponse, error) {
	r, err := schemaconv.SchemaResponse(s.impl.Schema(ctx))
	return r, classes.ToStatus(err)
}

// Configure implements pb.ProviderServer: region file indices become this
// process's inherited files, and the host's broker id a Host.
func (s *grpcServer) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	cfg, err := schemaconv.ConfigFromProto(req.GetConfig())
	if err != nil {
		return nil, classes.ToStatus(err)
	}
	vm, err := vmFromProto(req.GetVm(), s.files)
	if err != nil {
		return nil, classes.ToStatus(err)
	}
	if err := enter(ctx, s.main); err != nil {
		return nil, err
	}
	defer leave(s.main)
	host, hc, err := s.dialHost(req.GetHostBrokerId(), balloonLimitOf(vm))
	if err != nil {
		return nil, classes.ToStatus(err)
	}
	s.swapHost(hc)
	if err := s.impl.Configure(ctx, cfg, vm, host); err != nil {
		s.swapHost(nil) // the host stops serving a window that did not start
		return nil, classes.ToStatus(err)
	}
	return &pb.ConfigureResponse{}, nil
}

// dialHost connects to the Host the host serves under broker id id; id 0
// (or no broker) is a host without capabilities. go-plugin's Dial waits
// at most 5 s for the host's address, which the host sent before the
// Configure RPC. The Host keeps at most limit of a balloon hint session.
func (s *grpcServer) dialHost(id uint32, limit balloonLimit) (Host, *hostClient, error) {
	if id == 0 || s.broker == nil {
		return &MockHost{}, nil, nil
	}
	conn, err := s.broker.Dial(id)
	if err != nil {
		return nil, nil, fmt.Errorf("reach the VMM's capabilities (broker id %d): %w", id, err)
	}
	hc := &hostClient{rpc: pb.NewHostClient(conn), conn: conn, limit: limit}
	return hc, hc, nil
}

// swapHost makes h the current window's Host and ends the previous one.
func (s *grpcServer) swapHost(h *hostClient) {
	s.mu.Lock()
	old := s.host
	s.host = h
	s.mu.Unlock()
	old.close()
}

// Hints implements pb.ProviderServer: the implementation's emit calls
// become stream messages of at most maxRangesPerMessage ranges.
func (s *grpcServer) Hints(req *pb.HintsRequest, stream pb.Provider_HintsServer) error {
	ctx := stream.Context()
	r := Request{Generation: req.GetGeneration()}
	if d := req.GetDeadlineUnixNano(); d != 0 {
		r.Deadline = time.Unix(0, d)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, r.Deadline)
		defer cancel()
	}
	if err := s.enterHints(ctx); err != nil {
		return err
	}
	defer leave(s.main)
	call := &hintsCall{gen: r.Generation, ctx: ctx, deadline: r.Deadline}
	stop := context.AfterFunc(ctx, func() {
		call.mu.Lock()
		call.ended = time.Now()
		call.mu.Unlock()
	})
	defer stop()
	s.setHints(call)
	defer s.setHints(nil)
	e := &emitter{ctx: ctx, stream: stream}
	err := s.impl.Hints(ctx, r, e.emit)
	e.end()
	return classes.ToStatus(err)
}

// enterHints takes main for a Hints call, as enter does, except that
// while the Hints in impl is still running overrunGrace after it was due
// (hintsCall.due), the call is refused at once, as hung (an error of the
// deadline class), with an error that says why: the provider ignores
// its context, and waiting for it would only hang this request too.
func (s *grpcServer) enterHints(ctx context.Context) error {
	for {
		prev := s.runningHints()
		if prev == nil {
			return enter(ctx, s.main)
		}
		select {
		case s.main <- struct{}{}:
			return nil
		case <-ctx.Done():
			return enter(ctx, s.main) // says why it waited
		case <-prev.ctx.Done():
		}
		// At least a moment: a call that ends as this one arrives is
		// waited for.
		wait := time.NewTimer(max(time.Until(prev.due().Add(overrunGrace)), 10*time.Millisecond))
		select {
		case s.main <- struct{}{}:
			wait.Stop()
			return nil
		case <-ctx.Done():
			wait.Stop()
			return enter(ctx, s.main)
		case <-wait.C:
		}
		if s.runningHints() == prev {
			return classes.ToStatus(fmt.Errorf("refused: the provider's Hints for generation %d is still running %v past its deadline (Request.Deadline, or a cancel that came later); a provider's Hints must return when its context ends: %w",
				prev.gen, time.Since(prev.due()).Round(time.Millisecond), context.DeadlineExceeded))
		}
	}
}

func (s *grpcServer) runningHints() *hintsCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hints
}

func (s *grpcServer) setHints(c *hintsCall) {
	s.mu.Lock()
	s.hints = c
	s.mu.Unlock()
}

// emitter sends one Hints call's ranges; after end it refuses them.
type emitter struct {
	ctx    context.Context
	mu     sync.Mutex // one Send at a time; end waits for a Send in flight
	stream pb.Provider_HintsServer
	ended  bool
}

func (e *emitter) emit(rs []Range) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended {
		return errEmitAfterReturn
	}
	for len(rs) > 0 {
		n := min(len(rs), maxRangesPerMessage)
		if err := e.stream.Send(&pb.HintsResponse{Ranges: rangesToProto(rs[:n])}); err != nil {
			if e.ctx.Err() != nil {
				return fmt.Errorf("send hints to the host: %w", e.ctx.Err())
			}
			return fmt.Errorf("send hints to the host: %w", err)
		}
		rs = rs[n:]
	}
	return nil
}

func (e *emitter) end() {
	e.mu.Lock()
	e.ended = true
	e.mu.Unlock()
}

// Close implements pb.ProviderServer. A final Close also ends the
// window's Host, after the implementation's Close (which may still need
// it: a balloon provider sends DONE there); later Host calls fail with
// ErrNotSupported.
func (s *grpcServer) Close(ctx context.Context, req *pb.CloseRequest) (*pb.CloseResponse, error) {
	if err := enter(ctx, s.closing); err != nil {
		return nil, err
	}
	defer leave(s.closing)
	err := s.impl.Close(ctx, req.GetFinal())
	if req.GetFinal() {
		s.swapHost(nil)
	}
	return &pb.CloseResponse{}, classes.ToStatus(err)
}
