//go:build linux

package tcp

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// TestUrgentPeerGone: a peer whose connections vanish without BYE (a
// killed process, a cut cable) ends the other side's urgent calls with
// ErrClosed: RecvUrgent and Landed blocked in their lanes return, and
// SendUrgent and SendPagesUrgent fail instead of hanging.
func TestUrgentPeerGone(t *testing.T) {
	for _, gone := range []transport.Role{transport.RoleSend, transport.RoleReceive} {
		t.Run(gone.String()+" gone", func(t *testing.T) {
			src, dst := newVM(t, testLayout), newVM(t, testLayout)
			send, recv := openPair(t, src, dst, cfg(freeAddr(t), 2, "none"))
			survivor, dead := recv, send
			if gone == transport.RoleReceive {
				survivor, dead = send, recv
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			recvErr, landedErr := make(chan error, 1), make(chan error, 1)
			go func() { _, err := survivor.RecvUrgent(ctx); recvErr <- err }()
			if survivor == recv {
				go func() {
					for {
						if _, err := recv.Landed(ctx); err != nil {
							landedErr <- err
							return
						}
					}
				}()
			} else {
				landedErr <- transport.ErrClosed
			}
			time.Sleep(100 * time.Millisecond)
			for _, st := range dead.openSession().all() { // no BYE: the sockets just close
				st.raw.SetLinger(0)
				st.raw.Close()
			}
			for what, ch := range map[string]chan error{"RecvUrgent": recvErr, "Landed": landedErr} {
				select {
				case err := <-ch:
					if !errors.Is(err, transport.ErrClosed) {
						t.Errorf("%s = %v, want ErrClosed", what, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s still blocked after the peer vanished", what)
				}
			}
			err := survivor.SendUrgent(ctx, transport.Message{Kind: 1})
			if !errors.Is(err, transport.ErrClosed) {
				t.Errorf("SendUrgent = %v, want ErrClosed", err)
			}
			if survivor == send {
				err := send.SendPagesUrgent(ctx, []transport.PageRun{{First: 1, Count: 1, Kind: transport.KindData}})
				if !errors.Is(err, transport.ErrClosed) {
					t.Errorf("SendPagesUrgent = %v, want ErrClosed", err)
				}
			}
		})
	}
}
