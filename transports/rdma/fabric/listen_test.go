//go:build linux && cgo && !nolibfabric

package fabric

import (
	"context"
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
