package transporttest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/schema"
	"github.com/ferryvm/ferry/framework/transport"
)

// Harness makes a fresh, unopened pair of transports for one test: the
// sender and the receiver, and the configuration blocks the suite opens
// them with. ram is the guest memory the suite will open them over
// (ram.Send for the sender, ram.Recv for the receiver); a harness that
// starts plugin processes hands those files to transport.Launch. The
// suite closes both transports when the test ends; a harness registers
// its own cleanup (t.Cleanup) for anything else.
type Harness func(t *testing.T, ram RAM) (send, recv transport.Transport, sendCfg, recvCfg schema.Config)

// Run runs the conformance suite against the transports h makes, one
// fresh pair per subtest.
func Run(t *testing.T, h Harness) {
	for _, c := range []struct {
		name string
		fn   func(t *testing.T, p *pair)
	}{
		{"InfoSchema", testInfoSchema},
		{"Pages", testPages},
		{"FlushIntervals", testFlushIntervals},
		{"BadRuns", testBadRuns},
		{"Messages", testMessages},
		{"MessageLimits", testMessageLimits},
		{"PayloadsOwned", testPayloadsOwned},
		{"Stats", testStats},
		{"CountsBeforeFlush", testCountsBeforeFlush},
		{"Reopen", testReopen},
		{"PortHeld", testPortHeld},
		{"PeerClose", testPeerClose},
		{"Deadlines", testDeadlines},
		{"OpenDeadline", testOpenDeadline},
		{"Concurrent", testConcurrent},
		{"NoCredentials", testNoCredentials},
		{"Strangers", testStrangers},
		{"OtherMigration", testOtherMigration},
		{"ZeroTagTakesAny", testZeroTagTakesAny},
		{"PinnedChain", testPinnedChain},
		// Authenticated but in the clear: the same pages must arrive.
		{"PagesPlaintext", func(t *testing.T, p *pair) { p.plaintext(); testPages(t, p) }},
		{"FlushIntervalsPlaintext", func(t *testing.T, p *pair) { p.plaintext(); testFlushIntervals(t, p) }},
		{"MessagesPlaintext", func(t *testing.T, p *pair) { p.plaintext(); testMessages(t, p) }},
		// The urgent path (transport API 3).
		{"UrgentMessages", testUrgentMessages},
		{"UrgentPages", testUrgentPages},
		{"UrgentOvertakes", testUrgentOvertakes},
		{"UrgentOrdering", testUrgentOrdering},
		{"UrgentClosed", testUrgentClosed},
		{"LandedCountsBulk", testLandedCountsBulk},
		{"Answer", testAnswer},
		{"UrgentMessagesPlaintext", func(t *testing.T, p *pair) { p.plaintext(); testUrgentMessages(t, p) }},
		{"UrgentOvertakesPlaintext", func(t *testing.T, p *pair) { p.plaintext(); testUrgentOvertakes(t, p) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, newPair(t, h))
		})
	}
}

// opTimeout bounds every call the suite makes.
const opTimeout = 30 * time.Second

// pair is one test's transports and RAM.
type pair struct {
	t                *testing.T
	ram              RAM
	send, recv       transport.Transport
	sendCfg, recvCfg schema.Config
	// creds are minted for this pair: [0] the sender's, [1] the receiver's.
	creds [2]transport.Credentials
	// tags are the migration tags the sides open with, [0] the sender's:
	// one random tag on both, unless a test says otherwise.
	tags [2]transport.Tag
}

func newPair(t *testing.T, h Harness) *pair {
	p := &pair{t: t, ram: newRAM(t)}
	var err error
	if p.creds[0], p.creds[1], err = transport.MintCredentials(false); err != nil {
		t.Fatal(err)
	}
	rand.Read(p.tags[0][:])
	p.tags[1] = p.tags[0]
	p.send, p.recv, p.sendCfg, p.recvCfg = h(t, p.ram)
	t.Cleanup(func() {
		p.send.Close()
		p.recv.Close()
	})
	return p
}

// plaintext mints the pair's credentials again with Plaintext set.
func (p *pair) plaintext() {
	var err error
	if p.creds[0], p.creds[1], err = transport.MintCredentials(true); err != nil {
		p.t.Fatal(err)
	}
}

// ctx returns a context that ends after opTimeout or with the test.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return c
}

func (p *pair) request(role transport.Role) transport.OpenRequest {
	if role == transport.RoleSend {
		return transport.OpenRequest{Role: role, Config: p.sendCfg, RAM: p.ram.Layout, Files: p.ram.Send, Credentials: p.creds[0],
			Tag: p.tags[0]}
	}
	return transport.OpenRequest{Role: role, Config: p.recvCfg, RAM: p.ram.Layout, Files: p.ram.Recv, Credentials: p.creds[1],
		Tag: p.tags[1]}
}

// open opens the receiver (in a goroutine: it returns once the sender
// connected) and then the sender, retrying until the receiver listens.
func (p *pair) open() {
	p.t.Helper()
	if err := p.tryOpen(); err != nil {
		p.t.Fatal(err)
	}
}

// tryOpen is open, returning its failure. The sender tries again (each
// try within 5 s) until opTimeout passes, its plugin is gone, or the
// receiver's Open has returned: then no later try can meet it. A
// failure names both sides' errors; over gRPC a try cut by its deadline
// says why only if the plugin answered within the margin the host keeps
// for it (framework/internal/plugproc's answer.go), else only "context
// deadline exceeded", so the receiver's error is often the one that
// tells why.
func (p *pair) tryOpen() error {
	c, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	recvErr := make(chan error, 1)
	go func() { recvErr <- p.recv.Open(c, p.request(transport.RoleReceive)) }()
	for tries := 1; ; tries++ {
		a, stop := context.WithTimeout(c, 5*time.Second)
		err := p.send.Open(a, p.request(transport.RoleSend))
		stop()
		if err == nil {
			break
		}
		select {
		case rerr := <-recvErr:
			return fmt.Errorf("open sender: try %d: %v (the receiver's Open had returned: %v)", tries, err, rerr)
		default:
		}
		if c.Err() != nil || errors.Is(err, transport.ErrPluginGone) {
			cancel()
			return fmt.Errorf("open sender: try %d: %v (the receiver's Open: %v)", tries, err, <-recvErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := <-recvErr; err != nil {
		return fmt.Errorf("open receiver: %v", err)
	}
	return nil
}

// closeBoth closes the sender, then the receiver.
func (p *pair) closeBoth() {
	p.t.Helper()
	if err := p.send.Close(); err != nil {
		p.t.Errorf("close sender: %v", err)
	}
	if err := p.recv.Close(); err != nil {
		p.t.Errorf("close receiver: %v", err)
	}
}

// sendAndFlush sends runs in one SendPages call and flushes.
func (p *pair) sendAndFlush(runs []transport.PageRun) {
	p.t.Helper()
	if err := p.send.SendPages(ctx(p.t), runs); err != nil {
		p.t.Fatalf("SendPages: %v", err)
	}
	if err := p.send.Flush(ctx(p.t)); err != nil {
		p.t.Fatalf("Flush: %v", err)
	}
}

// bounded runs fn and fails the test if it has not returned within d.
func bounded(t *testing.T, what string, d time.Duration, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s still running after %v", what, d)
	}
}
