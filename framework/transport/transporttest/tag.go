package transporttest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// testOtherMigration is the migration tag rule (transport.Transport,
// "Migration tag"): a receiver opened with the pair's tag meets a sender
// with the job's own credentials that names another tag, then one that
// names none. Each is refused (its Open fails with ErrWrongMigration),
// not one of its pages reaches the receiver's RAM, and the receiver's
// Open goes on waiting: it then completes with the real source, whose
// pages and messages travel.
func testOtherMigration(t *testing.T, p *pair) {
	runs := []transport.PageRun{{First: 0, Count: 16, Kind: transport.KindData}, {First: 40, Count: 8, Kind: transport.KindZero}}
	want := p.prepare(9, runs)
	c, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	recvErr := make(chan error, 1)
	go func() { recvErr <- p.recv.Open(c, p.request(transport.RoleReceive)) }()
	other := p.tags[0]
	other[0] ^= 0xff
	for name, tag := range map[string]transport.Tag{"another tag": other, "no tag": {}} {
		req := p.request(transport.RoleSend)
		req.Tag = tag
		err := p.openSender(c, req, recvErr)
		if err == nil {
			t.Errorf("%s: the stranger's Open succeeded; want it refused", name)
			p.send.SendPages(ctx(t), runs)
			p.send.Flush(ctx(t))
		} else if !errors.Is(err, transport.ErrWrongMigration) {
			t.Errorf("%s: the stranger's Open = %v; want ErrWrongMigration", name, err)
		}
		p.send.Close()
	}
	p.ram.expect(t, nil) // not one of the strangers' pages arrived
	if err := p.openSender(c, p.request(transport.RoleSend), recvErr); err != nil {
		t.Fatalf("the real source after the strangers: %v", err)
	}
	var err error
	bounded(t, "the receiver's Open after its source opened", 10*time.Second, func() { err = <-recvErr })
	if err != nil {
		t.Fatalf("the receiver's Open: %v; want it to have waited for its own source", err)
	}
	p.sendAndFlush(runs)
	p.ram.expect(t, want)
	exchange(t, p, 1)
}

// testZeroTagTakesAny: a receiver opened with the zero tag (it does not
// know its migration yet) takes an authenticated sender whatever tag it
// names.
func testZeroTagTakesAny(t *testing.T, p *pair) {
	p.tags[1] = transport.Tag{}
	p.open()
	runs := []transport.PageRun{{First: 3, Count: 5, Kind: transport.KindData}}
	want := p.prepare(11, runs)
	p.sendAndFlush(runs)
	p.ram.expect(t, want)
	exchange(t, p, 1)
}

// openSender opens p.send with req, again while the receiver is not
// listening yet (each try within 5 s, all within c), and returns the
// first answer that says something: success, a refusal, or the plugin's
// end. It fails the test if the receiver's Open (recvErr) returns first.
func (p *pair) openSender(c context.Context, req transport.OpenRequest, recvErr <-chan error) error {
	p.t.Helper()
	for {
		a, stop := context.WithTimeout(c, 5*time.Second)
		err := p.send.Open(a, req)
		stop()
		if err == nil || c.Err() != nil || errors.Is(err, transport.ErrWrongMigration) ||
			errors.Is(err, transport.ErrUnauthenticated) || errors.Is(err, transport.ErrPluginGone) {
			return err
		}
		p.send.Close()
		select {
		case rerr := <-recvErr:
			p.t.Fatalf("the receiver's Open returned %v while its source was still to come (sender: %v)", rerr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
