package vmtest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework"
	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
	"github.com/ferryvm/ferry/framework/wire"
	"github.com/ferryvm/ferry/transports/tcp"
)

// cutAfterRunning is the source's TCP transport (in process): once
// RUNNING arrived and a page went out on request (post-copy under way:
// the guest runs on the destination and faults over the network), it
// cuts the session, lets foreign run, and only then lets the source
// open the transport again.
type cutAfterRunning struct {
	transport.Transport
	foreign func()
	t       *testing.T

	mu      sync.Mutex
	cut     bool
	reopen  chan struct{} // closed once foreign returned
	opened  int
	served  chan struct{} // closed once SendPagesUrgent sent a page
	serve   sync.Once
	cutDone sync.WaitGroup
}

func newCutAfterRunning(t *testing.T) *cutAfterRunning {
	return &cutAfterRunning{Transport: tcp.New(nil), t: t, reopen: make(chan struct{}), served: make(chan struct{})}
}

func (c *cutAfterRunning) Open(ctx context.Context, req transport.OpenRequest) error {
	c.mu.Lock()
	c.opened++
	again := c.opened > 1
	c.mu.Unlock()
	if again {
		select {
		case <-c.reopen:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return c.Transport.Open(ctx, req)
}

// SendPagesUrgent implements transport.Transport.SendPagesUrgent. This
// wrapper is no transport.Answerer, so the source's engine answers the
// destination's requests through it.
func (c *cutAfterRunning) SendPagesUrgent(ctx context.Context, runs []transport.PageRun) error {
	err := c.Transport.SendPagesUrgent(ctx, runs)
	if err == nil {
		c.serve.Do(func() { close(c.served) })
	}
	return err
}

func (c *cutAfterRunning) RecvMessage(ctx context.Context) (transport.Message, error) {
	m, err := c.Transport.RecvMessage(ctx)
	if err == nil && m.Kind == engine.MsgRunning {
		c.mu.Lock()
		first := !c.cut
		c.cut = true
		c.mu.Unlock()
		if first {
			c.cutDone.Go(func() {
				select {
				case <-c.served:
				case <-time.After(10 * time.Second): // milliseconds; room for a loaded machine
					c.t.Error("no page was sent on request within 10 s of RUNNING: the cut may come after post-copy")
				}
				c.Transport.Close() // the network breaks
				c.foreign()
				close(c.reopen)
			})
		}
	}
	return m, err
}

// relistens is the destination's TCP transport (in process): again is
// closed as its second Open begins, when the destination listens for its
// source's reconnect. It keeps tcp's optional interfaces (the listening
// port held across the reconnect).
type relistens struct {
	*tcp.Transport
	opens atomic.Int32
	again chan struct{}
}

func (r *relistens) Open(ctx context.Context, req transport.OpenRequest) error {
	if r.opens.Add(1) == 2 {
		close(r.again)
	}
	return r.Transport.Open(ctx, req)
}

// TestEmbedForeignResume: post-copy over the real TCP transport (in
// process, real sockets, real userfaultfd) breaks after RUNNING. Before
// the job's source comes back, another migration's source (the same
// credentials: an operator's certificates shared by two jobs between the
// same hosts) connects to the destination, which runs the guest on that
// RAM, twice:
//   - as a Ferry source with its own migration's tag: its transport
//     session is refused in the TCP handshake (ErrWrongMigration), so it
//     never gets to say RESUME (before transport API 8 the destination's
//     engine refused that RESUME, after the session had opened);
//   - as a hostile one: its streams say HELLO with another tag and push
//     pages full of a marker right behind, without waiting for an
//     answer. Each stream gets nothing but the refusal.
//
// Not one marker page reaches the running guest's RAM, and the job's own
// source reconnects and the migration completes page-exact
// (manualSwitch's checks).
func TestEmbedForeignResume(t *testing.T) {
	var refused error
	var answers []string
	var tried bool
	marker := bytes.Repeat([]byte("STRANGER"), framework.PageSize/8)
	_, dst, _, drep := manualSwitchVMs(t, func(sspec, dspec *session.Spec) {
		cut := newCutAfterRunning(t)
		t.Cleanup(cut.cutDone.Wait)
		listening := &relistens{Transport: tcp.New(nil), again: make(chan struct{})}
		sspec.TransportInProcess, dspec.TransportInProcess = cut, listening
		sspec.Transport.Path, dspec.Transport.Path = "", ""
		creds, cfg := sspec.Engine.Credentials, sspec.Transport.Config
		cut.foreign = func() {
			other := newVM(t, vmtest.Options{}) // a guest of the same size
			files, ram, err := engine.RAMFiles(other.RAM(), transport.RoleSend)
			if err != nil {
				t.Error(err)
				return
			}
			defer func() {
				for _, f := range files {
					f.Close()
				}
			}()
			var tag transport.Tag
			rand.Read(tag[:]) // its own migration's
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			select {
			case <-listening.again: // for its source's reconnect
			case <-ctx.Done():
				t.Errorf("the destination did not listen again after the cut: %v", ctx.Err())
				return
			}
			tr := tcp.New(nil)
			defer tr.Close()
			refused = tr.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, Config: cfg, RAM: ram, Files: files,
				Credentials: creds, Tag: tag})
			tried = true
			answers = pushStranger(ctx, t, cfg["listen"].(string), creds, other.RAM(), tag, marker)
		}
	})
	if !tried {
		t.Fatal("the other migration's source never reached the destination")
	}
	if !errors.Is(refused, transport.ErrWrongMigration) {
		t.Errorf("the other migration's source: Open = %v; want ErrWrongMigration", refused)
	}
	if drep.Reconnects != 1 {
		t.Errorf("the destination counted %d reconnects; want its own source's one", drep.Reconnects)
	}
	for i, a := range answers {
		if a != "ABORT another migration" {
			t.Errorf("the hostile stranger's stream %d was answered %q; want only the refusal", i, a)
		}
	}
	for i := range dst.RAM() {
		m := dst.Memory(i)
		for off := 0; off < len(m); off += framework.PageSize {
			if bytes.Equal(m[off:off+framework.PageSize], marker) {
				t.Fatalf("the stranger's page landed in the running guest (region %d, offset %#x)", i, off)
			}
		}
	}
}

