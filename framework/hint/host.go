package hint

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/ferryvm/ferry/framework/hint/proto"
	"github.com/ferryvm/ferry/framework/internal/errclass"
	"github.com/ferryvm/ferry/framework/internal/plugproc"
)

// The Host service: the VMM's capabilities, served by the host process
// and called back by the plugin through go-plugin's broker.
//
//	host process                                  plugin process
//	grpcClient.Configure(host h)
//	  id := broker.NextId()
//	  broker.Accept(id) ── conn info (broker stream) ──► broker.Dial(id)
//	  serve hostServer{h} on it                         hostClient implements Host
//	  Configure RPC (host_broker_id = id) ────────────► impl.Configure(..., hostClient)
//	h.BalloonHint ◄── BalloonHint RPC ◄──────────────── provider calls host.BalloonHint
//	Close(final) RPC ───────────────────────────────► impl.Close; then the plugin
//	  then the host stops serving id                    closes its connection
//	  and ends the window: DONE if owed (window.go)

// hostServer is the host side: it serves the VMM's Host, behind its
// window, to the plugin, turning errors into status codes by class.
type hostServer struct {
	pb.UnimplementedHostServer
	impl *window
}

// BalloonHint implements pb.HostServer: the session's ranges in messages
// of at most maxRangesPerMessage, then the session's error, if any.
func (s *hostServer) BalloonHint(_ *pb.BalloonHintRequest, stream pb.Host_BalloonHintServer) error {
	rs, err := s.impl.BalloonHint(stream.Context())
	for len(rs) > 0 {
		n := min(len(rs), maxRangesPerMessage)
		if serr := stream.Send(&pb.BalloonHintResponse{Ranges: gpaRangesToProto(rs[:n])}); serr != nil {
			return serr
		}
		rs = rs[n:]
	}
	return classes.ToStatus(err)
}

// BalloonDone implements pb.HostServer.
func (s *hostServer) BalloonDone(ctx context.Context, _ *pb.BalloonDoneRequest) (*pb.BalloonDoneResponse, error) {
	return &pb.BalloonDoneResponse{}, classes.ToStatus(s.impl.BalloonDone(ctx))
}

// CMMABits implements pb.HostServer: at most MaxCMMABits values, and never
// more than asked for.
func (s *hostServer) CMMABits(ctx context.Context, req *pb.CMMABitsRequest) (*pb.CMMABitsResponse, error) {
	count := int(min(req.GetCount(), MaxCMMABits))
	asked := s.impl.granted() // the hints requests the window had when this call began
	first, values, err := s.impl.CMMABits(ctx, req.GetStartGfn(), count)
	if err != nil {
		return nil, classes.ToStatus(err)
	}
	values = values[:min(len(values), count)]
	if ctx.Err() == nil && s.impl.scanned(asked, first, len(values)) {
		// A step of a scan over guest RAM (at most guest RAM per hints
		// request): a scan of a large s390 guest is not held to the
		// broker's call rate, a flood of calls is. A call the plugin
		// gave up on is none: its answer goes nowhere.
		plugproc.RefundCall(ctx)
	}
	return &pb.CMMABitsResponse{First: first, Values: values}, nil
}

// minRefundedCMMA is the fewest CMMA values a CMMABits call returns for
// it to count as a step of a scan (window.scanned), which the broker's
// call rate does not hold: 256 MiB of guest, a quarter of what
// plugins/cmma asks for a call. A scan steps through guest RAM once per
// hints request, so a plugin gets at most one such call per 256 MiB of
// guest per request past the rate (4096 for a 1 TiB guest), and only
// from a VMM whose answers end in guest RAM, as KVM's do.
const minRefundedCMMA = 1 << 16

// hostService is one Host served to the plugin under a broker id: one
// hint window.
type hostService struct {
	id     uint32
	srv    *grpc.Server
	served <-chan struct{}
	w      *window
}

// serveHost serves h under a fresh broker id; the plugin may dial it as
// soon as this returns. The server speaks the same mutual TLS as the
// plugin's own channel (tlsConfig, the process's; one-time certificates,
// plugproc.Start): only the plugin process can call the Host, and it
// gets no more connections than the window needs (plugproc.ServeBroker).
func serveHost(broker *plugin.GRPCBroker, tlsConfig *tls.Config, h Host, ram []Region) (*hostService, error) {
	id := broker.NextId()
	hs := &hostService{id: id, w: newWindow(h, ramEnd(ram))}
	srv, served, err := plugproc.ServeBroker(broker, id, tlsConfig, func(opts []grpc.ServerOption) *grpc.Server {
		// Stop waits for the handlers: the window ends after its calls (stop).
		srv := grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(maxMessage), grpc.WaitForHandlers(true))...)
		pb.RegisterHostServer(srv, &hostServer{impl: hs.w})
		return srv
	})
	if err != nil {
		return nil, fmt.Errorf("serve the VMM's capabilities to the hint plugin: %w", err)
	}
	hs.srv, hs.served = srv, served
	return hs, nil
}

// stop ends every call in flight, closes the listener, waits for the
// serving goroutine (the server's Stop: every handler returned)
// and ends the window (window.end: the guest gets DONE if it is owed).
// Nil is a no-op.
func (hs *hostService) stop() {
	if hs == nil {
		return
	}
	hs.srv.Stop()
	<-hs.served
	hs.w.end()
}

