//go:build linux && cgo && !nolibfabric

package fabric

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestRequestAfterAccept: a stranger's connection request to a listener
// whose connection was accepted fails and harms nothing (on sockets it
// crashed the provider's listener thread: fe_accept_prepare freed the
// info the passive endpoint still read).
func TestRequestAfterAccept(t *testing.T) {
	for _, prov := range softProviders {
		t.Run(prov, func(t *testing.T) {
			l, err := Listen(prov, "127.0.0.1")
			if err != nil {
				t.Skipf("SKIPPED: provider %s does not work here: %v", prov, err)
			}
			defer l.Close()
			ul, err := ListenShared(l, "127.0.0.1") // a second listener in the fabric, as the transport has
			if err != nil {
				t.Fatal(err)
			}
			defer ul.Close()
			port, _ := l.Port()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			msg := mapping(t, 4096)
			acc := make(chan *Endpoint, 1)
			go func() {
				e, err := l.Accept(ctx, func(p []byte) bool { return string(p) == "a" }, func(e *Endpoint) error {
					m, err := e.Register(msg, AccessRecv, 0x1235)
					if err != nil {
						return err
					}
					return e.Recv(msg, m, 7)
				})
				if err != nil {
					t.Error(err)
				}
				acc <- e
			}()
			src, err := Connect(ctx, prov, "127.0.0.1", port, []byte("a"))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			target := <-acc
			if target == nil {
				return
			}
			defer target.Close()
			sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
			defer scancel()
			if e, err := Connect(sctx, prov, "127.0.0.1", port, []byte("a")); err == nil {
				e.Close()
				t.Error("a second connection to an accepted listener was accepted")
			}
			buf := mapping(t, 4096)
			smr, err := src.Register(buf, AccessSend, 0x99)
			if err != nil {
				t.Fatal(err)
			}
			if err := src.Send(buf[:8], smr, 2); err != nil {
				t.Fatal(err)
			}
			if err := wait(t, []*Endpoint{src, target}, 2, 7); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStopListening: once the endpoints of a fabric are accepted,
// StopListening closes their listeners' ports. A stranger can no longer
// connect; its request queued meanwhile is rejected (on sockets its
// provider may miss the answer and wait for its own timeout); a
// stranger's connection opened before, silent until then, does no harm
// when it sends junk afterwards; the endpoints keep working. A stranger's
// request after the accept used to crash sockets' listener thread
// (fe_accept_prepare freed the info the pep still read).
func TestStopListening(t *testing.T) {
	for _, prov := range softProviders {
		t.Run(prov, func(t *testing.T) {
			l, err := Listen(prov, "127.0.0.1")
			if err != nil {
				t.Skipf("SKIPPED: provider %s does not work here: %v", prov, err)
			}
			defer l.Close()
			ul, err := ListenShared(l, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			defer ul.Close()
			port, _ := l.Port()
			uport, _ := ul.Port()
			var silent []net.Conn
			for _, p := range []int{port, uport} {
				c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				silent = append(silent, c)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			const size = 1 << 20
			dst, msg := mapping(t, size), mapping(t, 8192)
			var dmr, mmr *MR
			type res struct {
				e, ue *Endpoint
				err   error
			}
			acc := make(chan res, 1)
			go func() {
				var r res
				r.e, r.err = l.Accept(ctx, func(p []byte) bool { return string(p) == "a" }, func(e *Endpoint) error {
					var err error
					if dmr, err = e.Register(dst, AccessRemoteWrite, 0x1234); err != nil {
						return err
					}
					if mmr, err = e.Register(msg, AccessRecv, 0x1235); err != nil {
						return err
					}
					return e.Recv(msg[:4096], mmr, 7)
				})
				if r.err == nil {
					r.ue, r.err = ul.Accept(ctx, func(p []byte) bool { return string(p) == "b" },
						func(e *Endpoint) error { return e.Recv(msg[4096:], mmr, 8) })
				}
				acc <- r
			}()
			src, err := Connect(ctx, prov, "127.0.0.1", port, []byte("a"))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			usrc, err := ConnectShared(ctx, src, "127.0.0.1", uport, []byte("b"))
			if err != nil {
				t.Fatal(err)
			}
			defer usrc.Close()
			r := <-acc
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.e.Close()
			defer r.ue.Close()

			// A stranger's request after the accept, queued unread.
			stranger := make(chan error, 1)
			go func() {
				sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				e, err := Connect(sctx, prov, "127.0.0.1", port, []byte("a"))
				if err == nil {
					e.Close()
				}
				stranger <- err
			}()
			time.Sleep(300 * time.Millisecond)
			n := StopListening(r.e, r.ue)
			t.Logf("%s: %d queued requests rejected", prov, n)
			select {
			case err := <-stranger:
				t.Logf("%s: the stranger's request: %v", prov, err)
				if err == nil {
					t.Error("a stranger connected after the endpoints were accepted")
				}
			case <-time.After(5 * time.Second):
				t.Error("a stranger's request was left waiting after StopListening")
			}
			for _, p := range []int{port, uport} {
				if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
					c.Close()
					t.Errorf("port %d still accepts connections after StopListening", p)
				}
			}
			junk := bytes.Repeat([]byte{0x5a, 0xa5, 0x01, 0xff}, 1024)
			for _, c := range silent {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				c.Write(junk)
				c.Close()
			}
			stillWorks(t, src, usrc, r.e, r.ue, dst, msg, dmr, mmr)
		})
	}
}

// stillWorks writes dst's size through both source endpoints and sends a
// message on each, into the receives posted with contexts 7 and 8.
func stillWorks(t *testing.T, src, usrc, e, ue *Endpoint, dst, msg []byte, dmr, mmr *MR) {
	t.Helper()
	size := len(dst)
	buf := mapping(t, size+4096)
	for i := range buf {
		buf[i] = byte(i*3 + 1)
	}
	smr, err := src.Register(buf, AccessWrite|AccessSend, 0x99)
	if err != nil {
		t.Fatal(err)
	}
	base := dmr.Base(src.Caps().VirtAddr)
	copy(buf[size:], "bulk")
	copy(buf[size+8:], "urgent")
	if err := src.Write(buf[:size/2], smr, base, dmr.Key(), 1); err != nil {
		t.Fatal(err)
	}
	if err := usrc.Write(buf[size/2:size], smr, base+uint64(size/2), dmr.Key(), 1); err != nil {
		t.Fatal(err)
	}
	if err := src.Send(buf[size:size+4], smr, 2); err != nil {
		t.Fatal(err)
	}
	if err := usrc.Send(buf[size+8:size+14], smr, 3); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, []*Endpoint{src, usrc, e, ue}, 2, 3, 7, 8); err != nil {
		t.Fatal(err)
	}
	if string(msg[:4]) != "bulk" || string(msg[4096:4102]) != "urgent" || !bytes.Equal(dst, buf[:size]) {
		t.Fatalf("after StopListening: messages %q %q, data equal %v", msg[:4], msg[4096:4102], bytes.Equal(dst, buf[:size]))
	}
}
