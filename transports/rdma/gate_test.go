package rdma

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/internal/guestram"
)

// gateSession is a destination's session for the gate alone: the job's
// credentials and 1 MiB of guest RAM's layout, nothing mapped.
func gateSession(t *testing.T, want transport.Tag) (s *session, ln *net.TCPListener, send transport.Credentials) {
	t.Helper()
	send, recv, err := transport.MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := recv.TLSConfig(transport.RoleReceive)
	if err != nil {
		t.Fatal(err)
	}
	s = &session{log: hclog.NewNullLogger(), cfg: config{connectTimeout: 10 * time.Second}, auth: auth, tag: want,
		ram: &ram{RAM: guestram.RAM{Layout: []wire.Region{{GPA: 0, Size: 1 << 20}}}}}
	ln, err = net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return s, ln, send
}

// dialAs connects to ln as a source with creds: the TLS session,
// closed when the test ends.
func dialAs(t *testing.T, ln *net.TCPListener, creds transport.Credentials) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	auth, err := creds.TLSConfig(transport.RoleSend)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc, err := transport.Secure(ctx, c, transport.RoleSend, auth, false)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// helloFrom connects to ln as a source with creds and says HELLO for tag.
func helloFrom(t *testing.T, ln *net.TCPListener, creds transport.Credentials, tag transport.Tag) net.Conn {
	t.Helper()
	sc := dialAs(t, ln, creds)
	if err := writeSetup(sc, setupHello, appendHello(tag, []wire.Region{{GPA: 0, Size: 1 << 20}})); err != nil {
		t.Fatal(err)
	}
	return sc
}

// TestGateArrivals: each HELLO the gate admits comes out of next with
// its own connection and the tag it named (a destination that waits
// for any migration, the zero tag). Before the gate, acceptOne did
// this for one wait at a time (TestAcceptOneAdmission).
func TestGateArrivals(t *testing.T) {
	s, ln, creds := gateSession(t, transport.Tag{})
	g := s.openGate(ln)
	defer g.close(transport.Tag{})
	peers := map[string]byte{}
	for i := range 8 {
		c := helloFrom(t, ln, creds, transport.Tag{byte(i + 1)})
		peers[c.LocalAddr().String()] = byte(i + 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 8 {
		h, err := g.next(ctx)
		if err != nil || h.err != nil {
			t.Fatalf("next: %v, %v", err, h.err)
		}
		if want, ok := peers[h.c.RemoteAddr().String()]; !ok || h.a.tag != (transport.Tag{want}) {
			t.Errorf("arrival from %v names tag %x; want its own, %x", h.c.RemoteAddr(), h.a.tag[:1], want)
		}
		delete(peers, h.c.RemoteAddr().String())
		h.c.Close()
	}
}

// TestGateClosesUntaken: HELLOs the gate admitted that Open did not
// take are closed when it closes: one naming the tag of the try taken
// reads EOF, one naming another reads OTHER (the destination took
// another migration's source). None is left open for its source to
// wait on (before the gate: TestAcceptOneEndedWinner).
func TestGateClosesUntaken(t *testing.T) {
	s, ln, creds := gateSession(t, transport.Tag{})
	g := s.openGate(ln)
	admitted := make(chan struct{}, 2)
	g.waiting = func() { admitted <- struct{}{} }
	same := helloFrom(t, ln, creds, transport.Tag{1})
	other := helloFrom(t, ln, creds, transport.Tag{2})
	<-admitted
	<-admitted
	g.close(transport.Tag{1})
	same.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := same.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("a HELLO of the tag taken, left at close: read %v; want EOF", err)
	}
	other.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := readSetup(other, setupOffer); !errors.Is(err, transport.ErrWrongMigration) {
		t.Errorf("a HELLO of another tag, left at close: %v; want OTHER", err)
	}
	if b, err := io.ReadAll(other); err != nil || len(b) != 0 {
		t.Errorf("after OTHER: %q, %v; want EOF", b, err)
	}
}

// urgentFrom connects to ln as a source with creds and names its urgent
// channel: URGENT with unonce and tag.
func urgentFrom(t *testing.T, ln *net.TCPListener, creds transport.Credentials, unonce []byte, tag transport.Tag) net.Conn {
	t.Helper()
	sc := dialAs(t, ln, creds)
	if err := writeSetup(sc, setupUrgent, append(append([]byte(nil), unonce...), tag[:]...)); err != nil {
		t.Fatal(err)
	}
	return sc
}

// TestGateUrgentOfEndedTry: the gate does not answer the urgent channel
// of a try whose setup already ended (a HELLO of the source's next try
// superseded it; or it was dropped, its bound passed), although the
// try is still the one in setup until setupReceive returns. An answer
// would let that try's source, if still alive (a second Open of the
// same source), say READY and have its Open succeed with a session the
// destination drops (gate's doc: "the older fails"). Before, claimUrgent
// looked only at the nonce and tag, and the answer went out.
func TestGateUrgentOfEndedTry(t *testing.T) {
	tag := transport.Tag{7}
	for _, c := range []struct {
		name string
		end  func(t *testing.T, ln *net.TCPListener, creds transport.Credentials, abandon context.CancelCauseFunc)
	}{
		{"superseded", func(t *testing.T, ln *net.TCPListener, creds transport.Credentials, _ context.CancelCauseFunc) {
			helloFrom(t, ln, creds, tag) // the source's next try
		}},
		{"dropped", func(_ *testing.T, _ *net.TCPListener, _ transport.Credentials, abandon context.CancelCauseFunc) {
			abandon(errSourceStalled)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, ln, creds := gateSession(t, tag)
			g := s.openGate(ln)
			defer g.close(transport.Tag{})
			ctx, abandon := context.WithCancelCause(context.Background())
			defer abandon(nil)
			unonce := bytes.Repeat([]byte{0x5a}, nonceSize)
			tr := &try{tag: tag, unonce: unonce, ctx: ctx, abandon: abandon}
			defer g.begin(tr)()
			c.end(t, ln, creds, abandon)
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the try in setup was not abandoned")
			}
			u := urgentFrom(t, ln, creds, unonce, tag)
			u.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := readSetup(u, setupUrgent); err == nil {
				t.Fatalf("the urgent channel of a try that ended (%v) was answered", context.Cause(ctx))
			} else if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the urgent channel of a try that ended was neither answered nor closed: %v", err)
			}
			select {
			case <-tr.urgent:
				t.Error("the urgent channel was handed to the try that ended")
			default:
			}
		})
	}
}

