package vmtest_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/framework/session"
	"github.com/ferryvm/ferry/framework/transport"
	"github.com/ferryvm/ferry/framework/vmtest"
	"github.com/ferryvm/ferry/transports/tcp"
)

// Engine message kinds this test writes or watches (framework/engine,
// messages.go; numbers never change meaning).
const (
	msgHello  = 1
	msgResume = 13
)

// cutAfterRunning is the source's TCP transport (in process): once
// RUNNING arrived it cuts the session, lets foreign run, and only then
// lets the source open the transport again. It keeps the source's HELLO.
type cutAfterRunning struct {
	transport.Transport
	foreign func()

	mu      sync.Mutex
	hello   []byte
	cut     bool
	reopen  chan struct{} // closed once foreign returned
	opened  int
	cutDone sync.WaitGroup
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

func (c *cutAfterRunning) SendMessage(ctx context.Context, m transport.Message) error {
	if m.Kind == msgHello {
		c.mu.Lock()
		c.hello = append([]byte(nil), m.Payload...)
		c.mu.Unlock()
	}
	return c.Transport.SendMessage(ctx, m)
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
				time.Sleep(50 * time.Millisecond) // post-copy under way
				c.Transport.Close()               // the network breaks
				c.foreign()
				close(c.reopen)
			})
		}
	}
	return m, err
}

// TestEmbedForeignResume: post-copy over the real TCP transport (in
// process, real sockets, real userfaultfd) breaks after RUNNING. Before
// the job's source comes back, another migration's source (the same
// credentials: an operator's certificates shared by two jobs between the
// same hosts) connects to the destination and says RESUME for a guest
// of the same size and engine protocol, with its own migration's tag.
// The destination must answer it nothing (answered MISSING, it would
// push its own guest's pages into this running guest), then take its
// own source back; the migration completes page-exact (manualSwitch's
// checks). Before engine protocol 7 it answered MISSING.
func TestEmbedForeignResume(t *testing.T) {
	var answered string
	var tried bool
	manualSwitch(t, func(sspec, dspec *session.Spec) {
		cut := &cutAfterRunning{Transport: tcp.New(nil), reopen: make(chan struct{})}
		t.Cleanup(cut.cutDone.Wait)
		sspec.TransportInProcess, dspec.TransportInProcess = cut, tcp.New(nil)
		sspec.Transport.Path, dspec.Transport.Path = "", ""
		creds, cfg := sspec.Engine.Credentials, sspec.Transport.Config
		cut.foreign = func() {
			cut.mu.Lock()
			hello := cut.hello
			cut.mu.Unlock()
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
			tr := tcp.New(nil)
			defer tr.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for {
				err = tr.Open(ctx, transport.OpenRequest{Role: transport.RoleSend, Config: cfg, RAM: ram, Files: files, Credentials: creds})
				if err == nil || ctx.Err() != nil {
					break
				}
				time.Sleep(20 * time.Millisecond) // the destination listens again after it drained
			}
			if err != nil {
				t.Errorf("the other migration's source could not reach the destination: %v", err)
				return
			}
			tried = true
			resume := binary.LittleEndian.AppendUint32(nil, binary.LittleEndian.Uint32(hello)) // this engine protocol
			resume = binary.LittleEndian.AppendUint64(resume, other.RAM().Pages())
			resume = append(resume, rand.Text()[:16]...) // its own migration's tag
			if err := tr.SendMessage(ctx, transport.Message{Kind: msgResume, Payload: resume}); err != nil {
				return // refused before it could say anything: fine
			}
			rctx, rcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			defer rcancel()
			if m, err := tr.RecvMessage(rctx); err == nil {
				answered = fmt.Sprintf("message %d (14 is MISSING), %d bytes", m.Kind, len(m.Payload))
			}
		}
	})
	if !tried {
		t.Fatal("the other migration's source never reached the destination")
	}
	if answered != "" {
		t.Errorf("the destination answered another migration's RESUME: %s", answered)
	}
}
