package plugproc

import (
	"context"

	"google.golang.org/grpc"
)

// go-plugin's broker runs one stream per plugin process, on which each
// side offers the other connections (ConnInfo: "dial id N at this
// socket"). The host offers them (a hint provider's Host is served under
// an id the plugin dials) but never dials one of the plugin's, so
// nothing the plugin sends on that stream is of use to it; and
// go-plugin's host side starts a goroutine that lives 5 s for every
// offer (and keeps an entry for every knock, for good), so a plugin that
// floods the stream (TestBrokerFlood, framework/hint) could make the VMM
// run thousands of goroutines. The host therefore reads and drops
// whatever arrives on that stream:
//
//	plugin ── ConnInfo, ConnInfo, ... ──► brokerStream.RecvMsg: dropped
//	                                      go-plugin's GRPCBroker.Run: waits, ends with the stream
//	host ── ConnInfo (serve a Host under id) ──► plugin: unchanged
//
// A kind that needs the host to dial a plugin's broker id must change this.

// brokerStartStream is go-plugin's broker stream method.
const brokerStartStream = "/plugin.GRPCBroker/StartStream"

// dropBrokerOffers is the host's stream interceptor: on the broker's
// stream it drops what the plugin sends.
func dropBrokerOffers(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil || method != brokerStartStream {
		return s, err
	}
	return brokerStream{s}, nil
}

// brokerStream is the broker's stream with nothing received.
type brokerStream struct{ grpc.ClientStream }

// RecvMsg implements grpc.ClientStream: it returns only when the stream
// ends, dropping every message before that.
func (s brokerStream) RecvMsg(m any) error {
	for {
		if err := s.ClientStream.RecvMsg(m); err != nil {
			return err
		}
	}
}