// hostClient is the plugin side: Host over the host's gRPC service of
// one hint window. Once the window is over (Close(final), or the next
// Configure) its calls fail with ErrNotSupported: the VMM offers its
// capabilities to a provider only while a window is open.
type hostClient struct {
	rpc    pb.HostClient
	conn   *grpc.ClientConn
	closed atomic.Bool
	limit  balloonLimit // the most ranges one BalloonHint keeps
}

// balloonLimit bounds the ranges the plugin side keeps of one
// BalloonHint session the host streams: no more than the guest has pages
// of RAM, or than one stream message holds if that is more (gRPC decodes
// a whole message before it is counted, so a lower bound would save
// nothing). A session may repeat ranges: Linux keeps the blocks it
// hints until DONE, but its shrinker gives them back under memory
// pressure, during a session too, and the session may then hint the same
// block again (virtio_balloon.c, shrink_free_pages; the spec lets a
// driver take hinted pages back at any time). Each of its hints is one
// block of 2^MAX_PAGE_ORDER pages (1024 on x86-64), so a Linux guest
// would have to hint every block of its RAM again some 1024 times in one
// session to pass the bound; the reference VMM sends at most
// balloon.MaxHintRanges (262144) a session, no more than the pages of a
// 1 GiB guest (vmm/devices/balloon). What passes it: a guest whose
// driver hints buffers smaller than a page (not Linux; the reference VMM
// passes any length on) in a guest under 1 GiB; its session is then
// dropped whole and its pages sent, which costs only the saving. What
// it does not bound: a large guest's session
// may still hold 16 bytes per 4 KiB page of guest RAM in the plugin (a
// 1 TiB guest: 4 GiB) if its VMM sends one range per page; and ranges are
// not checked against RAM here (VM.PageRanges leaves out what is not).
type balloonLimit uint64

// balloonLimitOf is the limit for a guest whose RAM is vm's.
func balloonLimitOf(vm VM) balloonLimit {
	return balloonLimit(max(vm.Pages(), maxRangesPerMessage))
}

// errBalloonTooMuch is what BalloonHint returns for a session larger
// than the guest (balloonLimit). It is no ErrNotSupported: the next
// session may be fine.
var errBalloonTooMuch = errors.New("the VMM's balloon hint session holds more than the guest could hint")

// errWindowClosed is what a Host call gets after its window ended.
var errWindowClosed = errclass.New(ErrNotSupported,
	"not supported: the VMM's capabilities end with the hint window (Close(final) or a new Configure)")

// close ends the window's connection; nil is a no-op.
func (h *hostClient) close() {
	if h == nil {
		return
	}
	h.closed.Store(true)
	h.conn.Close()
}

// check is errWindowClosed once the window ended, else err.
func (h *hostClient) check(err error) error {
	if h.closed.Load() {
		return errWindowClosed
	}
	return err
}

var _ Host = (*hostClient)(nil)

// recvLimit bounds every message a client accepts (go-plugin's
// connections allow 2 GiB by default).
var recvLimit = grpc.MaxCallRecvMsgSize(maxMessage)

// BalloonHint implements Host.BalloonHint. A session of more ranges
// than h.limit (balloonLimit: one per page of guest RAM) is cut off
// there: the stream is cancelled and the call returns no ranges at all,
// with an error wrapping errBalloonTooMuch, since a VMM that sends more
// than its guest could hint is not trusted with any of it. The guest's
// blocks stay hinted until BalloonDone, as after any session.
func (h *hostClient) BalloonHint(ctx context.Context) ([]GPARange, error) {
	if err := h.check(nil); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends a stream cut off early
	stream, err := h.rpc.BalloonHint(ctx, &pb.BalloonHintRequest{}, recvLimit)
	if err != nil {
		return nil, h.check(classes.FromRPC(ctx, err))
	}
	var out []GPARange
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, h.check(classes.FromRPC(ctx, err))
		}
		if uint64(len(r.GetRanges())) > uint64(h.limit)-uint64(len(out)) {
			return nil, fmt.Errorf("%w: over %d ranges, one per page of guest RAM; none of them is used",
				errBalloonTooMuch, h.limit)
		}
		out = append(out, gpaRangesFromProto(r.GetRanges())...)
	}
}

// BalloonDone implements Host.BalloonDone.
func (h *hostClient) BalloonDone(ctx context.Context) error {
	if err := h.check(nil); err != nil {
		return err
	}
	_, err := h.rpc.BalloonDone(ctx, &pb.BalloonDoneRequest{}, recvLimit)
	if err != nil {
		return h.check(classes.FromRPC(ctx, err))
	}
	return nil
}

// CMMABits implements Host.CMMABits; it asks for at most MaxCMMABits
// values.
func (h *hostClient) CMMABits(ctx context.Context, startGFN uint64, count int) (uint64, []byte, error) {
	if err := h.check(nil); err != nil {
		return 0, nil, err
	}
	count = max(0, min(count, MaxCMMABits))
	r, err := h.rpc.CMMABits(ctx, &pb.CMMABitsRequest{StartGfn: startGFN, Count: uint32(count)}, recvLimit)
	if err != nil {
		return 0, nil, h.check(classes.FromRPC(ctx, err))
	}
	if len(r.GetValues()) > count {
		return 0, nil, fmt.Errorf("host returned %d CMMA values for %d frames", len(r.GetValues()), count)
	}
	return r.GetFirst(), r.GetValues(), nil
}
