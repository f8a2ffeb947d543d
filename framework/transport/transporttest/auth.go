package transporttest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// strangerWait bounds the receiver's Open while only a stranger calls.
const strangerWait = 2 * time.Second

// testNoCredentials: Open without credentials is ErrBadConfig on both
// sides, at once.
func testNoCredentials(t *testing.T, p *pair) {
	for _, role := range []transport.Role{transport.RoleSend, transport.RoleReceive} {
		req := p.request(role)
		req.Credentials = transport.Credentials{}
		c, cancel := context.WithTimeout(context.Background(), strangerWait)
		var err error
		bounded(t, "Open without credentials", 10*time.Second, func() { err = p.tr(role).Open(c, req) })
		cancel()
		if !errors.Is(err, transport.ErrBadConfig) {
			t.Errorf("%v: Open without credentials = %v; want ErrBadConfig", role, err)
		}
		p.tr(role).Close()
	}
	p.open()
	exchange(t, p, 1)
}

// testStrangers: a sender with another job's credentials, and a sender
// that meets a receiver of another job, fail on both sides and not one
// page is written; the pair then works with its own credentials.
func testStrangers(t *testing.T, p *pair) {
	other, otherRecv, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	otherRecv.PeerRoots = p.creds[0].PeerRoots // it would take our sender; our sender does not take it
	refuseStrangers(t, p, map[string][2]transport.Credentials{
		"stranger sender":   {other, p.creds[1]},
		"stranger receiver": {p.creds[0], otherRecv},
	})
}

// refuseStrangers opens p with each pair of credentials, which must fail
// on both sides without one page written, and then opens p with its own.
func refuseStrangers(t *testing.T, p *pair, cases map[string][2]transport.Credentials) {
	for name, creds := range cases {
		want := p.prepare(5, []transport.PageRun{{First: 0, Count: 16, Kind: transport.KindData}})
		sendErr, recvErr := p.openWith(creds)
		if sendErr == nil || recvErr == nil {
			t.Errorf("%s: sender Open = %v, receiver Open = %v; want both to fail", name, sendErr, recvErr)
		}
		if sendErr == nil {
			p.send.SendPages(ctx(t), []transport.PageRun{{First: 0, Count: 16, Kind: transport.KindData}})
			p.send.Flush(ctx(t))
		}
		clear(want) // nothing may have arrived
		p.ram.expect(t, want)
		p.send.Close()
		p.recv.Close()
	}
	p.open()
	exchange(t, p, 1)
}

// openWith opens both sides once with the given credentials, each within
// strangerWait, and returns their errors.
func (p *pair) openWith(creds [2]transport.Credentials) (sendErr, recvErr error) {
	c, cancel := context.WithTimeout(context.Background(), strangerWait)
	defer cancel()
	recv := p.request(transport.RoleReceive)
	recv.Credentials = creds[1]
	done := make(chan error, 1)
	go func() { done <- p.recv.Open(c, recv) }()
	send := p.request(transport.RoleSend)
	send.Credentials = creds[0]
	for {
		sendErr = p.send.Open(c, send)
		// A sender that came before the receiver listened tries again.
		if sendErr == nil || c.Err() != nil || errors.Is(sendErr, transport.ErrUnauthenticated) ||
			errors.Is(sendErr, transport.ErrPluginGone) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	bounded(p.t, "receiver Open with a stranger", 10*time.Second, func() { recvErr = <-done })
	return sendErr, recvErr
}

func (p *pair) tr(role transport.Role) transport.Transport {
	if role == transport.RoleSend {
		return p.send
	}
	return p.recv
}