// TestGateOlderHelloWaits: a HELLO read late on a connection accepted
// before the try in setup's own (a starved admission, or a holder of
// the job's credentials that holds its HELLO back) is no next try of
// that source: it does not supersede the try, and waits. A HELLO on a
// connection accepted after it still does (TestNextTryWhileUrgentAwaited).
// Before, any HELLO of the same tag displaced a live try.
func TestGateOlderHelloWaits(t *testing.T) {
	tag := transport.Tag{7}
	s, ln, creds := gateSession(t, tag)
	g := s.openGate(ln)
	defer g.close(transport.Tag{})
	early := dialAs(t, ln, creds) // accepted first: its HELLO comes late
	helloFrom(t, ln, creds, tag)  // the try taken
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g.next(ctx); err != nil {
		t.Fatal(err)
	}
	tctx, abandon := context.WithCancelCause(context.Background())
	defer abandon(nil)
	tr := &try{tag: tag, unonce: bytes.Repeat([]byte{0x5a}, nonceSize), ctx: tctx, abandon: abandon}
	defer g.begin(tr)()
	if err := writeSetup(early, setupHello, appendHello(tag, []wire.Region{{GPA: 0, Size: 1 << 20}})); err != nil {
		t.Fatal(err)
	}
	late, err := g.next(ctx) // admitted, waiting for openReceive: deliverHello has decided
	if err != nil {
		t.Fatal(err)
	}
	late.c.Close()
	if tctx.Err() != nil {
		t.Fatalf("a HELLO on a connection older than the try's superseded it: %v", context.Cause(tctx))
	}
	helloFrom(t, ln, creds, tag) // the source's next try: newer
	select {
	case <-tctx.Done():
		if !errors.Is(context.Cause(tctx), errSuperseded) {
			t.Fatalf("the try ended with %v; want superseded", context.Cause(tctx))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a HELLO on a newer connection did not supersede the try")
	}
}