// pushStranger is a hostile source with the job's credentials: on each of
// two bulk streams and an urgent one it says HELLO naming tag, then at
// once a PAGES frame of marker pages and a ZERO run, without waiting for
// an answer. It returns what each stream was answered before the
// destination closed it ("" for nothing).
func pushStranger(ctx context.Context, t *testing.T, addr string, creds transport.Credentials, layout framework.Layout,
	tag transport.Tag, marker []byte) []string {
	cfg, err := creds.TLSConfig(transport.RoleSend)
	if err != nil {
		t.Fatal(err)
	}
	var l []wire.Region
	for _, r := range layout {
		l = append(l, wire.Region{GPA: r.GPA, Size: r.Size})
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 3 {
		h := wire.Hello{Session: [16]byte{6, 6, 6}, Tag: tag, Stream: uint16(i), Streams: 2, PageSize: framework.PageSize, RAM: l}
		if i == 2 {
			h.Stream, h.Urgent = 0, true
		}
		b, _ := wire.AppendHello(nil, h)
		b, _ = wire.AppendPages(b, 1, wire.Run{First: uint64(i) * 256, Count: 4}, false, bytes.Repeat(marker, 4))
		b, _ = wire.AppendZero(b, 2, wire.Run{First: uint64(i)*256 + 8, Count: 8})
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Errorf("the hostile stranger cannot reach the destination: %v", err)
			return nil
		}
		conns = append(conns, c)
		sc, err := transport.Secure(ctx, c, transport.RoleSend, cfg, creds.Plaintext)
		if err != nil {
			t.Errorf("the hostile stranger's credentials were refused: %v", err)
			return nil
		}
		conns[i] = sc
		if _, err := sc.Write(b); err != nil {
			t.Errorf("stream %d: %v", i, err)
		}
	}
	var answers []string
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []string
		d := wire.NewDecoder(c)
		for {
			f, err := d.Next()
			if err != nil {
				break
			}
			got = append(got, fmt.Sprintf("%v %v", f.Type, f.Code))
		}
		answers = append(answers, strings.Join(got, ", "))
	}
	return answers
}
